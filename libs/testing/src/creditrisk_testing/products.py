"""TEST FIXTURE: the German credit product copied into a test's folder, its ``product.toml`` edited.

How a suite gets a product unlike the checkout's (another label column, join key, thresholds...)
without writing one: :func:`german_variant`. Standard library only (every suite installs it).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

#: The checkout's German credit product (``products/german_credit``).
GERMAN_CREDIT_DIR = Path(__file__).resolve().parents[4] / "products" / "german_credit"


def german_variant(tmp_path: Path, edits: Mapping[str, str] | None = None) -> Path:
    """Copy the German product to ``tmp_path / "products" / "german_credit"`` (no ``data/`` or
    caches) and edit its ``product.toml``: each ``old: new`` replaces every occurrence of an exact
    text, which must be there. Not validated (tests of invalid products use it too).

    Returns:
        The copied product's folder (its parent is a products directory holding only it).

    Raises:
        AssertionError: an ``old`` text is not in the file.
    """
    folder = tmp_path / "products" / "german_credit"
    shutil.copytree(GERMAN_CREDIT_DIR, folder, ignore=shutil.ignore_patterns("__pycache__", "data"))
    file = folder / "product.toml"
    text = file.read_text()
    for old, new in (edits or {}).items():
        assert old in text, old
        text = text.replace(old, new)
    file.write_text(text)
    return folder
