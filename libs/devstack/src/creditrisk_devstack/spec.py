"""What to run: :class:`ProcessSpec`, and the errors the supervisor raises."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .readiness import NoReadiness, Readiness

if TYPE_CHECKING:
    from .supervisor import ManagedProcess

BeforeStopHook = Callable[["ManagedProcess"], None]

DEFAULT_GRACE_S = 15.0
"""Default stop grace: the kit's default drain (``grace_period_s`` 10 s) plus 5 s of shutdown hooks."""
CHILD_UMASK = 0o077
"""The umask of every process the supervisor starts (and of its pre-stop hooks): what they create
is theirs alone (files 0600, folders 0700): a stack's data holds applicant data and keys."""


def private_dir(folder: Path) -> Path:
    """``folder`` made mode 0700 with any missing parent (0700 too); an existing one set to 0700.

    Returns:
        ``folder``.

    Raises:
        OSError: it cannot be made (a file in the way, no permission).
    """
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)
    if folder.stat().st_mode & 0o777 != 0o700:
        folder.chmod(0o700)
    return folder


def private_file(path: str, flags: int) -> int:
    """An ``opener`` for :func:`open`: a new file gets mode 0600 (a process's log)."""
    return os.open(path, flags, 0o600)


@dataclass(frozen=True)
class ProcessSpec:
    """One named process of a stack.

    ``env`` overrides the inherited environment (a ``None`` value removes a variable); with
    ``inherit_env=False`` the process sees only ``env``. ``depends_on=None`` means "after every
    process declared before me" (strict declared order); an explicit tuple (possibly empty) lets
    :meth:`Supervisor.start_all` start it as soon as those are ready, in parallel with others.
    ``before_stop`` runs before ``stop_signal`` is sent (e.g. flip a readiness flag so a load
    balancer drains); its errors are logged, never raised. ``dirs`` are created (with their
    parents, mode 0700: :func:`private_dir`) before each start. Every process runs with umask
    :data:`CHILD_UMASK` (what it creates is 0600 / 0700).

    ``grace_s`` (default :data:`DEFAULT_GRACE_S`, 15 s) is how long the process gets after the stop
    signal before SIGKILL. It must exceed the process's own drain: a kit service drains for up to
    its ``grace_period_s`` (default 10 s) and then runs its shutdown hooks, so a grace equal to
    10 s would SIGKILL it in the middle of its hooks.
    """

    name: str
    argv: Sequence[str]
    cwd: Path | str | None = None
    env: Mapping[str, str | None] = field(default_factory=dict)
    ready: Readiness = field(default_factory=NoReadiness)
    timeout_s: float = 60.0
    grace_s: float = DEFAULT_GRACE_S
    stop_signal: signal.Signals = signal.SIGTERM
    depends_on: tuple[str, ...] | None = None
    before_stop: BeforeStopHook | None = None
    inherit_env: bool = True
    dirs: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"invalid process name {self.name!r} (it names the log file)")
        if isinstance(self.argv, str) or not self.argv:
            raise ValueError(f"{self.name}: argv must be a non-empty sequence of strings")
        if self.timeout_s <= 0 or self.grace_s < 0:
            raise ValueError(f"{self.name}: timeout_s must be > 0 and grace_s >= 0")


def process_environment(spec: ProcessSpec) -> dict[str, str]:
    """The environment ``spec``'s process gets: the inherited one (unless ``inherit_env`` is off)
    with ``spec.env`` over it (``None`` removes a variable), ``PYTHONUNBUFFERED=1`` by default."""
    env: dict[str, str] = dict(os.environ) if spec.inherit_env else {}
    env.setdefault("PYTHONUNBUFFERED", "1")  # logs appear as they are written
    for key, value in spec.env.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def command_hook(argv: Sequence[str], timeout_s: float = 10.0) -> BeforeStopHook:
    """A ``before_stop`` hook running a command (like a Kubernetes preStop exec): in the process's
    folder and environment (:func:`process_environment`), for at most ``timeout_s`` seconds."""
    command = list(argv)

    def hook(process: ManagedProcess) -> None:
        subprocess.run(
            command,
            cwd=process.spec.cwd,
            env=process_environment(process.spec),
            timeout=timeout_s,
            check=True,
            stdin=subprocess.DEVNULL,
            umask=CHILD_UMASK,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    return hook


class SupervisorError(RuntimeError):
    """Base class of the supervisor's errors."""


class ProcessFailedError(SupervisorError):
    """A process could not be made ready; carries its name, exit code and the tail of its log."""

    def __init__(self, name: str, message: str, log_path: Path, log_tail: str, returncode: int | None):
        self.name = name
        self.log_path = log_path
        self.log_tail = log_tail
        self.returncode = returncode
        tail = log_tail.rstrip() or "(log is empty)"
        super().__init__(f"{name}: {message}\n--- last lines of {log_path} ---\n{tail}\n--- end of log ---")


class ProcessExitedError(ProcessFailedError):
    """The process exited before it became ready."""


class ReadinessTimeoutError(ProcessFailedError):
    """The process did not become ready within its ``timeout_s``; its group has been killed."""


class PortInUseError(SupervisorError):
    """The readiness address already answers before the process is started (a stale process?)."""


class StopError(SupervisorError):
    """Some process group survived SIGKILL (e.g. a process stuck in uninterruptible sleep)."""
