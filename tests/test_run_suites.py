"""``make test`` runs every step even when one fails, and lists the failed ones at the end
(scripts/run-suites; issue 16: make stopped at the first failing step, so later suites never ran)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN_SUITES = ROOT / "scripts" / "run-suites"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")

# A Makefile shaped like the repository's: a set-up prerequisite that run-suites turns off.
MAKEFILE = """\
SETUP := setup
.PHONY: setup first broken last
setup:
\t@echo SET-UP RAN; exit 9
first: $(SETUP)
\t@echo FIRST RAN
broken: $(SETUP)
\t@echo BROKEN RAN; exit 3
last: $(SETUP)
\t@echo LAST RAN
"""


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUN_SUITES), *args],
        cwd=cwd,
        env={**os.environ, "MAKE": "make"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_step_runs_after_a_failure_and_the_failures_are_listed(tmp_path: Path) -> None:
    (tmp_path / "Makefile").write_text(MAKEFILE)
    result = _run(tmp_path, "--title", "make test", "first", "broken", "last")
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    assert [line for line in out.splitlines() if line.endswith(" RAN")] == [
        "FIRST RAN",
        "BROKEN RAN",
        "LAST RAN",  # after the failed step
    ]
    assert "SET-UP RAN" not in out  # each step runs with SETUP= (set-up ran once, before)
    assert "==> [2/3] broken" in out
    assert "<== broken: FAILED (exit 2)" in out  # make's exit status for a failed recipe
    assert "==== make test: 2 of 3 steps passed" in out
    assert re.search(r"^  FAILED  broken +\d+\.\ds$", out, re.MULTILINE), out
    assert out.rstrip().endswith("FAILED: broken")


def test_all_steps_passing_exit_zero(tmp_path: Path) -> None:
    (tmp_path / "Makefile").write_text(MAKEFILE)
    result = _run(tmp_path, "first", "last")
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^  ok +last +\d+\.\ds$", result.stdout, re.MULTILINE), result.stdout
    assert result.stdout.rstrip().endswith("all passed")


def _dry_run(target: str) -> tuple[list[str], str]:
    """``make -n <target>``: the steps it would run and its output (each step's commands printed,
    none executed)."""
    result = subprocess.run(
        ["make", "-n", "--no-print-directory", target],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return re.findall(r"^==> \[\d+/\d+\] (.+?)  \(", result.stdout, re.MULTILINE), result.stdout


def test_make_test_has_a_step_for_every_check_and_suite() -> None:
    steps, _ = _dry_run("test")
    suites = sorted(  # a top-level folder reads "tests of pipelines/", as "tests of libs/"
        [f"tests of {path.parent.relative_to(ROOT)}" for path in ROOT.glob("services/*/tests")]
        + [f"tests of {path.parent.relative_to(ROOT)}/" for path in ROOT.glob("pipelines/tests")]
    )
    assert steps[:9] == [
        "check-protos",
        "check-envs",
        "check-pipelines",
        "lint/ruff",
        "lint/format",
        "lint/mypy",
        "lint/buf",
        "tests of libs/",
        "tests of tests/",
    ]
    assert sorted(steps[9:]) == suites


def test_make_test_fast_runs_every_suite_without_the_real_end_to_end_and_slow_tests() -> None:
    """``make -n test-fast``: the suites of ``make test``, no check or linter, each run with the
    marker expression that leaves out the real profile, the end-to-end and the slow tests."""
    steps, output = _dry_run("test-fast")
    without = {"registry-gateway", "model-server"}  # every test of theirs needs MLflow first
    services = [
        f"fast tests of {path.parent.relative_to(ROOT)}"
        for path in ROOT.glob("services/*/tests")
        if path.parent.name not in without
    ]
    assert steps[:2] == ["fast tests of libs/", "fast tests of tests/"]
    assert sorted(steps[2:]) == sorted([*services, "fast tests of pipelines/"])
    commands = [line for line in output.splitlines() if " pytest " in line]
    assert len(commands) == len(steps)
    assert all('-m "not real and not e2e and not slow"' in line for line in commands)
    for pyproject in [
        ROOT / "pyproject.toml",
        *ROOT.glob("services/*/pyproject.toml"),
        ROOT / "pipelines/pyproject.toml",
    ]:
        # --strict-markers: a marker of the expression must be registered in every suite
        text = pyproject.read_text()
        assert all(f'"{marker}: ' in text for marker in ("real", "e2e", "slow")), pyproject


def test_make_dry_run_and_ignore_errors_never_report_a_pass(tmp_path: Path) -> None:
    # `make -n test` printed "all passed" with nothing run; `make -i test` hid a failed step.
    (tmp_path / "Makefile").write_text(
        MAKEFILE
        + "test:\n\t@+$(RUN) --title 'make test' first broken last\n".replace("$(RUN)", str(RUN_SUITES))
    )
    dry = subprocess.run(["make", "-n", "test"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "all passed" not in dry.stdout
    assert "dry run: nothing was checked or tested" in dry.stdout
    ignored = subprocess.run(["make", "-i", "test"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert "FAILED: broken" in ignored.stdout
    assert "LAST RAN" in ignored.stdout  # (the outer make ignores run-suites' status, as asked)
