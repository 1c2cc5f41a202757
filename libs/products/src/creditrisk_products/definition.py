"""A credit product's own file: what the Feast repository of the product does not hold.

A product is a folder (``products/<name>/``) with a standard Feast feature repository
(``feature_repo/``: entities, data sources, feature views, on-demand feature views, feature
services, written as Feast users write them) and one ``product.toml``, read here. The file names
the Feast objects the platform's roles map to (the entity and its join key, the model and fairness
feature services, the label view and column), and holds the rest: label maturity, protected
attributes, the cost matrix, the promotion gate's thresholds, drift settings per feature, the
request-time fields the serving API accepts, and how a raw file is ingested.

Loading checks the file against itself only (types, ranges, unknown keys, names that must differ);
the feature-service checks it against the Feast repository (``feature_service.product``) and
against what is deployed. Every error names the file and the key, as ``[gate].absolute_floor``.

The defaults (gate thresholds, costs) are the platform's earlier settings; the sources of the
German product's values are given in its own file's comments.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from datetime import date
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PRODUCT_FILE = "product.toml"
#: A product, Feast project, feature view or column name: lower-case identifier.
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
#: A column or field name as Feast and the contracts accept it (the Feast repository's own names).
COLUMN_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
#: An MLflow registered model name as the platform uses it.
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"

Column = Annotated[str, Field(pattern=COLUMN_PATTERN)]


class ProductError(ValueError):
    """A product definition is invalid.

    Attributes:
        file: the file at fault.
        problems: ``(key, message)`` pairs, the key in TOML path form (``[gate].absolute_floor``), or
            ``""`` for the file as a whole.
    """

    def __init__(self, file: Path | str, problems: list[tuple[str, str]]) -> None:
        self.file = Path(file)
        self.problems = problems
        lines = [f"{self.file}: {key}: {msg}" if key else f"{self.file}: {msg}" for key, msg in problems]
        super().__init__("\n".join(lines))


class FeatureKind(StrEnum):
    """How drift is measured on a feature: numeric (KS, PSI on quantile bins) or categorical."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProductSection(_Section):
    """``[product]``: the product's identity.

    Attributes:
        name: the product's name, as requests name it (equals the folder name).
        description: one line for people.
        feast_project: the Feast project of the product's feature repository (one per product).
        registered_model: the MLflow registered model whose versions score this product.
        feature_repo: the Feast repository's folder, relative to the product folder.
    """

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    feast_project: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    registered_model: str = Field(pattern=MODEL_NAME_PATTERN)
    feature_repo: str = Field(
        default="feature_repo", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*$"
    )

    @field_validator("feature_repo")
    @classmethod
    def _inside(cls, value: str) -> str:
        if any(part in ("..", ".") for part in value.split("/")):
            raise ValueError("a folder inside the product's folder (no '..')")
        return value


class EntitySection(_Section):
    """``[entity]``: the Feast entity every feature view of the product is keyed by.

    Attributes:
        name: the Feast entity's name.
        join_key: its join key (the column and the request field).
        type: the join key's type: ``int64`` or ``string``.
    """

    name: str = Field(pattern=NAME_PATTERN)
    join_key: Column
    type: Literal["int64", "string"] = "int64"


class FeaturesSection(_Section):
    """``[features]``: the feature services the platform's roles read, and the feature policy.

    Attributes:
        model_service: the feature service of the model's inputs (training, serving, the gate).
        fairness_service: the feature service of the protected attributes ("" = none): read beside
            the model inputs for fairness reporting, never a model input.
        protected_attributes: features excluded from the model inputs by default.
        protected_reason: why (recorded with every training run that uses the default policy).
    """

    model_service: str = Field(pattern=NAME_PATTERN)
    fairness_service: str = Field(default="", pattern=r"^([a-z][a-z0-9_]{0,62})?$")
    protected_attributes: tuple[Column, ...] = ()
    protected_reason: str = ""

    @model_validator(mode="after")
    def _reason_given(self) -> FeaturesSection:
        if self.protected_attributes and not self.protected_reason.strip():
            raise ValueError("protected_reason: required when protected_attributes are listed")
        if len(set(self.protected_attributes)) != len(self.protected_attributes):
            raise ValueError("protected_attributes: listed twice")
        return self


class LabelSection(_Section):
    """``[label]``: the ground truth.

    Attributes:
        view: the (offline-only) feature view holding the label.
        column: the label's column in that view: 1 = the positive class (default), 0 = not.
        positive_class: what 1 means, for people (e.g. ``bad``).
        application_time_column: the label view's column holding when the labelled application was
            made (the label's own event time is when the outcome became known).
        maturity_days: how long after an application its outcome is known (days >= 0).
    """

    view: str = Field(pattern=NAME_PATTERN)
    column: Column
    positive_class: str = "default"
    application_time_column: Column = "application_timestamp"
    maturity_days: int = Field(default=365, ge=0, le=36_500)


