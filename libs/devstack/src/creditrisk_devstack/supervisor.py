"""The local process supervisor: start named processes, wait until ready, stop every group it started.

Why this is written on ``subprocess`` with process groups rather than on a library
(docs/design.md, "Libraries", allows both):

* honcho runs a Procfile and multiplexes output, but it has no readiness checks (gRPC health,
  HTTP, TCP), no per-process timeout, stop signal, grace period or pre-stop hook, and no library
  API that a pytest fixture can use to start a stack, wait for it and stop it deterministically.
* supervisord is a long-running daemon with its own config and RPC interface; a test session or
  ``make demo`` would have to manage the daemon's own lifecycle, and it also lacks gRPC/HTTP
  readiness.
* What we need is small and POSIX-standard: ``Popen(start_new_session=True)`` puts every process in
  its own session and process group, so ``killpg`` reaches its whole tree (gunicorn's workers,
  ``uv run``'s child, ``sh -c`` children) and nothing else. Only PGIDs created here are signalled;
  nothing is ever killed by name.

Cleanup is guaranteed by layers: the context manager (``with Supervisor(...)``); SIGINT, SIGTERM
and SIGHUP handlers installed while inside ``with`` in the main thread, which raise
:class:`Interrupted` (a ``KeyboardInterrupt``, so pytest and asyncio treat it as "stop now") and let
the ``with`` block unwind; a wait for readiness that ends in any error (the process exited or timed
out, or something raised from outside such as a test's timeout or Ctrl-C) stops every process it
still waited for before the error propagates, and a failed :meth:`Supervisor.start_all` also stops
what it had started before, so no unready or half-started group is left behind; and an ``atexit``
hook stops whatever a supervisor still runs at interpreter exit.
A SIGKILL of the supervisor itself cannot be caught: the groups then survive (each log records
``pid=... pgid=...``). A process that calls ``setsid()`` itself leaves its group and is out of reach.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

from .procgroup import group_members, signal_group
from .readiness import Probe, port_in_use
from .spec import (
    CHILD_UMASK,
    PortInUseError,
    ProcessExitedError,
    ProcessFailedError,
    ProcessSpec,
    ReadinessTimeoutError,
    StopError,
    SupervisorError,
    private_dir,
    private_file,
    process_environment,
)

logger = logging.getLogger(__name__)

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: Upper bound of the grace period used when stopping a process that failed its readiness.
FAILED_GRACE_S = 2.0
#: Prefix of the lines the supervisor itself writes into a process log.
LOG_MARK = "==== devstack:"


def find_repo_root(start: Path | None = None) -> Path:
    """The monorepo root above ``start`` (a folder with ``uv.lock`` and ``services/``, or ``.git``)."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / "uv.lock").is_file() and (candidate / "services").is_dir():
            return candidate
    for candidate in (here, *here.parents):
        if (candidate / ".git").exists():
            return candidate
    return here


def default_log_dir() -> Path:
    return find_repo_root() / ".run" / "logs"


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


