"""TOML stack files: the processes of a stack, for ``devstack up``, ``make demo`` and the tests.

```toml
root = "../.."               # optional, relative to this file; default: the repo root above it
log_dir = ".run/logs"        # optional, relative to root
profiles = ["embedded", "real"]   # optional; the first is the default profile
lock = "${data_dir}.lock"    # optional: an exclusive flock `devstack up` holds while it runs

[vars]                       # optional defaults of variables; a caller's values replace them
data_dir = "${root}/.run/stack/${profile}"
experiment = "credit-risk"

[defaults]                   # optional, applied to every process
timeout_s = 60
grace_s = 15
env = { OMP_NUM_THREADS = "1" }

[[process]]
name = "mlflow"
ports = ["port"]             # optional; each a free TCP port unless the caller pins it
argv = ["uv", "run", "--project", "services/training-service", "mlflow", "server",
        "--port", "${self.port}"]
# or: cmd = "uv run --project services/training-service mlflow server --port ${self.port}"
cwd = "."                    # relative to root (default: root)
env = { MLFLOW_FOO = "1" }   # merged over the defaults' env and the inherited environment
unset_env = ["VIRTUAL_ENV"]  # removed from the inherited environment
dirs = ["${data_dir}/${name}"]   # folders created before each start
timeout_s = 180
grace_s = 15
stop_signal = "SIGTERM"
depends_on = []              # optional; omitted = after every process declared above
autostart = true             # optional; false: started only when named (`devstack up --with`)
pre_stop = ["curl", "-X", "POST", "http://127.0.0.1:9000/not-ready"]   # optional command,
pre_stop_timeout_s = 10      # run in the process's environment and folder
ready = { http = "http://127.0.0.1:${self.port}/health" }
# ready = { tcp = 5000 } | { tcp = "127.0.0.1:5000" } | { grpc = "127.0.0.1:50051", service = "" }
# TLS: { http = "https://...", ca = "${data_dir}/tls/ca.pem" } | { grpc = "...", ca = "..." }
#      (the server's certificate is checked against that CA; grpc without ca = plaintext)

[process.profile.real]       # optional: what the profile adds (env merged, args appended)
args = ["--backend-store-uri", "${mlflow_dsn}"]

[[process]]
name = "web"
depends_on = []
ports = ["port"]
argv = ["python", "-m", "http.server", "${self.port}"]
[process.wants.mlflow]       # applied only when mlflow runs (or starts before, in one stack)
env = { TRACKING_URI = "http://127.0.0.1:${mlflow.port}" }

[[process]]
name = "web-2"
extends = "web"              # an earlier process: every key not given here (env merged)
```

Strings in argv, cmd, cwd, env values, dirs, pre_stop and ready may use ``${name}``: ``root``,
``profile``, ``name`` (the process's own), ``self.<port>`` (its own ports), ``<process>.<port>``
(a port of a process it depends on or wants), a caller's variable, a ``[vars]`` entry, or an
environment variable, in that order (``$$`` for a literal ``$``). ``[vars]`` values may use
``root``, ``profile``, the environment and the entries above them; ``lock`` may use them all.

:attr:`StackFile.default_names` are the processes ``devstack up`` starts (every one without
``autostart = false``, an ``extends`` inheriting it); :meth:`StackFile.closure` adds what named
processes depend on.

:func:`load_stack` resolves every process at once (each port free, in declared order);
:func:`read_stack_file` keeps the file unresolved, and :meth:`StackFile.resolve` makes one
process's :class:`~creditrisk_devstack.ProcessSpec` when it is about to start, with the ports of
the processes already running: what a stack started on demand (the end-to-end tests) needs.
"""

from __future__ import annotations

import os
import re
import shlex
import string
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .procgroup import signal_from_name
from .readiness import (
    GrpcReadiness,
    HttpReadiness,
    NoReadiness,
    Readiness,
    TcpReadiness,
    free_port,
)
from .spec import ProcessSpec, command_hook
from .supervisor import find_repo_root

_TOP_KEYS = {"root", "log_dir", "profiles", "lock", "vars", "defaults", "process"}
_PROCESS_KEYS = {
    "name", "argv", "cmd", "cwd", "env", "unset_env", "dirs", "ports", "timeout_s", "grace_s",
    "stop_signal", "depends_on", "wants", "pre_stop", "pre_stop_timeout_s", "ready", "inherit_env",
    "extends", "profile", "autostart",
}  # fmt: skip
_DEFAULT_KEYS = {"timeout_s", "grace_s", "stop_signal", "env", "inherit_env"}
_OVERLAY_KEYS = {"env", "args", "unset_env"}
_BUILT_INS = {"root", "profile", "name"}
_PORT_NAME = re.compile(r"[a-z][a-z0-9_]*\Z")


