"""``devstack up <stack.toml>``: start a stack, print its status, run until Ctrl-C, stop everything.

``devstack check <stack.toml>`` parses the file and prints what would run. Both take
``--profile NAME`` (one of the file's profiles) and ``--set NAME=VALUE`` (a variable over the
file's ``[vars]``; repeatable).
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from .spec import ProcessFailedError, SupervisorError
from .stackfile import Stack, StackFileError, load_stack
from .supervisor import Interrupted, Supervisor

console = Console(stderr=True)


def _status_table(sup: Supervisor) -> Table:
    table = Table(title="devstack")
    for column in ("name", "pid", "alive", "ready", "exit", "log"):
        table.add_column(column)
    for row in sup.status():
        table.add_row(
            row.name,
            str(row.pid),
            "[green]yes[/]" if row.alive else "[red]no[/]",
            "[green]yes[/]" if row.ready else "[yellow]no[/]",
            "" if row.returncode is None else str(row.returncode),
            str(row.log_path),
        )
    return table


def _plan_table(stack: Stack) -> Table:
    table = Table(title=f"{stack.path} (root {stack.root}, logs {stack.log_dir})")
    for column in ("name", "command", "cwd", "ready", "timeout", "grace", "stop", "after"):
        table.add_column(column)
    names: list[str] = []
    for spec in stack.processes:
        after = names[:] if spec.depends_on is None else list(spec.depends_on)
        table.add_row(
            spec.name,
            shlex.join(spec.argv),
            str(spec.cwd),
            spec.ready.describe(),
            f"{spec.timeout_s:g}s",
            f"{spec.grace_s:g}s",
            spec.stop_signal.name,
            ", ".join(after),
        )
        names.append(spec.name)
    return table


def _up(stack: Stack, log_dir: Path | None, poll_s: float) -> int:
    with Supervisor(log_dir or stack.log_dir) as sup:
        try:
            sup.start_all(stack.processes)
        except ProcessFailedError as exc:
            console.print(f"[red]{exc}")
            return 1
        console.print(_status_table(sup))
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
    args = parser.parse_args(argv)
    variables = dict(item.partition("=")[::2] for item in args.variables)
    if any(not name for name in variables) or any("=" not in item for item in args.variables):
        parser.error("--set takes NAME=VALUE")

    logging.basicConfig(
        level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)]
    )
    try:
        stack = load_stack(args.stack, profile=args.profile, variables=variables)
    except StackFileError as exc:
        console.print(f"[red]{exc}")
        sys.exit(2)
    if args.command == "check":
        console.print(_plan_table(stack))
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
        console.print(f"[red]{exc}")
        code = 1
    sys.exit(code)
