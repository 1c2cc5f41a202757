"""The training-service's access policy, in process (no job runner needed: the kit's interceptor
refuses before the servicer runs): every RPC found through reflection refused without a
credential, with a wrong one and with every role but ``train``."""

from __future__ import annotations

import json

from creditrisk_testing.refusal import REFUSAL_API_KEYS, check_servicer_refusals
from training_service.servicer import POLICY, SERVICE_NAME, register
from training_service.settings import TrainingServiceSettings


async def test_every_method_refused_three_ways() -> None:
    POLICY.check_covers([SERVICE_NAME])
    settings = TrainingServiceSettings(host="127.0.0.1", port=0, auth_api_keys=json.dumps(REFUSAL_API_KEYS))
    report = await check_servicer_refusals(settings, [SERVICE_NAME], register(None), POLICY)  # type: ignore[arg-type]
    report.assert_all_refused()
    assert report.counts() == {
        attempt: (5, 5) for attempt in ("no credential", "wrong credential", "lower role")
    }