class ManagedProcess:
    """A process started by a :class:`Supervisor` (leader of its own process group)."""

    def __init__(self, spec: ProcessSpec, popen: subprocess.Popen[bytes], log_path: Path, log_offset: int):
        self.spec = spec
        self.popen = popen
        self.pgid = popen.pid  # start_new_session=True: the child is leader of a new session and group
        self.log_path = log_path
        self.log_offset = log_offset
        self.started_at = time.monotonic()
        self.ready = False
        self.ready_at: float | None = None  # time.monotonic() when readiness succeeded
        self.stopped = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines this run wrote to its log (not earlier runs' output)."""
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(self.log_offset)
                data = handle.read()
        except OSError:
            return ""
        text = data.decode("utf-8", errors="replace")
        output = [line for line in text.splitlines() if not line.startswith(LOG_MARK)]
        return "\n".join(output[-lines:])


@dataclass(frozen=True)
class ProcessStatus:
    name: str
    pid: int
    alive: bool
    ready: bool
    returncode: int | None
    log_path: Path
    group_pids: tuple[int, ...]


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when the supervisor receives SIGINT, SIGTERM or SIGHUP."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_LIVE: set[Supervisor] = set()
_LIVE_LOCK = threading.Lock()


def _stop_live_supervisors() -> None:  # atexit safety net
    with _LIVE_LOCK:
        supervisors = list(_LIVE)
    for sup in supervisors:
        try:
            sup.stop_all()
        except Exception:  # an atexit hook must not raise
            logger.exception("devstack: stopping processes at exit failed")


atexit.register(_stop_live_supervisors)


class Supervisor:
    """Starts named processes, waits for their readiness, and stops every group it started.

    >>> with Supervisor(log_dir) as sup:          # doctest: +SKIP
    ...     sup.start(ProcessSpec("web", [sys.executable, "-m", "http.server", "8000"],
    ...                           ready=HttpReadiness("http://127.0.0.1:8000/")))
    ...     sup.status()
    """

    def __init__(
        self,
        log_dir: Path | str | None = None,
        *,
        handle_signals: bool = True,
        check_ports_free: bool = True,
        tail_lines: int = 40,
        poll_interval_s: float = 0.1,
        kill_wait_s: float = 5.0,
    ) -> None:
        self.log_dir = Path(log_dir) if log_dir is not None else default_log_dir()
        self.handle_signals = handle_signals
        self.check_ports_free = check_ports_free
        self.tail_lines = tail_lines
        self.poll_interval_s = poll_interval_s
        self.kill_wait_s = kill_wait_s
        self._procs: dict[str, ManagedProcess] = {}
        self._order: list[str] = []
        self._lock = threading.RLock()
        self._previous_handlers: dict[int, Any] = {}
        self._shield_depth = 0
        self._pending_signal: int | None = None
        self._stopping_all = False
        self._force = False

    # ------------------------------------------------------------------------------ context manager

    def __enter__(self) -> Supervisor:
        if self.handle_signals:
            self.install_signal_handlers()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop_all(_raise_pending=False)
        except StopError:
            if exc is None:
                raise
            logger.exception("devstack: while unwinding from %r", exc)
        finally:
            self._pending_signal = None
            self.restore_signal_handlers()

    # ------------------------------------------------------------------------------------- signals

    def install_signal_handlers(self) -> None:
        """Turn SIGINT/SIGTERM/SIGHUP into exceptions so ``with``/``finally`` stop the stack.

        Only possible in the main thread; elsewhere this is a no-op (atexit remains).
        """
        if threading.current_thread() is not threading.main_thread() or self._previous_handlers:
            return
        for sig in HANDLED_SIGNALS:
            self._previous_handlers[sig] = signal.signal(sig, self._on_signal)

    def restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, handler in self._previous_handlers.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous_handlers.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        logger.info("devstack: received %s", signal.Signals(signum).name)
        if self._stopping_all:
            self._force = True  # a second Ctrl-C while stopping: skip the remaining grace periods
        if self._shield_depth:
            self._pending_signal = self._pending_signal or signum
            return
        self._raise_for(signum)

    @staticmethod
    def _raise_for(signum: int) -> None:
        raise Interrupted(signum)

    @contextlib.contextmanager
    def _shielded(self) -> Iterator[None]:
        """Defer signal-raised exceptions (e.g. between Popen and registering the new pid)."""
        self._shield_depth += 1
        try:
            yield
        finally:
            self._shield_depth -= 1

    def _raise_pending(self) -> None:
        if self._shield_depth == 0 and self._pending_signal is not None:
            signum, self._pending_signal = self._pending_signal, None
            self._raise_for(signum)

    # -------------------------------------------------------------------------------------- start

    def start(self, spec: ProcessSpec, *, wait: bool = True) -> ManagedProcess:
        """Spawn ``spec`` in its own session/process group; with ``wait``, block until it is ready.

        On a readiness failure the process's group is stopped and a :class:`ProcessFailedError`
        is raised; any other error while waiting (e.g. a test's timeout) also stops the group before
        it propagates. Either way the name can be started again. Processes started earlier keep
        running (the ``with`` block stops them). A name whose process still runs cannot be started
        again (:class:`SupervisorError` "already started"); one whose process exited on its own can:
        what is left of its group is stopped first.
        """
        with self._lock:
            existing = self._procs.get(spec.name)
            if existing is not None and not existing.stopped:
                if existing.alive:
                    raise SupervisorError(f"{spec.name}: already started (pid {existing.pid})")
                # exited on its own: its children may still hold its ports; reap the group first
                if not self._stop_one(
                    existing, grace_s=min(existing.spec.grace_s, FAILED_GRACE_S), run_hook=False
                ):
                    raise StopError(f"{spec.name}: process group {existing.pgid} survived SIGKILL")
            if self.check_ports_free:
                address = spec.ready.address()
                if address is not None and port_in_use(*address):
                    raise PortInUseError(
                        f"{spec.name}: {address[0]}:{address[1]} already accepts connections before the "
                        "process is started (a leftover process? another stack?)"
                    )
            private_dir(self.log_dir)  # 0700, as `dirs`: logs may quote applicant data
            for folder in spec.dirs:
                private_dir(Path(folder))
            log_path = self.log_dir / f"{spec.name}.log"
            cwd = Path(spec.cwd) if spec.cwd is not None else None
            env = self._environment(spec)
            with open(log_path, "ab", opener=private_file) as log:
                header = (
                    f"{LOG_MARK} {spec.name} started {_now()} cwd={cwd or Path.cwd()} "
                    f"cmd={shlex.join(str(a) for a in spec.argv)}\n"
                )
                log.write(header.encode())
                log.flush()
                offset = log.tell()
                with self._shielded():
                    try:
                        popen = subprocess.Popen(
                            [str(a) for a in spec.argv],
                            cwd=cwd,
                            env=env,
                            stdin=subprocess.DEVNULL,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                            close_fds=True,
                            umask=CHILD_UMASK,
                        )
                    except OSError as exc:
                        log.write(f"{LOG_MARK} could not start: {exc}\n".encode())
                        raise ProcessFailedError(
                            spec.name, f"could not start: {exc}", log_path, str(exc), None
                        ) from exc
                    proc = ManagedProcess(spec, popen, log_path, offset)
                    if existing is not None:
                        self._order.remove(spec.name)
                    self._procs[spec.name] = proc
                    self._order.append(spec.name)
                    with _LIVE_LOCK:
                        _LIVE.add(self)
                    self._append_log(proc, f"{LOG_MARK} {spec.name} pid={popen.pid} pgid={proc.pgid}")
            logger.info("devstack: started %s (pid %d), log %s", spec.name, popen.pid, log_path)
        self._raise_pending()
        if wait:
            self.wait_ready(spec.name)
        return proc

    @staticmethod
    def _environment(spec: ProcessSpec) -> dict[str, str]:
        return process_environment(spec)

    def start_all(self, specs: Iterable[ProcessSpec]) -> list[ManagedProcess]:
        """Start ``specs`` respecting ``depends_on``; processes whose dependencies are ready start
        together and are waited for together. ``depends_on=None`` = after every earlier spec.

        All or nothing: when one of them fails (or anything else interrupts the call), every process
        this call started is stopped, in reverse start order, before the error propagates; processes
        started before the call keep running."""
        specs = list(specs)
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate process names in {names}")
        deps: dict[str, set[str]] = {}
        for index, spec in enumerate(specs):
            wanted = set(names[:index]) if spec.depends_on is None else set(spec.depends_on)
            unknown = wanted - set(names) - {n for n, p in self._procs.items() if p.ready and not p.stopped}
            if unknown:
                raise ValueError(f"{spec.name}: depends on unknown process(es) {sorted(unknown)}")
            deps[spec.name] = wanted & set(names)
        started: list[ManagedProcess] = []
        remaining = list(specs)
        done: set[str] = set()
        try:
            while remaining:
                wave = [s for s in remaining if deps[s.name] <= done]
                if not wave:
                    raise ValueError(f"dependency cycle among {[s.name for s in remaining]}")
                for spec in wave:
                    started.append(self.start(spec, wait=False))
                self.wait_ready(*(s.name for s in wave))
                done.update(s.name for s in wave)
                remaining = [s for s in remaining if s.name not in done]
        except BaseException as exc:
            self._stop_failed_attempt(started, exc)
            self._raise_pending()  # a Ctrl-C during that cleanup wins over the error
            raise
        return started

    # ------------------------------------------------------------------------------------- ready

    def wait_ready(self, *names: str) -> None:
        """Wait until each named process is ready (each against its own ``timeout_s``, counted from
        its start; past it, one check still runs before failing). If one exits or times out, its
        group is stopped and the error is raised.

        Whatever ends the wait with an error (that failure, or one raised from outside: a test's
        timeout, Ctrl-C), every process this call still waited for is stopped first: none is left
        running unready under its name, so each can be started again."""
        pending = [self._procs[n] for n in names if not self._procs[n].ready]
        probes: dict[str, Probe] = {}
        reasons: dict[str, str] = {}
        try:
            while pending:
                for proc in list(pending):
                    if proc.name not in probes:
                        probes[proc.name] = proc.spec.ready.open_probe()
                    self._check_exited(proc)
                    remaining = proc.started_at + proc.spec.timeout_s - time.monotonic()
                    # a wait that begins after the deadline (the caller was busy meanwhile) still
                    # checks once: a process that got ready unwatched is not failed for it
                    if remaining <= 0 and proc.name in reasons:
                        self._fail(
                            proc,
                            ReadinessTimeoutError,
                            f"not ready after {proc.spec.timeout_s:g}s ({proc.spec.ready.describe()}); "
                            f"last check: {reasons.get(proc.name, 'none yet')}; process group killed",
                        )
                    reason = probes[proc.name].check(min(1.0, max(remaining, 0.2)))
                    if reason is None:
                        self._check_exited(proc)  # the answer may come from someone else on that port
                        proc.ready = True
                        proc.ready_at = time.monotonic()
                        pending.remove(proc)
                        elapsed = time.monotonic() - proc.started_at
                        logger.info("devstack: %s ready after %.2fs", proc.name, elapsed)
                    else:
                        reasons[proc.name] = reason
                if pending:
                    time.sleep(self.poll_interval_s)
        except BaseException as exc:
            self._stop_unready(pending, exc)
            self._raise_pending()  # a Ctrl-C during that cleanup wins over the error
            raise
        finally:
            for probe in probes.values():
                with contextlib.suppress(Exception):
                    probe.close()

    def _stop_unready(self, procs: Sequence[ManagedProcess], exc: BaseException) -> None:
        """Stop (short grace, no ``before_stop``: they never served) each of ``procs`` that is not
        stopped yet, because the wait for their readiness ended with ``exc``."""
        for proc in reversed(procs):
            if proc.stopped:
                continue  # e.g. the process whose failure is ``exc``
            self._append_log(
                proc, f"{LOG_MARK} {proc.name} not ready when the wait ended ({type(exc).__name__})"
            )
            try:
                self._stop_one(proc, grace_s=min(proc.spec.grace_s, FAILED_GRACE_S), run_hook=False)
            except Exception:  # never hide ``exc``
                logger.exception("devstack: stopping %s after a failed wait failed", proc.name)

    def _stop_failed_attempt(self, started: Sequence[ManagedProcess], exc: BaseException) -> None:
        """Stop, in reverse start order, every process of a failed :meth:`start_all`."""
        for proc in reversed(started):
            if proc.stopped:
                continue
            self._append_log(
                proc, f"{LOG_MARK} {proc.name} stopped: its group failed to start ({type(exc).__name__})"
            )
            grace = None if proc.ready else min(proc.spec.grace_s, FAILED_GRACE_S)
            try:
                if not self._stop_one(proc, grace_s=grace, run_hook=proc.ready):
                    logger.error("devstack: process group %d of %s survived SIGKILL", proc.pgid, proc.name)
            except Exception:  # never hide ``exc``
                logger.exception("devstack: stopping %s after a failed start failed", proc.name)

    def _check_exited(self, proc: ManagedProcess) -> None:
        code = proc.popen.poll()
        if code is not None:
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
            self._fail(proc, ProcessExitedError, f"{how} before it was ready ({proc.spec.ready.describe()})")

    def _fail(self, proc: ManagedProcess, error: type[ProcessFailedError], message: str) -> None:
        self._stop_one(proc, grace_s=min(proc.spec.grace_s, FAILED_GRACE_S), run_hook=False)
        self._raise_pending()  # a Ctrl-C during that cleanup wins over the readiness error
        raise error(proc.name, message, proc.log_path, proc.log_tail(self.tail_lines), proc.popen.returncode)

    # -------------------------------------------------------------------------------------- stop

    def stop(self, name: str) -> None:
        """Stop one process (its whole group)."""
        if not self._stop_one(self._procs[name]):
            raise StopError(f"{name}: process group {self._procs[name].pgid} survived SIGKILL")

    def stop_all(self, *, _raise_pending: bool = True) -> None:
        """Stop every process started here, in reverse start order; raise :class:`StopError` if a
        group survived SIGKILL. Safe to call more than once."""
        survivors: list[str] = []
        with self._lock:
            self._stopping_all = True
            try:
                with self._shielded():
                    for name in reversed(self._order):
                        proc = self._procs[name]
                        try:
                            if not self._stop_one(proc):
                                survivors.append(f"{name} (pgid {proc.pgid})")
                        except Exception:
                            logger.exception("devstack: stopping %s failed", name)
                            survivors.append(name)
            finally:
                self._stopping_all = False
                self._force = False
                with _LIVE_LOCK:
                    _LIVE.discard(self)
        if survivors:
            raise StopError(f"process groups still alive after SIGKILL: {', '.join(survivors)}")
        if _raise_pending:
            self._raise_pending()

    def _stop_one(self, proc: ManagedProcess, *, grace_s: float | None = None, run_hook: bool = True) -> bool:
        """SIGTERM (or the spec's stop signal) to the group, up to the grace period, then SIGKILL.
        True once no live member of the group remains."""
        if proc.stopped:
            return not group_members(proc.pgid)
        with self._shielded():
            spec = proc.spec
            grace = spec.grace_s if grace_s is None else grace_s
            if run_hook and spec.before_stop is not None and proc.alive and not self._force:
                try:
                    spec.before_stop(proc)
                except Exception:
                    logger.exception("devstack: before_stop hook of %s failed", spec.name)
            if self._group_alive(proc):
                signal_group(proc.pgid, spec.stop_signal)
                deadline = time.monotonic() + grace
                while self._group_alive(proc) and time.monotonic() < deadline and not self._force:
                    time.sleep(0.02)
                if self._group_alive(proc):
                    logger.warning("devstack: %s did not stop within %.1fs: SIGKILL", spec.name, grace)
                    signal_group(proc.pgid, signal.SIGKILL)
                    deadline = time.monotonic() + self.kill_wait_s
                    while self._group_alive(proc) and time.monotonic() < deadline:
                        time.sleep(0.02)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=self.kill_wait_s)
            gone = not self._group_alive(proc)
            proc.stopped = True
            self._append_log(proc, f"{LOG_MARK} {spec.name} stopped {_now()} returncode={proc.returncode}")
            return gone

    @staticmethod
    def _group_alive(proc: ManagedProcess) -> bool:
        """True while a member of the process's group lives. Once the leader is reaped and no member
        is left, the kernel may hand the number out again: a live process whose pid is the group's
        id then leads someone else's group (ours never again has a member with that pid), and
        nothing may be signalled."""
        proc.popen.poll()  # reap the leader so it does not linger as a zombie
        members = group_members(proc.pgid)
        if proc.popen.returncode is not None and proc.pgid in members:
            return False
        return bool(members)

    @staticmethod
    def _append_log(proc: ManagedProcess, line: str) -> None:
        with contextlib.suppress(OSError), proc.log_path.open("ab") as log:
            log.write(line.encode() + b"\n")

    # ------------------------------------------------------------------------------------ status

    def __getitem__(self, name: str) -> ManagedProcess:
        return self._procs[name]

    def __contains__(self, name: object) -> bool:
        return name in self._procs

    @property
    def processes(self) -> Sequence[ManagedProcess]:
        return [self._procs[n] for n in self._order]

    def status(self) -> list[ProcessStatus]:
        """One row per process, in start order."""
        return [
            ProcessStatus(
                name=p.name,
                pid=p.pid,
                alive=p.alive,
                ready=p.ready and p.alive,
                returncode=p.returncode,
                log_path=p.log_path,
                group_pids=tuple(sorted(group_members(p.pgid))),
            )
            for p in self.processes
        ]

    def exited(self) -> list[ManagedProcess]:
        """Processes that exited on their own (not stopped by the supervisor)."""
        return [p for p in self.processes if not p.stopped and p.returncode is not None]