_SCALAR = (str, int, float)
_STRINGS = ("unset_env", "depends_on", "ports")
_TEMPLATES = ("argv", "dirs", "pre_stop")
_TEXT = ("name", "cmd", "cwd", "extends", "stop_signal")
_NUMBERS = ("timeout_s", "grace_s", "pre_stop_timeout_s")


def _check_types(raw: Mapping[str, Any], where: str) -> None:
    """Each key of a process (or ``[defaults]``) table of its TOML type: a string where a list is
    wanted would otherwise be taken letter by letter (``argv = "python -m x"``)."""

    def wrong(key: str, wanted: str) -> StackFileError:
        return StackFileError(f"{where}: {key} must be {wanted}, got {raw[key]!r}")

    for key in _TEXT:
        if key in raw and not (isinstance(raw[key], str) and raw[key]):
            raise wrong(key, "a non-empty string")
    for key in _STRINGS:
        if key in raw and not (isinstance(raw[key], list) and all(isinstance(v, str) for v in raw[key])):
            raise wrong(key, "a list of strings")
    for key in _TEMPLATES:
        if key in raw and not (
            isinstance(raw[key], list)
            and all(isinstance(v, _SCALAR) and not isinstance(v, bool) for v in raw[key])
        ):
            raise wrong(key, "a list of strings")
    for key in _NUMBERS:
        if key in raw and (isinstance(raw[key], bool) or not isinstance(raw[key], int | float)):
            raise wrong(key, "a number (seconds)")
    if "inherit_env" in raw and not isinstance(raw["inherit_env"], bool):
        raise wrong("inherit_env", "true or false")
    if "env" in raw and not isinstance(raw["env"], dict):
        raise wrong("env", "a table")
    for key in ("profile", "wants"):
        if key in raw and not isinstance(raw[key], dict):
            raise wrong(key, "a table of tables")


class StackFileError(ValueError):
    """The stack file is malformed, or a value cannot be expanded (names the file and the place)."""


class _Template(string.Template):
    # ``${feature-service.port}``: a process name (hyphens allowed) and one of its ports
    braceidpattern = r"(?a:[_a-z][-_a-z0-9]*(?:\.[_a-z][_a-z0-9]*)?)"


@dataclass(frozen=True)
class Stack:
    """Every process of a stack file, resolved; ``ports[name][port]`` the ports each was given."""

    path: Path
    root: Path
    log_dir: Path
    processes: tuple[ProcessSpec, ...]
    ports: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    profile: str | None = None
    lock: Path | None = None  # the file's ``lock``, expanded (None: it declares none)


@dataclass(frozen=True)
class ResolvedProcess:
    """One process ready to start: its spec and the ports it was given (``{"port": 50051, ...}``)."""

    spec: ProcessSpec
    ports: Mapping[str, int]

    @property
    def address(self) -> str:
        """``127.0.0.1:<first declared port>``, the process's main address.

        Raises:
            StackFileError: the process declares no port.
        """
        if not self.ports:
            raise StackFileError(f"{self.spec.name} declares no port")
        return f"127.0.0.1:{next(iter(self.ports.values()))}"


def load_stack(
    path: Path | str, *, profile: str | None = None, variables: Mapping[str, str] | None = None
) -> Stack:
    """Read ``path`` and resolve every process, in declared order, each port a free one.

    Raises:
        StackFileError: the file is malformed or a value cannot be expanded.
    """
    return read_stack_file(path).resolve_all(profile=profile, variables=variables)


def read_stack_file(path: Path | str) -> StackFile:
    """Read and check ``path`` without expanding anything (see :class:`StackFile`).

    Raises:
        StackFileError: unreadable, not TOML, or malformed.
    """
    path = Path(path).resolve()
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise StackFileError(f"{path}: {exc}") from exc
    return StackFile.parse(data, path)


def parse_stack(data: Mapping[str, Any], path: Path) -> Stack:
    """:func:`load_stack` of already parsed TOML ``data`` (``path`` names the file in errors)."""
    return StackFile.parse(data, path).resolve_all()


