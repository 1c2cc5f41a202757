"""The refusal log under a flood: at most a burst of lines per (subject, outcome, reason) and
interval, then one "suppressed N" line, while ``auth_refusals_total`` counts every refusal
(:mod:`creditrisk_kit.log_throttle`, :func:`creditrisk_kit.auth.Authenticator.check`)."""

from __future__ import annotations

import logging

import pytest
from creditrisk_kit import PermissionDenied, Unauthenticated
from creditrisk_kit.auth import ApiKeys, Authenticator, Role, parse_api_keys
from creditrisk_kit.log_throttle import OVERFLOW_KEY, LogThrottle
from prometheus_client import REGISTRY


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_per_key_then_one_summary_when_the_interval_ends() -> None:
    clock = Clock()
    throttle = LogThrottle(burst=3, interval_s=60, clock=clock)
    decisions = [throttle.admit("a") for _ in range(10)]
    assert [d.log for d in decisions] == [True] * 3 + [False] * 7
    assert all(d.summaries == () for d in decisions)
    assert throttle.admit("b").log  # another key has its own budget
    clock.now += 59.9
    assert not throttle.admit("a").log  # the same window still
    clock.now += 0.1
    first = throttle.admit("a")
    assert first.log
    assert first.summaries == (("a", 8),)  # reported once, with the new window's first line
    assert throttle.admit("a").summaries == ()


def test_a_quiet_key_is_summarised_with_another_keys_event() -> None:
    clock = Clock()
    throttle = LogThrottle(burst=1, interval_s=10, clock=clock)
    for _ in range(5):
        throttle.admit("flood")
    clock.now += 11
    decision = throttle.admit("other")
    assert decision.log
    assert decision.summaries == (("flood", 4),)
    clock.now += 11
    assert throttle.admit("flood").summaries == ()  # reported once only


def test_keys_beyond_the_limit_share_one_budget() -> None:
    throttle = LogThrottle(burst=2, interval_s=60, max_keys=3, clock=Clock())
    assert all(throttle.admit(f"key-{index}").log for index in range(3))
    overflow = [throttle.admit(f"new-{index}").log for index in range(5)]
    assert overflow == [True, True, False, False, False]  # the overflow key's burst
    assert throttle.admit("key-0").log  # the tracked ones keep theirs
    assert len(throttle._windows) == 4  # three keys and the overflow key, however many arrive
    assert OVERFLOW_KEY in throttle._windows


@pytest.mark.parametrize("bounds", [{"burst": 0}, {"interval_s": 0}, {"max_keys": 0}])
def test_bounds_out_of_range_are_refused(bounds: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(bounds))):
        LogThrottle(**bounds)  # type: ignore[arg-type]


def refusals_total(method: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value("auth_refusals_total", {"method": method, "outcome": outcome})
    return value or 0.0


async def test_a_flood_of_bad_keys_logs_a_burst_and_a_summary_and_counts_every_refusal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    entries = parse_api_keys('{"reader-key-0001": {"subject": "reader", "roles": ["read_features"]}}', "keys")
    keys = ApiKeys(entries)
    authenticator = Authenticator(keys, refusal_log=LogThrottle(burst=3, interval_s=60, clock=clock))
    method = "/creditrisk.test.v1.Echo/Flooded"
    before = refusals_total(method, "UNAUTHENTICATED"), refusals_total(method, "PERMISSION_DENIED")
    caplog.set_level(logging.INFO, logger="creditrisk_kit.auth.refusals")

    for index in range(50):
        with pytest.raises(Unauthenticated):
            await authenticator.check(f"Bearer bad-key-{index}", Role.PREDICT, method)
    for _ in range(2):  # another reason and subject: its own budget
        with pytest.raises(PermissionDenied):
            await authenticator.check("Bearer reader-key-0001", Role.PREDICT, method)

    lines = [r for r in caplog.records if r.name == "creditrisk_kit.auth.refusals"]
    denied = f"{method} needs the predict role; 'reader' has read_features"
    assert [(r.subject, r.outcome, r.reason) for r in lines] == [  # type: ignore[attr-defined]
        *[("unauthenticated", "UNAUTHENTICATED", "unknown API key")] * 3,
        *[("reader", "PERMISSION_DENIED", denied)] * 2,
    ]
    assert refusals_total(method, "UNAUTHENTICATED") == before[0] + 50  # every one counted
    assert refusals_total(method, "PERMISSION_DENIED") == before[1] + 2

    caplog.clear()
    clock.now += 60
    with pytest.raises(Unauthenticated):
        await authenticator.check("Bearer bad-key-again", Role.PREDICT, method)
    summary, line = [r for r in caplog.records if r.name == "creditrisk_kit.auth.refusals"]
    assert summary.getMessage() == (
        "suppressed 47 more refusals (UNAUTHENTICATED) for unauthenticated: unknown API key, within 60 s"
    )
    assert (summary.suppressed, summary.subject, summary.reason) == (  # type: ignore[attr-defined]
        47,
        "unauthenticated",
        "unknown API key",
    )
    assert line.getMessage() == f"{method} refused (UNAUTHENTICATED) for unauthenticated: unknown API key"
    assert "bad-key" not in caplog.text  # never the credential
