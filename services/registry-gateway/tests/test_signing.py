"""Signed alias moves and revocation: every move the gateway makes leaves a verifiable approval on
the version (``creditrisk.approval.<alias>``) with a growing sequence; RevokeModelVersion (admin)
re-signs the model's revocation list."""

from __future__ import annotations

from pathlib import Path

import grpc
from conftest import ADMIN, PROMOTER, VIEWER, Stack, unique
from creditrisk.registry.v1 import registry_service_pb2 as pb
from creditrisk_model_artifacts import digests_from_tags
from creditrisk_model_artifacts.signing import (
    REVOCATIONS_TAG,
    approval_tag,
    load_trusted_keys,
    verify_approval,
    verify_revocations,
)
from mlflow import MlflowClient
from test_registry import failure, register


def _client(stack: Stack) -> MlflowClient:
    return MlflowClient(tracking_uri=stack.mlflow_url, registry_uri=stack.mlflow_url)


def _trusted(stack: Stack) -> object:
    assert stack.settings is not None
    return load_trusted_keys(Path(stack.settings.signing_public_key_file))


async def test_every_move_is_signed_with_a_growing_sequence(stack: Stack) -> None:
    name = unique("signed")
    v1 = await register(stack, name, "good")
    v2 = await register(stack, name, "equal")
    client, trusted = _client(stack), _trusted(stack)
    sequences = []
    for version in (v1.version, v2.version, v1.version):
        change = await stack.stub.SetAlias(
            pb.SetAliasRequest(name=name, alias="challenger", version=version), metadata=PROMOTER
        )
        mv = client.get_model_version(name, str(version))
        approval = verify_approval(
            mv.tags[approval_tag("challenger")], trusted, model=name, version=version, alias="challenger"
        )
        assert approval.sequence == change.change.sequence
        assert approval.digests == digests_from_tags(mv.tags)
        sequences.append(approval.sequence)
    assert sequences == sorted(sequences)
    assert len(set(sequences)) == 3
    # an approval for one alias is no approval for another
    promoted = await stack.stub.PromoteModelVersion(
        pb.PromoteModelVersionRequest(name=name, version=v1.version, force=True, reason="drill"),
        metadata=ADMIN,
    )
    tags = client.get_model_version(name, str(v1.version)).tags
    champion = verify_approval(
        tags[approval_tag("champion")], trusted, model=name, version=v1.version, alias="champion"
    )
    assert champion.sequence == promoted.change.sequence > sequences[-1]


async def test_revoke_re_signs_the_revocation_list(stack: Stack) -> None:
    name = unique("revoke")
    v1 = await register(stack, name, "good")
    v2 = await register(stack, name, "equal")
    for metadata in (VIEWER, PROMOTER):
        exc = await failure(
            stack.stub.RevokeModelVersion(
                pb.RevokeModelVersionRequest(name=name, version=v1.version, reason="x"), metadata=metadata
            )
        )
        assert exc.code() == grpc.StatusCode.PERMISSION_DENIED
    exc = await failure(
        stack.stub.RevokeModelVersion(
            pb.RevokeModelVersionRequest(name=name, version=v1.version), metadata=ADMIN
        )
    )
    assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "reason" in exc.details()
    exc = await failure(
        stack.stub.RevokeModelVersion(
            pb.RevokeModelVersionRequest(name=name, version=99, reason="x"), metadata=ADMIN
        )
    )
    assert exc.code() == grpc.StatusCode.NOT_FOUND
    sequences = []
    for version in (v1.version, v2.version):
        answer = await stack.stub.RevokeModelVersion(
            pb.RevokeModelVersionRequest(name=name, version=version, reason="leaked training rows"),
            metadata=ADMIN,
        )
        assert answer.record.action == pb.AUDIT_ACTION_REVOKE
        assert answer.record.actor == "alice"
        value = _client(stack).get_registered_model(name).tags[REVOCATIONS_TAG]
        revocations = verify_revocations(value, _trusted(stack), model=name)
        sequences.append(revocations.sequence)
    assert revocations.versions == {str(v1.version), str(v2.version)}
    assert sequences[1] > sequences[0]
    trail = await stack.stub.ListAuditRecords(
        pb.ListAuditRecordsRequest(model_name=name, actions=[pb.AUDIT_ACTION_REVOKE]), metadata=VIEWER
    )
    assert [r.to_version for r in trail.audit_records] == [v2.version, v1.version]
