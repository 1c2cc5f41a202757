"""Feature policy: which features may be model inputs, and which frame columns are never features.

By default a product's protected attributes (``[features].protected_attributes`` of its
``product.toml``, with the reason given there) are **not** model inputs: typically the prohibited
bases of a credit decision, such as sex, marital status and national origin (US Equal Credit
Opportunity Act, 15 U.S.C. 1691(a)(1), and its Regulation B, 12 CFR 1002.4(a), 1002.6(b); in the
EU the Charter of Fundamental Rights art. 21, Directives 2004/113/EC and 2000/43/EC, and the AI
Act, Regulation (EU) 2024/1689, Annex III 5(b): creditworthiness scoring is high-risk, with bias
examination of its data, art. 10). The product file says which of its features these are.

The protected attributes are **kept** out of the model but stay in the training frame (the
product's fairness feature service, ``[features].fairness_service``) for fairness reporting:
approval-rate ratios across their groups (:mod:`training_service.evaluation`).

A request may override the excluded list (``ExcludedFeatures``): it replaces the default list and
must give a reason, which is recorded in the run (tags ``feature_policy.*``).

The training frame's entity key and label columns are the product's own names
(:class:`FrameColumns`): ``[entity].join_key`` and ``[label].column``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from creditrisk_kit.errors import FieldViolation, InvalidArgument
from creditrisk_products import Product

EVENT_TIMESTAMP = "event_timestamp"
LABEL_TIMESTAMP = "label_timestamp"
CREATED_TIMESTAMP = "created_timestamp"


@dataclass(frozen=True)
class FrameColumns:
    """The product-specific columns of a training frame.

    Attributes:
        entity_key: the entity's join key column (``[entity].join_key``).
        label: the label column, 1 = the positive class (``[label].column``).
        entity_type: the join key's type, ``int64`` or ``string`` (``[entity].type``).
        positive_class: what label 1 means, for people (``[label].positive_class``).
    """

    entity_key: str
    label: str
    entity_type: Literal["int64", "string"] = "int64"
    positive_class: str = "positive"

    @classmethod
    def of(cls, product: Product) -> FrameColumns:
        """The columns of ``product``'s training frames."""
        return cls(
            entity_key=product.entity.join_key,
            label=product.label.column,
            entity_type=product.entity.type,
            positive_class=product.label.positive_class,
        )

    @property
    def non_features(self) -> frozenset[str]:
        """Columns of a training frame that are never features: key, label, times."""
        return frozenset({self.entity_key, self.label, EVENT_TIMESTAMP, LABEL_TIMESTAMP, CREATED_TIMESTAMP})


@dataclass(frozen=True)
class FeaturePolicy:
    """Which features are excluded from the model inputs, and why.

    Build the product's default with :meth:`default`, an override with :meth:`override`.

    Attributes:
        columns: the frame's entity key and label (never features).
        excluded: feature names never used as model inputs.
        reason: why (the default policy's reason, or the override's).
        is_default: whether this is the product's default policy.
        fairness_attributes: attributes reported on for fairness (the protected attributes).
    """

    columns: FrameColumns
    excluded: tuple[str, ...] = ()
    reason: str = ""
    is_default: bool = True
    fairness_attributes: tuple[str, ...] = ()

    @classmethod
    def default(cls, product: Product) -> FeaturePolicy:
        """The product's default policy: its protected attributes excluded, with its reason."""
        protected = tuple(product.features.protected_attributes)
        return cls(
            columns=FrameColumns.of(product),
            excluded=protected,
            reason=product.features.protected_reason.strip() or "default policy: nothing excluded",
            is_default=True,
            fairness_attributes=protected,
        )

    def override(
        self, features: Sequence[str], reason: str, *, field_prefix: str = "excluded_features"
    ) -> FeaturePolicy:
        """This policy with its excluded list replaced (``ExcludedFeatures``); the fairness
        attributes stay.

        Raises:
            InvalidArgument: the reason is empty, or a name is empty or repeated.
        """
        violations = []
        if not reason.strip():
            violations.append(FieldViolation(f"{field_prefix}.reason", "required when overriding the policy"))
        seen: set[str] = set()
        for i, name in enumerate(features):
            if not name or name in seen:
                violations.append(FieldViolation(f"{field_prefix}.features[{i}]", "empty or repeated name"))
            seen.add(name)
        if violations:
            raise InvalidArgument.from_violations(violations)
        return dataclasses.replace(self, excluded=tuple(features), reason=reason.strip(), is_default=False)

    def check_known(self, available: Iterable[str], *, field_prefix: str = "excluded_features") -> None:
        """Raise InvalidArgument naming each excluded feature the training frame does not have."""
        names = set(available)
        violations = [
            FieldViolation(f"{field_prefix}.features[{i}]", "unknown feature")
            for i, name in enumerate(self.excluded)
            if name not in names
        ]
        if violations and not self.is_default:
            raise InvalidArgument.from_violations(violations)

    def model_inputs(self, columns: Iterable[str]) -> list[str]:
        """The feature columns of a training frame that are model inputs, in frame order."""
        excluded = set(self.excluded)
        non_features = self.columns.non_features
        return [c for c in columns if c not in non_features and c not in excluded]

    def as_tags(self) -> dict[str, str]:
        """The policy as MLflow run tags."""
        return {
            "feature_policy.default": str(self.is_default).lower(),
            "feature_policy.excluded": ",".join(self.excluded),
            "feature_policy.reason": self.reason[:4000],
        }