class DecisionSection(_Section):
    """``[decision]``: the cost matrix and the decision policy.

    A prediction is DECLINE when its probability of the positive class is at or above the model
    version's threshold; training picks the threshold that minimises the expected cost below.

    Attributes:
        false_negative_cost: cost of approving an applicant who defaults (missed positive).
        false_positive_cost: cost of declining an applicant who would have repaid.
    """

    false_negative_cost: float = Field(default=5.0, gt=0)
    false_positive_cost: float = Field(default=1.0, gt=0)


class GateSection(_Section):
    """``[gate]``: the promotion gate's thresholds (the registry-gateway's ``gate.py`` applies them).

    Attributes:
        absolute_floor: ROC AUC a first champion needs, in [0, 1].
        margin: how far below the champion's AUC the paired-bootstrap lower bound of a challenger's
            delta AUC may go, in [0, 1].
        require_positive_delta: a challenger's point estimate of delta AUC must be above 0.
        cost_tolerance: how much more expected cost per applicant than the champion is accepted.
        min_rows: fewest labelled rows in the gate window (>= 2).
        window_days: the gate window: the latest days of labelled applications held out of training.
    """

    absolute_floor: float = Field(default=0.70, ge=0.0, le=1.0)
    margin: float = Field(default=0.02, ge=0.0, le=1.0)
    require_positive_delta: bool = True
    cost_tolerance: float = Field(default=0.05, ge=0.0)
    min_rows: int = Field(default=30, ge=2)
    window_days: int = Field(default=60, ge=1)


class DriftFeature(_Section):
    """One feature's drift setting: its kind, and whether it is monitored."""

    kind: FeatureKind
    monitor: bool = True


