"""docs/security.md's table of the local stack's keys (file -> subject -> roles -> the service
that accepts it) and its list of drift-report readers are scripts/stack_keys.py's IDENTITIES: the
test renders both from the tuple and fails when the document says anything else (an identity, a
role or a holder changed in one place only)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import stack_keys  # noqa: E402

SECURITY_DOC = ROOT / "docs" / "security.md"

#: Each API-key file of the stack: the Identity field holding its roles, and who accepts it.
ACCEPTING = (
    (
        "roles",
        stack_keys.API_KEYS_FILE,
        "feature-service, training-service, drift-service (gRPC and report server), registry-gateway",
    ),
    ("gateway_roles", stack_keys.GATEWAY_API_KEYS_FILE, "inference-gateway"),
    ("slot_roles", stack_keys.MODEL_SERVER_API_KEYS_FILE, "model-server slots"),
)
#: The line of the document naming the keys that read drift reports.
READERS_LINE = "Drift reports are read with: "


def key_table() -> list[str]:
    """The Markdown table of the stack's keys, one row per (key, accepting file), from
    ``stack_keys.IDENTITIES`` with the demo's subjects (``demo-`` before a user's)."""
    rows = [
        "| key file (`secrets/`) | subject | roles | accepted by (its keys file) | presented by |",
        "| --- | --- | --- | --- | --- |",
    ]
    for identity in stack_keys.IDENTITIES:
        subject = identity.subject if identity.service else f"demo-{identity.subject}"
        for field, keys_file, services in ACCEPTING:
            roles = getattr(identity, field)
            if roles:
                listed = ", ".join(f"`{role}`" for role in roles)
                rows.append(
                    f"| `{identity.name}.key` | `{subject}` | {listed} | {services} (`{keys_file}`) "
                    f"| {identity.holder} |"
                )
    return rows


def drift_report_readers() -> list[str]:
    """The key files whose ``api-keys.json`` roles read drift reports (``read_monitoring``, or
    ``admin``, which holds every role)."""
    return [
        f"`secrets/{i.name}.key`"
        for i in stack_keys.IDENTITIES
        if {"read_monitoring", "admin"} & set(i.roles)
    ]


def test_the_keys_table_is_the_identities() -> None:
    doc = SECURITY_DOC.read_text()
    table = "\n".join(key_table())
    assert table in doc, "docs/security.md's table of the stack's keys differs from IDENTITIES:\n" + table


def test_every_identity_has_a_row_and_a_holder() -> None:
    named = {row.split("`")[1] for row in key_table()[2:]}
    assert named == {f"{i.name}.key" for i in stack_keys.IDENTITIES}
    assert all(i.holder for i in stack_keys.IDENTITIES)


def test_the_drift_report_readers_are_the_read_monitoring_keys() -> None:
    lines = [line for line in SECURITY_DOC.read_text().splitlines() if line.startswith(READERS_LINE)]
    assert len(lines) == 1, f"docs/security.md needs one line starting {READERS_LINE!r}"
    listed = re.findall(r"`secrets/[a-z-]+\.key`", lines[0])
    assert listed == drift_report_readers()
    assert "`secrets/gateway-client.key`" not in listed  # the example client reads no report


def test_the_example_client_only_scores() -> None:
    (client,) = [i for i in stack_keys.IDENTITIES if i.name == "gateway-client"]
    assert (client.roles, client.gateway_roles, client.slot_roles) == ((), ("predict",), ())
