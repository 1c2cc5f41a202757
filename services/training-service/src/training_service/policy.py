"""Feature policy: which features may be model inputs.

By default the protected attributes of the German credit data are **not** model inputs:

* ``personal_status_and_sex`` (sex and marital status) and
* ``foreign_worker`` (national origin).

Both are prohibited bases for a credit decision in most jurisdictions: the US Equal Credit
Opportunity Act (15 U.S.C. 1691(a)(1): "race, color, religion, national origin, sex or marital
status, or age") and its Regulation B (12 CFR 1002.4(a), 1002.6(b)); in the EU the Charter of
Fundamental Rights art. 21 (sex, nationality...), the Gender Goods and Services Directive
2004/113/EC (sex, incl. financial services), the Race Equality Directive 2000/43/EC (ethnic origin),
and the AI Act (Regulation (EU) 2024/1689, Annex III 5(b): creditworthiness scoring is high-risk,
with bias examination of its data, art. 10). Age is also named by ECOA but is a permitted input
in an "empirically derived, demonstrably and statistically sound" system (12 CFR 1002.6(b)(2)), so
``age_in_years`` stays a model input here.

The protected attributes are **kept** out of the model but stay in the training frame (feature
service ``credit_risk_fairness_v1``) for fairness reporting: approval-rate ratios across their
groups (:mod:`training_service.evaluation`).

A request may override the excluded list (``ExcludedFeatures``): it replaces the default list and
must give a reason, which is recorded in the run (tags ``feature_policy.*``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from creditrisk_kit.errors import FieldViolation, InvalidArgument

PROTECTED_ATTRIBUTES: tuple[str, ...] = ("personal_status_and_sex", "foreign_worker")
DEFAULT_REASON = (
    "default policy: sex/marital status and national origin are prohibited credit decision inputs "
    "(US ECOA / Regulation B 12 CFR 1002; EU Charter art. 21, Directives 2004/113/EC and 2000/43/EC)"
)
#: Columns of a training frame that are never features.
ENTITY_KEY = "applicant_id"
EVENT_TIMESTAMP = "event_timestamp"
LABEL_TIMESTAMP = "label_timestamp"
LABEL = "creditability"
CREATED_TIMESTAMP = "created_timestamp"
NON_FEATURE_COLUMNS: frozenset[str] = frozenset(
    {ENTITY_KEY, EVENT_TIMESTAMP, LABEL_TIMESTAMP, LABEL, CREATED_TIMESTAMP}
)


@dataclass(frozen=True)
class FeaturePolicy:
    """Which features are excluded from the model inputs, and why.

    Attributes:
        excluded: feature names never used as model inputs.
        reason: why (the default policy's reason, or the override's).
        is_default: whether this is the platform's default policy.
        fairness_attributes: attributes reported on for fairness (the protected attributes).
    """

    excluded: tuple[str, ...] = PROTECTED_ATTRIBUTES
    reason: str = DEFAULT_REASON
    is_default: bool = True
    fairness_attributes: tuple[str, ...] = PROTECTED_ATTRIBUTES

    @classmethod
    def override(
        cls, features: Sequence[str], reason: str, *, field_prefix: str = "excluded_features"
    ) -> FeaturePolicy:
        """A policy replacing the default excluded list (``ExcludedFeatures``).

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
        return cls(excluded=tuple(features), reason=reason.strip(), is_default=False)

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
        return [c for c in columns if c not in NON_FEATURE_COLUMNS and c not in excluded]

    def as_tags(self) -> dict[str, str]:
        """The policy as MLflow run tags."""
        return {
            "feature_policy.default": str(self.is_default).lower(),
            "feature_policy.excluded": ",".join(self.excluded),
            "feature_policy.reason": self.reason[:4000],
        }
