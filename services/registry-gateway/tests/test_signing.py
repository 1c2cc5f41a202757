"""Signed alias moves and revocation: every move the gateway makes leaves a verifiable approval on
the version (``creditrisk.approval.<alias>``) with a growing sequence; RevokeModelVersion (admin)
re-signs the model's revocation list."""

from __future__ import annotations

from pathlib import Path

import grpc
from conftest import ADMIN, PROMOTER, VIEWER, Stack, unique
from creditrisk.registry.v1 import registry_service_pb2 as pb
from creditrisk_model_artifacts import digests_from_tags
from creditrisk_model_artifacts.digests import DIGEST_TAG_PREFIX
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


async def test_only_versions_the_gateway_registered_are_signed_with_its_own_digests(stack: Stack) -> None:
    """A version made in MLflow directly (an MLflow writer copying a registered version's source and
    tags) is refused; a registered version whose digest tags were changed in MLflow is signed with
    the digests the gateway kept at registration, so a slot verifying the artifacts refuses it."""
    name = unique("planted")
    v1 = await register(stack, name, "good")
    client = _client(stack)
    original = client.get_model_version(name, str(v1.version))
    planted = client.create_model_version(
        name,
        original.source,
        run_id=original.run_id,
        tags=dict(original.tags),
        model_id=original.source.removeprefix("models:/"),
    )
    err = await failure(
        stack.stub.SetAlias(
            pb.SetAliasRequest(name=name, alias="challenger", version=int(planted.version)),
            metadata=PROMOTER,
        )
    )
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "not registered through the gateway" in (err.details() or "")
    assert approval_tag("challenger") not in client.get_model_version(name, planted.version).tags
    kept = digests_from_tags(original.tags)
    forged = next(tag for tag in original.tags if tag.startswith(DIGEST_TAG_PREFIX))
    client.set_model_version_tag(name, str(v1.version), forged, "0" * 64)
    await stack.stub.SetAlias(
        pb.SetAliasRequest(name=name, alias="challenger", version=v1.version), metadata=PROMOTER
    )
    tags = client.get_model_version(name, str(v1.version)).tags
    approval = verify_approval(
        tags[approval_tag("challenger")], _trusted(stack), model=name, version=v1.version, alias="challenger"
    )
    assert approval.digests == kept != digests_from_tags(tags)
