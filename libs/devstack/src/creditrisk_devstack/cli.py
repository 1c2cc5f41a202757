"""``devstack up <stack.toml>``: start a stack, print its status, run until Ctrl-C, stop everything.

``devstack check <stack.toml>`` parses the file and prints what ``up`` would run. Both take
``--profile NAME`` (one of the file's profiles), ``--set NAME=VALUE`` (a variable over the file's
``[vars]``), ``--only NAME[,NAME]`` (those processes instead of the file's default set, every
process without ``autostart = false``), ``--with NAME[,NAME]`` (those on top of it; what a named
process depends on is started too) and ``--port NAME.PORT=N`` (pin a port; the others are free
ones), each repeatable. ``up`` holds the file's ``lock`` (an exclusive flock) while it runs.
"""

from __future__ import annotations

import argparse
import functools
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from .lockfile import LockHeldError, exclusive_lock
from .spec import ProcessFailedError, SupervisorError
from .stackfile import Stack, StackFile, StackFileError, read_stack_file
from .supervisor import Interrupted, Supervisor

console = Console(stderr=True)


def _ports(stack: Stack, name: str) -> str:
    """``port=50051 metrics=40321``: the ports process ``name`` was given."""
    return " ".join(f"{port}={number}" for port, number in stack.ports.get(name, {}).items())


def _status_table(sup: Supervisor, stack: Stack) -> Table:
    table = Table(title="devstack")
    for column in ("name", "ports", "pid", "alive", "ready", "exit", "log"):
        table.add_column(column, overflow="fold")
    for row in sup.status():
        table.add_row(
            row.name,
            _ports(stack, row.name),
            str(row.pid),
            "[green]yes[/]" if row.alive else "[red]no[/]",
            "[green]yes[/]" if row.ready else "[yellow]no[/]",
            "" if row.returncode is None else str(row.returncode),
            str(row.log_path),
        )
    return table


def _print_plan(stack: Stack, file: StackFile) -> None:
    """One block per process (readable at 80 columns: long values wrap)."""
    say = functools.partial(console.print, markup=False, highlight=False)
    say(f"{stack.path} (profile {stack.profile or '-'})", style="bold")
    say(f"root {stack.root}\nlogs {stack.log_dir}\nlock {stack.lock or '-'}")
    names: list[str] = []
    for spec in stack.processes:
        after = names[:] if spec.depends_on is None else list(spec.depends_on)
        console.print()
        say(f"{spec.name}  after: {', '.join(after) or '-'}", style="bold")
        say(f"  ports   {_ports(stack, spec.name) or '-'}")
        say(f"  ready   {spec.ready.describe()} within {spec.timeout_s:g}s")
        say(f"  stop    {spec.stop_signal.name}, SIGKILL after {spec.grace_s:g}s")
        say(f"  cwd     {spec.cwd}")
        say(f"  command {shlex.join(spec.argv)}", soft_wrap=True)  # one line, whole
        names.append(spec.name)
    others = [name for name in file.names if name not in names]
    if others:
        say(f"\nnot started (add with --with NAME): {', '.join(others)}")


def _up(stack: Stack, log_dir: Path | None, poll_s: float) -> int:
    lock = ExitStack()
    try:
        if stack.lock is not None:
            lock.enter_context(exclusive_lock(stack.lock))
    except LockHeldError as exc:
        console.print(
            f"{exc}: a `make demo` or another `devstack up` uses this data folder; wait for it "
            "or stop it first (or give another one: --set data_dir=...)",
            style="red",
            markup=False,
            soft_wrap=True,
        )
        return 1
    with lock, Supervisor(log_dir or stack.log_dir) as sup:
        for spec in stack.processes:
            console.print(f"{spec.name}: {_ports(stack, spec.name) or 'no ports'}")
        try:
            sup.start_all(stack.processes)
        except ProcessFailedError as exc:
            console.print(str(exc), style="red", markup=False, soft_wrap=True)
            return 1
        console.print(_status_table(sup, stack))
        console.print("[bold]stack ready[/] - Ctrl-C stops every process")
        while True:
            time.sleep(poll_s)
            for proc in sup.exited():
                console.print(
                    f"[red]{proc.name} exited with code {proc.returncode}; stopping the stack[/]\n"
                    f"{proc.log_tail()}"
                )
                return 1


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="devstack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the stack and run until Ctrl-C")
    up.add_argument("stack", type=Path)
    up.add_argument("--log-dir", type=Path, default=None)
    up.add_argument("--poll", type=float, default=0.5, help="seconds between liveness checks")
    check = commands.add_parser("check", help="parse the stack file and print the plan")
    check.add_argument("stack", type=Path)
    for command in (up, check):
        command.add_argument("--profile", default=None, help="one of the file's profiles")
        command.add_argument(
            "--set", dest="variables", action="append", default=[], metavar="NAME=VALUE",
            help="a variable over the file's [vars] (repeatable)",
        )  # fmt: skip
        command.add_argument(
            "--only", action="append", default=[], metavar="NAME[,NAME]",
            help="start these processes (and what they depend on) instead of the default set",
        )  # fmt: skip
        command.add_argument(
            "--with", dest="extra", action="append", default=[], metavar="NAME[,NAME]",
            help="start these processes (and what they depend on) too",
        )  # fmt: skip
        command.add_argument(
            "--port", dest="ports", action="append", default=[], metavar="NAME.PORT=N",
            help="pin a port of a process, e.g. inference-gateway.http=8080 (repeatable)",
        )  # fmt: skip
    args = parser.parse_args(argv)
    variables = dict(item.partition("=")[::2] for item in args.variables)
    if any(not name for name in variables) or any("=" not in item for item in args.variables):
        parser.error("--set takes NAME=VALUE")
    ports: dict[str, dict[str, int]] = {}
    for item in args.ports:
        key, _, number = item.partition("=")
        name, dot, port = key.rpartition(".")
        if not (name and dot and port and number.isdigit() and 0 < int(number) < 65536):
            parser.error(f"--port takes NAME.PORT=N (N a TCP port), got {item!r}")
        ports.setdefault(name, {})[port] = int(number)

    logging.basicConfig(
        level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)]
    )
    try:
        file = read_stack_file(args.stack)
        names = file.closure([*(_split(args.only) if args.only else file.default_names), *_split(args.extra)])
        stack = file.resolve_all(names, profile=args.profile, variables=variables, ports=ports)
    except StackFileError as exc:
        console.print(str(exc), style="red", markup=False, soft_wrap=True)
        sys.exit(2)
    if args.command == "check":
        _print_plan(stack, file)
        return
    try:
        code = _up(stack, args.log_dir, args.poll)
    except Interrupted as exc:  # SIGINT / SIGTERM / SIGHUP: the stack has been stopped
        console.print(f"stopped ({exc})")
        code = exc.exit_code
    except KeyboardInterrupt:
        console.print("stopped")
        code = 130
    except SupervisorError as exc:
        console.print(str(exc), style="red", markup=False, soft_wrap=True)
        code = 1
    sys.exit(code)


def _split(values: Sequence[str]) -> list[str]:
    """``["a,b", "c"]`` -> ``["a", "b", "c"]`` (the repeatable, comma-separated options)."""
    return [name.strip() for value in values for name in value.split(",") if name.strip()]
