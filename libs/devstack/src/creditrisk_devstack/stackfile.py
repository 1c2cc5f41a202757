"""TOML stack files: a list of processes for ``devstack up``.

```toml
root = "../.."               # optional, relative to this file; default: the repo root above it
log_dir = ".run/logs"        # optional, relative to root

[defaults]                   # optional, applied to every process
timeout_s = 60
grace_s = 15
env = { OMP_NUM_THREADS = "1" }

[[process]]
name = "mlflow"
argv = ["uv", "run", "--project", "services/training-service", "mlflow", "server", "--port", "5000"]
# or: cmd = "uv run --project services/training-service mlflow server --port 5000"
cwd = "."                    # relative to root (default: root)
env = { MLFLOW_FOO = "1" }   # merged over the defaults' env and the inherited environment
timeout_s = 180
grace_s = 15
stop_signal = "SIGTERM"
depends_on = []              # optional; omitted = after every process declared above
pre_stop = ["curl", "-X", "POST", "http://127.0.0.1:9000/not-ready"]   # optional command
ready = { http = "http://127.0.0.1:5000/health" }
# ready = { tcp = 5000 } | { tcp = "127.0.0.1:5000" } | { grpc = "127.0.0.1:50051", service = "" }
```

Strings in argv, cmd, cwd, env values and ready may use ``${root}`` and ``${VAR}`` from the
environment (``$$`` for a literal ``$``).
"""

from __future__ import annotations

import os
import shlex
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .procgroup import signal_from_name
from .readiness import (
    GrpcReadiness,
    HttpReadiness,
    NoReadiness,
    Readiness,
    TcpReadiness,
)
from .spec import ProcessSpec, command_hook
from .supervisor import find_repo_root

_PROCESS_KEYS = {
    "name", "argv", "cmd", "cwd", "env", "timeout_s", "grace_s", "stop_signal", "depends_on",
    "pre_stop", "ready", "inherit_env",
}  # fmt: skip
_DEFAULT_KEYS = {"timeout_s", "grace_s", "stop_signal", "env", "inherit_env"}


class StackFileError(ValueError):
    pass


@dataclass(frozen=True)
class Stack:
    path: Path
    root: Path
    log_dir: Path
    processes: tuple[ProcessSpec, ...]


def load_stack(path: Path | str) -> Stack:
    path = Path(path).resolve()
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise StackFileError(f"{path}: {exc}") from exc
    return parse_stack(data, path)


def parse_stack(data: Mapping[str, Any], path: Path) -> Stack:
    unknown = set(data) - {"root", "log_dir", "defaults", "process"}
    if unknown:
        raise StackFileError(f"{path}: unknown top-level keys {sorted(unknown)}")
    root = (path.parent / data["root"]).resolve() if "root" in data else find_repo_root(path.parent)
    mapping = {**os.environ, "root": str(root)}

    def sub(value: Any, where: str) -> str:
        if not isinstance(value, str | int | float):
            raise StackFileError(f"{path}: {where}: expected a string, got {value!r}")
        try:
            return string.Template(str(value)).substitute(mapping)
        except (KeyError, ValueError) as exc:
            raise StackFileError(f"{path}: {where}: cannot expand {value!r}: {exc}") from exc

    log_dir = root / sub(data.get("log_dir", ".run/logs"), "log_dir")
    defaults = data.get("defaults", {})
    if set(defaults) - _DEFAULT_KEYS:
        raise StackFileError(f"{path}: unknown keys in [defaults]: {sorted(set(defaults) - _DEFAULT_KEYS)}")
    processes = data.get("process", [])
    if not isinstance(processes, list) or not processes:
        raise StackFileError(f"{path}: no [[process]] entries")
    specs: list[ProcessSpec] = []
    for index, raw in enumerate(processes):
        where = f"process #{index + 1}" + (f" ({raw['name']})" if "name" in raw else "")
        extra = set(raw) - _PROCESS_KEYS
        if extra:
            raise StackFileError(f"{path}: {where}: unknown keys {sorted(extra)}")
        if "name" not in raw or ("argv" in raw) == ("cmd" in raw):
            raise StackFileError(f"{path}: {where}: needs a name and exactly one of argv / cmd")
        merged = {**defaults, **raw, "env": {**defaults.get("env", {}), **raw.get("env", {})}}
        argv = (
            [sub(a, f"{where}.argv") for a in raw["argv"]]
            if "argv" in raw
            else shlex.split(sub(raw["cmd"], f"{where}.cmd"))
        )
        kwargs: dict[str, Any] = {
            "name": raw["name"],
            "argv": argv,
            "cwd": root / sub(raw.get("cwd", "."), f"{where}.cwd"),
            "env": {k: sub(v, f"{where}.env.{k}") for k, v in merged["env"].items()},
            "ready": _readiness(
                raw.get("ready"), lambda v, w=where: sub(v, f"{w}.ready"), f"{path}: {where}"
            ),
            "inherit_env": bool(merged.get("inherit_env", True)),
        }
        for key in ("timeout_s", "grace_s"):
            if key in merged:
                kwargs[key] = float(merged[key])
        if "stop_signal" in merged:
            try:
                kwargs["stop_signal"] = signal_from_name(merged["stop_signal"])
            except ValueError as exc:
                raise StackFileError(f"{path}: {where}: {exc}") from exc
        if "depends_on" in raw:
            kwargs["depends_on"] = tuple(raw["depends_on"])
        if "pre_stop" in raw:
            kwargs["before_stop"] = command_hook([sub(a, f"{where}.pre_stop") for a in raw["pre_stop"]])
        try:
            specs.append(ProcessSpec(**kwargs))
        except ValueError as exc:
            raise StackFileError(f"{path}: {exc}") from exc
    return Stack(path=path, root=root, log_dir=log_dir, processes=tuple(specs))


def _readiness(raw: Any, sub: Any, where: str) -> Readiness:
    if raw is None or raw == {} or raw == "none":
        return NoReadiness()
    if not isinstance(raw, dict):
        raise StackFileError(f"{where}: ready must be a table")
    kinds = {"tcp", "http", "grpc"} & set(raw)
    if len(kinds) != 1 or set(raw) - {"tcp", "http", "grpc", "service", "host"}:
        raise StackFileError(f"{where}: ready needs exactly one of tcp / http / grpc, got {raw!r}")
    if "http" in raw:
        return HttpReadiness(sub(raw["http"]))
    if "grpc" in raw:
        return GrpcReadiness(sub(raw["grpc"]), service=sub(raw.get("service", "")))
    value = sub(raw["tcp"])
    host, sep, port = value.rpartition(":")
    if not port.isdigit():
        raise StackFileError(f"{where}: tcp readiness needs a port or host:port, got {value!r}")
    return TcpReadiness(int(port), host=(host if sep else sub(raw.get("host", "127.0.0.1"))))
