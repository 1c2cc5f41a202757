"""Starts a small stack and waits to be signalled (or exits without stopping, for atexit).

usage: driver.py LOG_DIR PIDS_FILE MODE
MODE: "with" = inside `with Supervisor`, stack ready; "waiting" = inside `with`, signalled while waiting
for a process that never becomes ready; "atexit" = no `with`, no stop_all, plain exit.
Writes the pids of every process it started and of their children to PIDS_FILE, then waits.
"""

import json
import sys
import time
from pathlib import Path

from creditrisk_devstack import ProcessSpec, Supervisor, TcpReadiness, free_port

log_dir, pids_file, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
child_pids = log_dir.parent / "child-pids"
child_pids.mkdir(parents=True, exist_ok=True)
port, port2 = free_port(), free_port()
specs = [
    ProcessSpec(
        "web",
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        ready=TcpReadiness(port),
        timeout_s=20,
        grace_s=2,
    ),
    ProcessSpec("tree", ["sh", "-c", f"sleep 300 & echo $! > {child_pids}/tree; exec sleep 300"], grace_s=2),
    ProcessSpec(
        "stubborn",
        [sys.executable, str(Path(__file__).parent / "stubborn.py"), str(port2)],
        ready=TcpReadiness(port2),
        timeout_s=20,
        grace_s=0.5,
    ),
]


def publish(sup: Supervisor) -> None:
    deadline = time.monotonic() + 10
    while not (child_pids / "tree").exists() or not (child_pids / "tree").read_text().strip():
        if time.monotonic() > deadline:
            raise SystemExit("child pid never written")
        time.sleep(0.02)
    pids = [p.pid for p in sup.processes] + [int((child_pids / "tree").read_text())]
    tmp = pids_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(pids))
    tmp.rename(pids_file)


if mode == "with":
    with Supervisor(log_dir) as sup:
        sup.start_all(specs)
        publish(sup)
        time.sleep(300)
elif mode == "waiting":
    with Supervisor(log_dir) as sup:
        sup.start(specs[1])
        never = ProcessSpec(
            "never",
            [sys.executable, "-c", "import time; time.sleep(300)"],
            ready=TcpReadiness(free_port()),
            timeout_s=120,
        )
        sup.start(never, wait=False)
        publish(sup)
        sup.wait_ready("never")
else:  # no context manager, no stop_all: only the atexit hook stops the stack
    sup = Supervisor(log_dir)
    sup.start_all(specs)
    publish(sup)
    sys.exit(0)
