"""The default ports fit together: every service listens on its own port, every client's default
target is where the service it dials listens, and the READMEs name the same addresses.

The assignment (all on 127.0.0.1 by default; images bind 0.0.0.0):

| listener | default port | where it is set |
| --- | --- | --- |
| feature-service gRPC | 50051 | ``FeatureServiceSettings.port`` |
| training-service gRPC | 50052 | ``TrainingServiceSettings.port`` |
| registry-gateway gRPC | 50053 | ``registry_gateway.settings.Settings.port`` |
| drift-service gRPC / reports HTTP / metrics | 50054 / 8096 / 9466 | ``DriftServiceSettings`` |
| inference-gateway gRPC / REST | 50055 / 8000 | ``GatewaySettings.port`` / ``http_port`` |
| model-server seldon-core REST / gRPC / metrics | 9000 / 5001 / 6000 | ``__main__.SELDON_PORTS`` |
| model-server MLServer REST / gRPC / metrics | 8080 / 8081 / 8082 | ``__main__.MLSERVER_PORTS`` |
| MLflow tracking server | 5000 | ``training_service.mlflow_server.DEFAULT_PORT`` |

The other kit services' ``metrics_port`` is unset by default (no endpoint, the kit's choice).

The services cannot be imported here (each has its own environment), so the defaults are read
from the source with :mod:`ast`: a literal ``name: T = value`` or ``Field(default=value, ...)`` in
the class body, and module-level literal constants.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KIT = ("libs/service-kit/src/creditrisk_kit/settings.py", "ServiceSettings")

#: Each service built on the kit: settings source, class, environment prefix.
SERVICES = {
    "feature-service": (
        "services/feature-service/src/feature_service/settings.py",
        "FeatureServiceSettings",
        "FEATURE_SERVICE_",
    ),
    "training-service": (
        "services/training-service/src/training_service/settings.py",
        "TrainingServiceSettings",
        "TRAINING_SERVICE_",
    ),
    "registry-gateway": (
        "services/registry-gateway/src/registry_gateway/settings.py",
        "Settings",
        "REGISTRY_GATEWAY_",
    ),
    "drift-service": (
        "services/drift-service/src/drift_service/settings.py",
        "DriftServiceSettings",
        "DRIFT_SERVICE_",
    ),
    "inference-gateway": (
        "services/inference-gateway/src/inference_gateway/settings.py",
        "GatewaySettings",
        "INFERENCE_GATEWAY_",
    ),
}
MODEL_SERVER = ("services/model-server/src/model_server/settings.py", "Settings", "MODEL_SERVER_")
MODEL_SERVER_MAIN = "services/model-server/src/model_server/__main__.py"
MLFLOW_SERVER = "services/training-service/src/training_service/mlflow_server.py"

#: Listening fields of the kit's services: settings field -> listener name suffix.
LISTENING_FIELDS = {
    "port": "gRPC",
    "http_port": "REST",
    "report_http_port": "reports",
    "metrics_port": "metrics",
}

#: Client fields -> the listener they dial (names as in :func:`listeners`).
CLIENTS = {
    ("training-service", "feature_service_address"): "feature-service gRPC",
    ("training-service", "mlflow_tracking_uri"): "mlflow",
    ("registry-gateway", "feature_service_address"): "feature-service gRPC",
    ("registry-gateway", "mlflow_tracking_uri"): "mlflow",
    ("drift-service", "registry_target"): "registry-gateway gRPC",
    ("drift-service", "mlflow_tracking_uri"): "mlflow",
    ("inference-gateway", "feature_service_target"): "feature-service gRPC",
    ("inference-gateway", "registry_target"): "registry-gateway gRPC",
    ("inference-gateway", "drift_service_target"): "drift-service gRPC",
    # model_protocol defaults to "seldon": the champion is the seldon-core runtime's REST port
    ("inference-gateway", "champion_url"): "model-server seldon REST",
    ("model-server", "mlflow_tracking_uri"): "mlflow",
}

#: Servers the platform uses but does not define (their well-known ports).
EXTERNAL = {"redis": 6379, "postgres": 5432, "otlp": 4317}

#: Words naming a listener in prose or code (compared lower case, ``-`` and ``_`` removed).
KEYWORDS = {
    "feature-service": ("featureservice",),
    "training-service": ("training",),
    "registry-gateway": ("registry",),
    "drift-service": ("drift",),
    "inference-gateway": ("inference",),
    "model-server seldon": ("seldon", "champion"),
    "model-server mlserver": ("mlserver",),
    "mlflow": ("mlflow", "tracking"),
    "redis": ("redis",),
    "postgres": ("postgres",),
    "otlp": ("otlp", "otel"),
}

HOST_PORT = re.compile(r"\b(?:localhost|127\.0\.0\.1|0\.0\.0\.0):(\d{2,5})\b")
GRPC_RANGE = re.compile(r"(?<![\d.:])(5005\d)\b")
PORT_FLAG = re.compile(r"--(?:[a-z]+-)?port[\"', =]+(\d{2,5})\b")


# ---------------------------------------------------------------------------------------------
# Reading the defaults


def _literal(node: ast.expr) -> object:
    """The default a field's value expression gives, or ``...`` when it is not a literal."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Field":
        given = [kw.value for kw in node.keywords if kw.arg == "default"] + list(node.args[:1])
        return _literal(given[0]) if given else ...
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ...


