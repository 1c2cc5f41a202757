"""The feature-service's access policy, in process (no store needed: the kit's interceptor refuses
before the servicer runs): every RPC found through reflection refused without a credential, with a
wrong one and with every role but its own; the policy covers every method of the contract."""

from __future__ import annotations

import json

from creditrisk.feature.v1 import feature_service_pb2_grpc as pb_grpc
from creditrisk_kit.auth import Role, service_methods
from creditrisk_testing.refusal import REFUSAL_API_KEYS, check_servicer_refusals
from feature_service.servicer import POLICY, SERVICE_NAME, FeatureStoreServiceServicer
from feature_service.settings import FeatureServiceSettings


def test_policy_covers_the_contract_reads_and_writes_apart() -> None:
    POLICY.check_covers([SERVICE_NAME])
    writes = {name.rsplit("/", 1)[1] for name, role in POLICY.items() if role == Role.WRITE_FEATURES}
    assert writes == {"Push", "Materialize", "MaterializeIncremental"}
    assert len(POLICY) == len(service_methods(SERVICE_NAME))


async def test_every_method_refused_three_ways(tmp_path: object) -> None:
    settings = FeatureServiceSettings(
        host="127.0.0.1", port=0, data_dir=str(tmp_path), auth_api_keys=json.dumps(REFUSAL_API_KEYS)
    )
    servicer = FeatureStoreServiceServicer(None, settings)  # type: ignore[arg-type]
    report = await check_servicer_refusals(
        settings,
        [SERVICE_NAME],
        lambda server: pb_grpc.add_FeatureStoreServiceServicer_to_server(servicer, server),
        POLICY,
    )
    report.assert_all_refused()
    assert report.counts() == {
        attempt: (9, 9) for attempt in ("no credential", "wrong credential", "lower role")
    }
