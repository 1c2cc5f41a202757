"""creditrisk_testing.german_credit: the fixture follows the data file the project keeps."""

from __future__ import annotations

import csv

from creditrisk_testing.german_credit import (
    ATTRIBUTE_COLUMNS,
    GERMAN_CREDIT_CSV,
    INT_COLUMNS,
    german_credit_frame,
)


def test_attribute_columns_are_the_files_header_before_the_label() -> None:
    with GERMAN_CREDIT_CSV.open(newline="") as handle:
        header = next(csv.reader(handle))
    assert tuple(header[:-1]) == ATTRIBUTE_COLUMNS
    assert set(INT_COLUMNS) <= set(ATTRIBUTE_COLUMNS)


def test_frame_has_every_applicant_and_a_binary_label() -> None:
    frame = german_credit_frame(seed=42)
    assert len(frame) == 1000
    assert set(ATTRIBUTE_COLUMNS) <= set(frame.columns)
    assert set(frame["creditability"].unique()) == {0, 1}
    assert frame["applicant_id"].tolist() == list(range(1, 1001))