class DriftSection(_Section):
    """``[drift]``: drift settings per feature (``[drift.features]``: name = kind, or a table)."""

    features: dict[Column, DriftFeature] = Field(default_factory=dict)

    @field_validator("features", mode="before")
    @classmethod
    def _short_form(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: {"kind": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    def kinds(self) -> dict[str, FeatureKind]:
        """Kind of every monitored feature, by name."""
        return {name: f.kind for name, f in self.features.items() if f.monitor}


class ServingSection(_Section):
    """``[serving]``: what the serving API accepts beside the entity key.

    Attributes:
        request_fields: caller-facing name -> the field of a Feast request source that carries it
            (request-time values of on-demand features). Feast merges request data and stored
            features into one row, so a request field needs a name of its own.
    """

    request_fields: dict[Column, Column] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _distinct(self) -> ServingSection:
        targets = list(self.request_fields.values())
        if len(set(targets)) != len(targets):
            raise ValueError("request_fields: two names map to the same request source field")
        return self

    def aliases(self) -> dict[str, str]:
        """Every name a request value is accepted under (caller-facing or the source's) -> the latter."""
        return {**self.request_fields, **{v: v for v in self.request_fields.values()}}


class DrawnTimes(_Section):
    """Application times drawn uniformly, seeded, in whole seconds over ``[start, end)`` UTC."""

    start: date = Field(ge=date(1900, 1, 1), lt=date(2150, 1, 1))
    end: date = Field(gt=date(1900, 1, 1), le=date(2150, 1, 1))

    @model_validator(mode="after")
    def _ordered(self) -> DrawnTimes:
        if self.end <= self.start:
            raise ValueError("end: must be after start")
        return self


class IngestSection(_Section):
    """``[ingest]``: how one raw file (CSV or Parquet) becomes the offline tables of the views.

    Attributes:
        entity_key: ``"row_number"`` (1, 2, ... in file order: the file has no key) or the file's
            column holding the join key.
        application_time: the file's column holding the application time (ISO 8601 with an
            offset, or naive = UTC), or ``[ingest.application_time_drawn]`` when the file has none.
        application_time_drawn: the window application times are drawn from (seeded).
        label_source: the file's column holding the label ("" = the label column itself).
        label_codes: raw label value (compared stripped, case-insensitive) -> 1 or 0; empty = the
            file holds 1 / 0 already.
        seed: seed of drawn times.
    """

    entity_key: str = "row_number"
    application_time: str = ""
    application_time_drawn: DrawnTimes | None = None
    label_source: str = ""
    label_codes: dict[str, Literal[0, 1]] = Field(default_factory=dict)
    seed: int = Field(default=42, ge=0)

    @model_validator(mode="after")
    def _one_time_source(self) -> IngestSection:
        normalised = [k.strip().lower() for k in self.label_codes]
        if len(set(normalised)) != len(normalised):
            raise ValueError("label_codes: two values are the same once stripped and lower-cased")
        if bool(self.application_time) == (self.application_time_drawn is not None):
            raise ValueError("give exactly one of application_time and [ingest.application_time_drawn]")
        if self.label_codes and set(self.label_codes.values()) != {0, 1}:
            raise ValueError("label_codes: must map at least one value to 1 and one to 0")
        return self


class Product(_Section):
    """A product's ``product.toml``, validated. Build with :func:`load_product`.

    Attributes:
        product, entity, features, label, decision, gate, drift, serving, ingest: the sections.
        folder: the product's folder (set by :func:`load_product`).
    """

    product: ProductSection
    entity: EntitySection
    features: FeaturesSection
    label: LabelSection
    decision: DecisionSection = DecisionSection()
    gate: GateSection = GateSection()
    drift: DriftSection = DriftSection()
    serving: ServingSection = ServingSection()
    ingest: IngestSection
    folder: Path = Field(default=Path("."), exclude=True)

    @property
    def name(self) -> str:
        """The product's name."""
        return self.product.name

    @property
    def feature_repo_path(self) -> Path:
        """The Feast repository's folder."""
        return self.folder / self.product.feature_repo

    @property
    def file(self) -> Path:
        """The product file."""
        return self.folder / PRODUCT_FILE

    @property
    def non_feature_columns(self) -> frozenset[str]:
        """Columns of a training frame that are never model features: key, label, times."""
        return frozenset(
            {
                self.entity.join_key,
                self.label.column,
                "event_timestamp",
                "label_timestamp",
                "created_timestamp",
            }
        )

    @model_validator(mode="after")
    def _cross_checks(self) -> Product:
        problems = []
        key = self.entity.join_key
        if key in self.features.protected_attributes:
            problems.append(f"[features].protected_attributes: names the join key {key!r}")
        if self.label.column == key:
            problems.append("[label].column: is the join key")
        if self.features.fairness_service and self.features.fairness_service == self.features.model_service:
            problems.append("[features].fairness_service: must differ from model_service")
        for name in self.serving.request_fields:
            if name in (key, self.label.column):
                problems.append(f"[serving].request_fields.{name}: is the join key or the label")
        if key in self.drift.features or self.label.column in self.drift.features:
            problems.append("[drift].features: names the join key or the label")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _key(loc: tuple[str | int, ...]) -> str:
    """``("gate", "absolute_floor")`` -> ``[gate].absolute_floor``."""
    parts = [str(p) for p in loc if not str(p).startswith("function-")]
    if not parts:
        return ""
    head, *rest = parts
    return f"[{head}]" + "".join(f".{p}" for p in rest)


def parse_product(text: str, file: Path | str, folder: Path | None = None) -> Product:
    """Parse and validate the text of a product file.

    Args:
        text: the TOML text.
        file: its path, named in errors.
        folder: the product's folder (default: the file's parent).

    Returns:
        The product.

    Raises:
        ProductError: the text is not TOML, or a key is missing, unknown or invalid; one entry per
            problem, each naming its key.
    """
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise ProductError(file, [("", "not valid TOML: nested too deeply")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ProductError(file, [("", f"not valid TOML: {exc}")]) from None
    try:
        product = Product.model_validate({**data, "folder": folder or Path(file).parent})
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            msg = err["msg"].removeprefix("Value error, ")
            problems.append((_key(err["loc"]), msg))
        raise ProductError(file, problems) from None
    folder_name = (folder or Path(file).parent).name
    if folder_name and folder_name not in (".", "") and product.name != folder_name:
        raise ProductError(
            file, [("[product].name", f"{product.name!r} differs from the folder's name {folder_name!r}")]
        )
    return product


def load_product(path: Path | str) -> Product:
    """Load a product from its folder (or its ``product.toml``).

    Raises:
        ProductError: no product file there, or the file is invalid (each problem named).
    """
    path = Path(path)
    file = path if path.name == PRODUCT_FILE else path / PRODUCT_FILE
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProductError(file, [("", "no product file here")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProductError(file, [("", f"cannot be read: {exc}")]) from None
    product = parse_product(text, file, file.parent.resolve())
    repo = product.feature_repo_path
    if not repo.is_dir():
        raise ProductError(file, [("[product].feature_repo", f"no folder {repo}")])
    if not repo.resolve().is_relative_to(product.folder.resolve()):
        raise ProductError(file, [("[product].feature_repo", f"{repo} leads outside the product's folder")])
    return product


def is_product_name(name: str) -> bool:
    """Whether ``name`` is a well-formed product name."""
    return re.fullmatch(NAME_PATTERN, name) is not None