@dataclass(frozen=True)
class StackFile:
    """A stack file, checked but not expanded: processes resolve one by one, when they start."""

    path: Path
    root: Path
    log_dir_template: str
    profiles: tuple[str, ...]
    vars: Mapping[str, Any]
    processes: Mapping[str, Mapping[str, Any]]  # name -> raw table, extends and defaults applied
    lock_template: str | None = None

    @property
    def default_names(self) -> tuple[str, ...]:
        """The processes started when none is named: every one without ``autostart = false``."""
        return tuple(n for n, raw in self.processes.items() if raw.get("autostart", True))

    def closure(self, names: Iterable[str]) -> tuple[str, ...]:
        """``names`` and, transitively, what each depends on (:meth:`dependencies`), in declared
        order. Raises :class:`StackFileError` for an unknown name."""
        wanted, todo = set(), list(names)
        while todo:
            name = todo.pop()
            if name not in self.processes:
                raise StackFileError(f"{self.path}: no process {name!r} (there are {', '.join(self.names)})")
            if name not in wanted:
                wanted.add(name)
                todo.extend(self.dependencies(name))
        return tuple(n for n in self.names if n in wanted)

    def lock_path(
        self, *, profile: str | None = None, variables: Mapping[str, str] | None = None
    ) -> Path | None:
        """The file's ``lock`` expanded (relative to the root), or None when it declares none.
        Raises :class:`StackFileError`."""
        if self.lock_template is None:
            return None
        mapping = {**os.environ, **self.variables(profile=profile, variables=variables)}
        return self.root / _expand(self.lock_template, mapping, f"{self.path}: lock")

    @property
    def names(self) -> tuple[str, ...]:
        """The processes, in declared order."""
        return tuple(self.processes)

    @classmethod
    def parse(cls, data: Mapping[str, Any], path: Path) -> StackFile:
        """Check parsed TOML ``data``. Raises :class:`StackFileError` naming what is wrong."""
        unknown = set(data) - _TOP_KEYS
        if unknown:
            raise StackFileError(f"{path}: unknown top-level keys {sorted(unknown)}")
        for key in ("root", "log_dir"):
            if key in data and not isinstance(data[key], str):
                raise StackFileError(f"{path}: {key} must be a string, got {data[key]!r}")
        if not isinstance(data.get("profiles", []), list) or not all(
            isinstance(p, str) and p for p in data.get("profiles", [])
        ):
            raise StackFileError(f"{path}: profiles must be a list of names, got {data['profiles']!r}")
        root = (path.parent / data["root"]).resolve() if "root" in data else find_repo_root(path.parent)
        profiles = tuple(data.get("profiles", ()))
        variables = data.get("vars", {})
        if not isinstance(variables, dict) or _BUILT_INS & set(variables):
            raise StackFileError(f"{path}: [vars] must be a table not naming {sorted(_BUILT_INS)}")
        defaults = data.get("defaults", {})
        if not isinstance(defaults, dict):
            raise StackFileError(f"{path}: [defaults] must be a table")
        _check_types(defaults, f"{path}: [defaults]")
        if set(defaults) - _DEFAULT_KEYS:
            raise StackFileError(
                f"{path}: unknown keys in [defaults]: {sorted(set(defaults) - _DEFAULT_KEYS)}"
            )
        raws = data.get("process", [])
        if not isinstance(raws, list) or not raws:
            raise StackFileError(f"{path}: no [[process]] entries")
        processes: dict[str, dict[str, Any]] = {}
        for index, raw in enumerate(raws):
            if not isinstance(raw, dict):
                raise StackFileError(f"{path}: process #{index + 1} must be a [[process]] table")
            where = f"{path}: process #{index + 1}" + (f" ({raw['name']})" if "name" in raw else "")
            _check_types(raw, where)
            extra = set(raw) - _PROCESS_KEYS
            if extra:
                raise StackFileError(f"{where}: unknown keys {sorted(extra)}")
            if "name" not in raw:
                raise StackFileError(f"{where}: needs a name")
            if raw["name"] in processes:
                raise StackFileError(f"{where}: a process of that name is declared above")
            merged = _extend(raw, processes, where)
            if not isinstance(merged.get("autostart", True), bool):
                raise StackFileError(f"{where}: autostart must be true or false")
            if ("argv" in merged) == ("cmd" in merged):
                raise StackFileError(f"{where}: needs exactly one of argv / cmd")
            for section in ("profile", "wants"):
                for key, overlay in merged.get(section, {}).items():
                    if not isinstance(overlay, dict) or set(overlay) - _OVERLAY_KEYS:
                        raise StackFileError(f"{where}: [{section}.{key}] takes only {sorted(_OVERLAY_KEYS)}")
            if set(merged.get("profile", {})) - set(profiles):
                raise StackFileError(f"{where}: profiles {sorted(merged['profile'])} not in {list(profiles)}")
            ports = merged.get("ports", [])
            named = all(isinstance(p, str) and _PORT_NAME.match(p) for p in ports)
            if not named or len(set(ports)) != len(ports):
                raise StackFileError(f"{where}: ports must be distinct lower-case names, got {ports!r}")
            env = {**defaults.get("env", {}), **merged.get("env", {})}
            processes[raw["name"]] = {**defaults, **merged, "env": env}
        lock = data.get("lock")
        if lock is not None and not isinstance(lock, str):
            raise StackFileError(f"{path}: lock must be a string (a path)")
        log_dir = str(data.get("log_dir", ".run/logs"))
        stack = cls(path, root, log_dir, profiles, variables, processes, lock)
        for name in processes:
            stack._check_references(name)
        return stack

    def dependencies(self, name: str) -> tuple[str, ...]:
        """What ``name`` needs running first: its ``depends_on``, or every process declared above."""
        raw = self.processes[name]
        if "depends_on" in raw:
            return tuple(raw["depends_on"])
        return self.names[: self.names.index(name)]

    def variables(
        self, *, profile: str | None = None, variables: Mapping[str, str] | None = None
    ) -> dict[str, str]:
        """Every ``[vars]`` entry expanded (a caller's ``variables`` over them), with ``root`` and
        ``profile``. Raises :class:`StackFileError` for an unknown profile, a caller's variable
        naming a built-in (``root``, ``profile``, ``name``, a ``<process>.<port>``) or a value it
        cannot expand."""
        chosen = self._profile(profile)
        given = dict(variables or {})
        reserved = sorted(k for k in given if k in _BUILT_INS or "." in k)
        if reserved:  # ${profile} would say one profile while the other's overlays apply
            raise StackFileError(
                f"{self.path}: variables {reserved} are built in (root, profile, name, ports): "
                "choose the profile with the profile argument (--profile)"
            )
        values: dict[str, str] = {"root": str(self.root), "profile": chosen or ""}
        for key, value in self.vars.items():
            if key in given:
                values[key] = str(given[key])
                continue
            values[key] = _expand(value, {**os.environ, **given, **values}, f"{self.path}: vars.{key}")
        values.update({k: str(v) for k, v in given.items()})
        return values

    def log_dir(self, *, profile: str | None = None, variables: Mapping[str, str] | None = None) -> Path:
        mapping = {**os.environ, **self.variables(profile=profile, variables=variables)}
        return self.root / _expand(self.log_dir_template, mapping, f"{self.path}: log_dir")

    def resolve(
        self,
        name: str,
        *,
        profile: str | None = None,
        variables: Mapping[str, str] | None = None,
        running: Mapping[str, Mapping[str, int]] | None = None,
        ports: Mapping[str, int] | None = None,
    ) -> ResolvedProcess:
        """The spec of process ``name``, about to start.

        Args:
            name: A process of the file.
            profile: One of the file's profiles (default: the first).
            variables: Values over the file's ``[vars]``.
            running: The ports of the processes running now (``{"mlflow": {"port": 5000}}``):
                its dependencies' ports come from here, and each ``[process.wants.<name>]``
                applies when ``<name>`` is among them (it is then started after it, in one stack).
            ports: Ports to give it (a restart on its previous ports); the others are free ones.

        Raises:
            StackFileError: unknown name or profile, a port it references is not running, a value
                it cannot expand, or a spec the supervisor refuses.
        """
        if name not in self.processes:
            raise StackFileError(f"{self.path}: no process {name!r} (there are {', '.join(self.names)})")
        raw = self.processes[name]
        where = f"{self.path}: process {name}"
        chosen = self._profile(profile)
        running = dict(running or {})
        own = {port: int((ports or {}).get(port) or free_port()) for port in raw.get("ports", [])}
        mapping: dict[str, Any] = {
            **os.environ,
            **self.variables(profile=chosen, variables=variables),
            "name": name,
        }
        for other, other_ports in running.items():
            mapping.update({f"{other}.{port}": str(number) for port, number in other_ports.items()})
        mapping.update({f"self.{port}": str(number) for port, number in own.items()})

        def sub(value: Any, at: str) -> str:
            return _expand(value, mapping, f"{where}.{at}")

        env: dict[str, Any] = dict(raw.get("env", {}))
        unset = list(raw.get("unset_env", []))
        args: list[Any] = []
        depends_on = list(raw["depends_on"]) if "depends_on" in raw else None
        overlays = [raw.get("profile", {}).get(chosen, {})] if chosen else []
        for wanted, overlay in raw.get("wants", {}).items():
            if wanted in running:
                overlays.append(overlay)
                if depends_on is not None and wanted not in depends_on:
                    depends_on.append(wanted)
        for overlay in overlays:
            env.update(overlay.get("env", {}))
            unset += overlay.get("unset_env", [])
            args += overlay.get("args", [])
        argv = [sub(a, "argv") for a in raw["argv"]] if "argv" in raw else shlex.split(sub(raw["cmd"], "cmd"))
        argv += [sub(a, "args") for a in args]
        spec_env: dict[str, str | None] = {k: sub(v, f"env.{k}") for k, v in env.items()}
        spec_env.update({k: None for k in unset})
        kwargs: dict[str, Any] = {
            "name": name,
            "argv": argv,
            "cwd": self.root / sub(raw.get("cwd", "."), "cwd"),
            "env": spec_env,
            "ready": _readiness(raw.get("ready"), lambda v: sub(v, "ready"), where),
            "inherit_env": bool(raw.get("inherit_env", True)),
            "dirs": tuple(Path(sub(d, "dirs")) for d in raw.get("dirs", [])),
        }
        for key in ("timeout_s", "grace_s"):
            if key in raw:
                kwargs[key] = float(raw[key])
        if "stop_signal" in raw:
            try:
                kwargs["stop_signal"] = signal_from_name(raw["stop_signal"])
            except ValueError as exc:
                raise StackFileError(f"{where}: {exc}") from exc
        if depends_on is not None:
            kwargs["depends_on"] = tuple(depends_on)
        if raw.get("pre_stop"):
            command = [sub(a, "pre_stop") for a in raw["pre_stop"]]
            kwargs["before_stop"] = command_hook(command, float(raw.get("pre_stop_timeout_s", 10.0)))
        try:
            return ResolvedProcess(ProcessSpec(**kwargs), own)
        except ValueError as exc:
            raise StackFileError(f"{where}: {exc}") from exc

    def resolve_all(
        self,
        names: Iterable[str] | None = None,
        *,
        profile: str | None = None,
        variables: Mapping[str, str] | None = None,
        ports: Mapping[str, Mapping[str, int]] | None = None,
    ) -> Stack:
        """Resolve ``names`` (default: every process), in the file's order, as one stack: each sees
        the ports of those resolved before it; ``ports`` pins some (``{"mlflow": {"port": 5000}}``),
        the others are free ones. Raises :class:`StackFileError` (also for a pinned port of no
        process in the stack)."""
        chosen = self._profile(profile)
        wanted = set(self.names if names is None else names)
        if wanted - set(self.names):
            raise StackFileError(f"{self.path}: no process {sorted(wanted - set(self.names))}")
        pinned = {name: dict(named) for name, named in (ports or {}).items()}
        for name, named in pinned.items():
            declared = self.processes[name].get("ports", []) if name in wanted else []
            if name not in wanted or set(named) - set(declared):
                raise StackFileError(
                    f"{self.path}: cannot pin {', '.join(f'{name}.{p}' for p in named)}: "
                    f"{name} is not in this stack or declares no such port (it has {declared})"
                )
        given: dict[str, dict[str, int]] = {}
        specs = []
        for name in (n for n in self.names if n in wanted):
            missing = [d for d in self.dependencies(name) if d not in given]
            if missing and "depends_on" in self.processes[name]:
                raise StackFileError(f"{self.path}: process {name} depends on {missing}, not in this stack")
            resolved = self.resolve(
                name, profile=chosen, variables=variables, running=given, ports=pinned.get(name)
            )
            given[name] = dict(resolved.ports)
            specs.append(resolved.spec)
        log_dir = self.log_dir(profile=chosen, variables=variables)
        lock = self.lock_path(profile=chosen, variables=variables)
        return Stack(self.path, self.root, log_dir, tuple(specs), given, chosen, lock)

    def _profile(self, profile: str | None) -> str | None:
        if profile is None:
            return self.profiles[0] if self.profiles else None
        if profile not in self.profiles:
            raise StackFileError(f"{self.path}: no profile {profile!r} (there are {list(self.profiles)})")
        return profile

    def _check_references(self, name: str) -> None:
        """Each ``${<process>.<port>}`` names a port of ``self`` or of a process it depends on or
        wants; ``depends_on`` and ``wants`` name processes declared above."""
        raw = self.processes[name]
        where = f"{self.path}: process {name}"
        above = self.names[: self.names.index(name)]
        linked = set(raw.get("depends_on", above)) | set(raw.get("wants", {}))
        if linked - set(above):
            raise StackFileError(f"{where}: depends on / wants {sorted(linked - set(above))}, not above")
        for identifier in _identifiers(raw):
            process, dot, port = identifier.partition(".")
            if not dot:
                continue
            if process == "self":
                declared, known = raw.get("ports", []), True
            else:
                declared, known = self.processes.get(process, {}).get("ports", []), process in linked
            if not known or port not in declared:
                raise StackFileError(
                    f"{where}: ${{{identifier}}} is no port of its own or of a process it depends on / wants"
                )


