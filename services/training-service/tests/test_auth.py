"""The training-service's access policy, in process (no job runner needed: the kit's interceptor
refuses before the servicer runs): every RPC found through reflection refused without a
credential, with a wrong one and with every role but ``train``."""

from __future__ import annotations

import asyncio
import json

from creditrisk_kit import ServiceRunner
from creditrisk_testing.refusal import REFUSAL_API_KEYS, check_grpc_refusals
from training_service.servicer import POLICY, SERVICE_NAME, register
from training_service.settings import TrainingServiceSettings


async def test_every_method_refused_three_ways() -> None:
    POLICY.check_covers([SERVICE_NAME])
    settings = TrainingServiceSettings(host="127.0.0.1", port=0, auth_api_keys=json.dumps(REFUSAL_API_KEYS))
    runner = ServiceRunner(
        settings,
        service_names=[SERVICE_NAME],
        register=register(None),  # type: ignore[arg-type]
        auth=POLICY,
        instrument=False,
    )
    await runner.start()
    try:
        report = await asyncio.to_thread(check_grpc_refusals, f"127.0.0.1:{runner.port}", POLICY)
    finally:
        await runner.stop()
    report.assert_all_refused()
    assert report.counts() == {
        attempt: (5, 5) for attempt in ("no credential", "wrong credential", "lower role")
    }