@cache
def class_defaults(path: str, class_name: str) -> dict[str, object]:
    """The literal defaults set in the body of ``class_name`` (not inherited ones)."""
    tree = ast.parse((ROOT / path).read_text())
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return {
                item.target.id: _literal(item.value)
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.value
            }
    raise AssertionError(f"{path}: no class {class_name}")


def module_constant(path: str, name: str) -> object:
    """A module-level literal constant."""
    for node in ast.parse((ROOT / path).read_text()).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == [name]:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path}: no constant {name}")


def service_defaults(service: str) -> dict[str, object]:
    """A kit service's defaults: the kit's, overridden by the service's own."""
    path, class_name, _prefix = SERVICES[service]
    return {**class_defaults(*KIT), **class_defaults(path, class_name)}


@cache
def listeners() -> dict[str, int]:
    """Every port a service of the platform listens on by default, by listener name."""
    found: dict[str, int] = {}
    for service in SERVICES:
        defaults = service_defaults(service)
        for field, what in LISTENING_FIELDS.items():
            if isinstance(defaults.get(field), int):
                found[f"{service} {what}"] = defaults[field]  # type: ignore[assignment]
    for runtime in ("seldon", "mlserver"):
        ports = module_constant(MODEL_SERVER_MAIN, f"{runtime.upper()}_PORTS")
        assert isinstance(ports, dict)
        for key, what in (("http", "REST"), ("grpc", "gRPC"), ("metrics", "metrics")):
            found[f"model-server {runtime} {what}"] = ports[key]
    found["mlflow"] = module_constant(MLFLOW_SERVER, "DEFAULT_PORT")  # type: ignore[assignment]
    return found


def address(listener: str) -> str:
    """The default target of a listener, as a client names it (MLflow and REST: a URL)."""
    port = listeners()[listener]
    return (
        f"http://127.0.0.1:{port}"
        if listener == "mlflow" or listener.endswith("REST")
        else f"127.0.0.1:{port}"
    )


def client_defaults() -> dict[tuple[str, str], object]:
    """The default of every client field in :data:`CLIENTS`."""
    got: dict[tuple[str, str], object] = {}
    for service, field in CLIENTS:
        defaults = (
            class_defaults(*MODEL_SERVER[:2]) if service == "model-server" else service_defaults(service)
        )
        assert field in defaults, f"{service}: no field {field} (update CLIENTS in {__name__})"
        got[service, field] = defaults[field]
    return got


# ---------------------------------------------------------------------------------------------
# The settings


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_sets_its_own_port(service: str) -> None:
    path, class_name, _prefix = SERVICES[service]
    assert isinstance(class_defaults(path, class_name).get("port"), int), (
        f"{class_name} ({path}) inherits the kit's default port: set `port` explicitly"
    )


def test_no_two_listeners_share_a_default_port() -> None:
    by_port: dict[int, list[str]] = {}
    for name, port in listeners().items():
        by_port.setdefault(port, []).append(name)
    for name, port in EXTERNAL.items():
        by_port.setdefault(port, []).append(name)
    assert {port: names for port, names in by_port.items() if len(names) > 1} == {}


def test_every_client_default_dials_where_its_service_listens() -> None:
    wrong = {
        f"{service}.{field}": (default, address(CLIENTS[service, field]))
        for (service, field), default in client_defaults().items()
        if default is not None and default != address(CLIENTS[service, field])
    }
    assert wrong == {}, "field: (default, where the service listens)"


def test_the_inference_gateway_champion_default_speaks_seldon() -> None:
    # CLIENTS maps champion_url to the seldon runtime: true while the protocol default is seldon
    assert service_defaults("inference-gateway")["model_protocol"] == "seldon"


def test_every_default_address_in_the_settings_is_a_known_client() -> None:
    """A new ``host:port`` default must be added to CLIENTS (or be an external server)."""
    unknown = []
    for service in [*SERVICES, "model-server"]:
        if service == "model-server":
            defaults = class_defaults(*MODEL_SERVER[:2])
        else:
            path, class_name, _prefix = SERVICES[service]
            defaults = class_defaults(path, class_name)
        for field, default in defaults.items():
            match = HOST_PORT.search(default) if isinstance(default, str) else None
            if match and (service, field) not in CLIENTS and int(match[1]) not in EXTERNAL.values():
                unknown.append(f"{service}.{field}={default}")
    assert unknown == []