def _extend(raw: Mapping[str, Any], earlier: Mapping[str, Mapping[str, Any]], where: str) -> dict[str, Any]:
    """``raw`` over the process it ``extends`` (env merged; a given argv or cmd replaces both)."""
    if "extends" not in raw:
        return dict(raw)
    base = earlier.get(raw["extends"])
    if base is None:
        raise StackFileError(f"{where}: extends {raw['extends']!r}, not declared above")
    merged = {k: v for k, v in base.items() if k != "name"}
    if "argv" in raw or "cmd" in raw:
        merged.pop("argv", None)
        merged.pop("cmd", None)
    merged.update({k: v for k, v in raw.items() if k != "extends"})
    merged["env"] = {**base.get("env", {}), **raw.get("env", {})}
    return merged


def _identifiers(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield from _Template(value).get_identifiers()
    elif isinstance(value, dict):
        for item in value.values():
            yield from _identifiers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _identifiers(item)


def _expand(value: Any, mapping: Mapping[str, Any], where: str) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise StackFileError(f"{where}: expected a string, got {value!r}")
    try:
        return _Template(str(value)).substitute(mapping)
    except KeyError as exc:
        missing = exc.args[0]
        if "." in missing:
            process = missing.partition(".")[0]
            raise StackFileError(
                f"{where}: cannot expand {value!r}: port {missing} unknown ({process} is not running)"
            ) from exc
        raise StackFileError(
            f"{where}: cannot expand {value!r}: no variable {missing!r} (the file's [vars] has no "
            f"default for it: give one, e.g. `devstack --set {missing}=VALUE` or "
            f"variables={{{missing!r}: ...}})"
        ) from exc
    except ValueError as exc:
        raise StackFileError(f"{where}: cannot expand {value!r}: {exc}") from exc


def _readiness(raw: Any, sub: Any, where: str) -> Readiness:
    if raw is None or raw == {} or raw == "none":
        return NoReadiness()
    if not isinstance(raw, dict):
        raise StackFileError(f"{where}: ready must be a table")
    kinds = {"tcp", "http", "grpc"} & set(raw)
    if len(kinds) != 1 or set(raw) - {"tcp", "http", "grpc", "service", "host", "ca"}:
        raise StackFileError(f"{where}: ready needs exactly one of tcp / http / grpc, got {raw!r}")
    if "ca" in raw and "tcp" in raw:
        raise StackFileError(f"{where}: ready's ca (TLS) applies to http and grpc only, got {raw!r}")
    ca_file = sub(raw["ca"]) if raw.get("ca") else None
    if "http" in raw:
        return HttpReadiness(sub(raw["http"]), ca_file=ca_file)
    if "grpc" in raw:
        return GrpcReadiness(sub(raw["grpc"]), service=sub(raw.get("service", "")), ca_file=ca_file)
    value = sub(raw["tcp"])
    host, sep, port = value.rpartition(":")
    if not port.isdigit():
        raise StackFileError(f"{where}: tcp readiness needs a port or host:port, got {value!r}")
    return TcpReadiness(int(port), host=(host if sep else sub(raw.get("host", "127.0.0.1"))))