# ---------------------------------------------------------------------------------------------
# The READMEs


def readmes() -> list[Path]:
    skip = {".venv", "node_modules", ".tools", ".git", ".run"}
    found = [p for p in ROOT.rglob("*.md") if not skip & set(p.relative_to(ROOT).parts)]
    return sorted(p for p in found if p.name == "README.md" or p.parent == ROOT / "docs")


def _words(text: str) -> str:
    return text.lower().replace("-", "").replace("_", "")


def _owner(readme: Path) -> str | None:
    """The service a README belongs to (services/<name>/README.md)."""
    parts = readme.relative_to(ROOT).parts
    return parts[1] if parts[0] == "services" and len(parts) == 3 else None


def _listener_of_port(port: int) -> str | None:
    names = [name for name, p in {**listeners(), **EXTERNAL}.items() if p == port]
    return names[0] if names else None


def _keywords(listener: str) -> tuple[str, ...]:
    return next(words for prefix, words in KEYWORDS.items() if listener.startswith(prefix))


def address_problems(readme: Path) -> list[str]:
    """Ports in addresses (``localhost:N``, ``127.0.0.1:N``), ``--port N`` flags and bare 5005x numbers
    that are not the default of the listener the text names.

    The listener is the one whose default the port is. When the line names listeners before the
    port (``model_server seldon --http-port 9000``), one of them must be it; otherwise it must be
    named in the 10 lines above (the code block or paragraph), or be the README's own service.
    """
    problems = []
    lines = readme.read_text().splitlines()
    owner = _owner(readme) or ""
    for number, line in enumerate(lines, 1):
        found = {
            (m.start(1), int(m[1])) for rx in (HOST_PORT, GRPC_RANGE, PORT_FLAG) for m in rx.finditer(line)
        }
        for start, port in sorted(found):
            listener = _listener_of_port(port)
            where = f"{readme.relative_to(ROOT)}:{number}: port {port}"
            if listener is None:
                problems.append(f"{where} is no service's default")
                continue
            before = _words(line[:start])
            named_before = any(k in before for kws in KEYWORDS.values() for k in kws)
            context = (
                before if named_before else _words("\n".join([*lines[max(0, number - 11) : number], owner]))
            )
            if not any(k in context for k in _keywords(listener)):
                problems.append(f"{where} is the {listener}'s default, but the text names another")
    return problems


def _expected(service: str, field: str) -> object | None:
    """What a README must give for a port or address setting; None = not checked."""
    if (service, field) in CLIENTS:
        return address(CLIENTS[service, field])
    if field in LISTENING_FIELDS:
        return service_defaults(service).get(field)
    return None


def setting_problems(readme: Path) -> list[str]:
    """``<PREFIX>FIELD=value`` in commands and ``| `FIELD` | default |`` rows of a service README's
    settings table, for port and address settings: the value must be the default."""
    problems = []
    prefixes = {prefix: service for service, (_p, _c, prefix) in SERVICES.items()}
    owner = _owner(readme)
    for number, line in enumerate(readme.read_text().splitlines(), 1):
        given: list[tuple[str, str, str]] = []  # (service, field, value)
        for m in re.finditer(r"\b([A-Z][A-Z_]+_)([A-Z_]+)=([^\s'\"]+)", line):
            for prefix, service in prefixes.items():
                if (m[1] + m[2]).startswith(prefix):
                    given.append((service, (m[1] + m[2])[len(prefix) :].lower(), m[3]))
        row = re.match(r"\|([^|]+)\|([^|]+)\|", line)
        if row and owner in SERVICES:
            names = re.findall(r"`([A-Z_]+)`", row[1])
            values = [v.strip().strip("`") for v in row[2].split(" / ")]
            given += [(owner, name.lower(), value) for name, value in zip(names, values, strict=False)]
        for service, field, value in given:
            expected = _expected(service, field)
            unset = value in ("-", "") and service_defaults(service).get(field) is None
            if expected is not None and value != str(expected) and not unset:
                where = f"{readme.relative_to(ROOT)}:{number}"
                problems.append(f"{where}: {field} of {service} is {value}, default {expected}")
    return problems


@pytest.mark.parametrize("readme", readmes(), ids=lambda p: str(p.relative_to(ROOT)))
def test_readme_addresses_are_the_defaults(readme: Path) -> None:
    assert [*address_problems(readme), *setting_problems(readme)] == []
