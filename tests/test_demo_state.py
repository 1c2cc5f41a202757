"""``make demo``'s state: names per checkout on the shared servers, a trace file per profile, one
clock for the pipelines' durations, and what the last lines point at (scripts/demo_state.py,
scripts/demo.py, scripts/demo_observability.py)."""

from __future__ import annotations

import io
import json
import os
import re
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import demo  # noqa: E402
import demo_observability  # noqa: E402
import demo_state  # noqa: E402

#: The feature-service's rule for a Feast project (settings.py) and the drift-service's for a schema.
FEAST_PROJECT = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
DRIFT_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


# ---------------------------------------------------------------------- names per checkout


def test_real_profile_names_differ_between_checkouts_and_are_stable_for_one(tmp_path: Path) -> None:
    main, worktree = tmp_path / "main", tmp_path / "wt-demo"
    a, b = demo_state.real_stores(main), demo_state.real_stores(worktree)
    assert a.mlflow_database != b.mlflow_database
    assert a.drift_schema != b.drift_schema
    assert a.feature_project != b.feature_project
    # the same checkout, however its path is spelled, always gets the same names
    assert demo_state.real_stores(main) == a
    assert demo_state.real_stores(tmp_path / "wt-demo" / ".." / "main") == a
    for stores in (a, b):
        assert FEAST_PROJECT.match(stores.feature_project)
        assert DRIFT_SCHEMA.match(demo_state.RealStores.previous(stores.drift_schema))
        for name in (stores.mlflow_database, stores.drift_schema, f"feast_{stores.feature_project}"):
            assert len(demo_state.RealStores.previous(name)) <= demo_state.MAX_IDENTIFIER


def test_the_demo_uses_this_checkouts_names_on_the_real_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    own = demo_state.real_stores(ROOT)
    assert own == demo.REAL
    monkeypatch.setattr(demo, "PROFILE", "real")
    stack = demo.demo_stack()
    specs = {spec.name: spec for spec in stack.processes}
    assert specs["feature-service"].env["FEATURE_SERVICE_PROJECT"] == own.feature_project
    assert specs["drift-service"].env["DRIFT_SERVICE_POSTGRES_SCHEMA"] == own.drift_schema
    served = list(specs["mlflow"].argv)
    assert served[served.index("--postgres-dsn") + 1].rsplit("/", 1)[1] == own.mlflow_database
    command = demo.mlflow_ui_command()
    dsn = command[command.index("--postgres-dsn") + 1]
    assert dsn.rsplit("/", 1)[1] == own.mlflow_database
    for fixed in ("mlflow_demo", "drift_demo", "credit_risk_demo"):  # the names every checkout shared
        assert fixed not in (own.mlflow_database, own.drift_schema, own.feature_project)


@pytest.fixture
def two_checkouts(tmp_path: Path, postgres_dsn: str) -> Iterator[tuple[demo_state.RealStores, ...]]:
    """The real profile's stores of two checkouts, as left by a run of each (a database and a
    schema apiece), dropped at the end."""
    import psycopg

    token = uuid.uuid4().hex[:6]  # two test sessions at once never share these either
    stores = tuple(demo_state.real_stores(tmp_path / f"{name}-{token}") for name in ("one", "two"))
    made = [n for s in stores for n in (s.mlflow_database, demo_state.RealStores.previous(s.mlflow_database))]
    schemas = [n for s in stores for n in (s.drift_schema, demo_state.RealStores.previous(s.drift_schema))]
    try:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            for s in stores:
                conn.execute(f'CREATE DATABASE "{s.mlflow_database}"')
                conn.execute(f'CREATE SCHEMA "{s.drift_schema}"')
                conn.execute(f'CREATE TABLE "{s.drift_schema}".events (id int)')
        yield stores
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            for name in made:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            for name in schemas:
                conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def _databases(dsn: str) -> set[str]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database")}


def _schemas(dsn: str) -> set[str]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return {r[0] for r in conn.execute("SELECT nspname FROM pg_namespace")}


@pytest.mark.real
def test_the_reset_keeps_its_previous_run_and_never_touches_another_checkout(
    two_checkouts: tuple[demo_state.RealStores, ...], postgres_dsn: str
) -> None:
    import psycopg

    one, two = two_checkouts
    previous = demo_state.RealStores.previous
    # an MLflow UI still open on the run's database does not block the reset
    with psycopg.connect(demo_state.database_dsn(postgres_dsn, one.mlflow_database)):
        done = demo_state.reset_real(postgres_dsn, one)
    assert len(done) == 2
    databases, schemas = _databases(postgres_dsn), _schemas(postgres_dsn)
    assert previous(one.mlflow_database) in databases
    assert one.mlflow_database not in databases
    assert previous(one.drift_schema) in schemas
    assert one.drift_schema not in schemas
    # the other checkout's stores, and their contents, are as they were
    assert two.mlflow_database in databases
    assert previous(two.mlflow_database) not in databases
    assert two.drift_schema in schemas
    assert previous(two.drift_schema) not in schemas
    with psycopg.connect(postgres_dsn) as conn:
        assert conn.execute(f'SELECT count(*) FROM "{two.drift_schema}".events').fetchone() == (0,)
    # the next run: the older copy goes, the newer one is kept; still nothing of the other's
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{one.mlflow_database}"')
    demo_state.reset_real(postgres_dsn, one)
    databases = _databases(postgres_dsn)
    assert previous(one.mlflow_database) in databases
    assert one.mlflow_database not in databases
    assert two.mlflow_database in databases
    # no schema of a newer run: the kept one stays (a run that failed early loses nothing)
    assert previous(one.drift_schema) in _schemas(postgres_dsn)


# ---------------------------------------------------------------------- file modes


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.mark.parametrize("earlier", [None, 0o755])
def test_the_runs_folder_and_the_previous_one_are_private(
    earlier: int | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Applicant data (issue 18, M1): the run's folder 0700, and the previous run's moved aside
    0700 too, whatever mode an older run left it with."""
    state = tmp_path / ".run" / "demo" / "embedded"
    monkeypatch.setattr(demo, "STATE", state)
    monkeypatch.setattr(demo, "PROFILE", "embedded")
    monkeypatch.setattr(demo, "console", Console(file=io.StringIO()))
    if earlier is not None:
        (state / "drift-service").mkdir(parents=True)
        state.chmod(earlier)
    demo.fresh_state()
    assert _mode(state) == 0o700
    assert _mode(state.parent) == (0o700 if earlier is None else 0o755)  # made private only when made
    if earlier is not None:
        assert _mode(tmp_path / ".run" / "demo" / "embedded.previous") == 0o700
    demo.fresh_state()
    assert _mode(state) == 0o700
    assert _mode(tmp_path / ".run" / "demo" / "embedded.previous") == 0o700


# ---------------------------------------------------------------------- a trace file per profile


def test_each_profile_keeps_its_own_trace_file_with_its_run(tmp_path: Path) -> None:
    embedded, real = (demo_state.spans_file(tmp_path, p) for p in ("embedded", "real"))
    assert embedded != real
    # in the profile's folder: the next run of that profile moves it to <profile>.previous
    assert embedded.is_relative_to(demo_state.profile_dir(tmp_path, "embedded"))
    assert real.is_relative_to(demo_state.profile_dir(tmp_path, "real"))
    embedded.parent.mkdir(parents=True)
    embedded.write_text('{"span": "of the embedded run"}\n')
    saved = dict(os.environ)
    observability = demo_observability.start(real)  # what the real profile's run does first
    try:
        assert observability.spans_file == real
        assert embedded.read_text() == '{"span": "of the embedded run"}\n'
    finally:
        observability.receiver.stop()
        os.environ.clear()
        os.environ.update(saved)


def test_paths_are_shown_relative_to_where_the_user_stands(tmp_path: Path) -> None:
    inside = tmp_path / ".run" / "demo" / "embedded" / "traces" / "spans.jsonl"
    assert demo_state.shown(inside, cwd=tmp_path) == ".run/demo/embedded/traces/spans.jsonl"
    elsewhere = tmp_path / "elsewhere"
    assert demo_state.shown(inside, cwd=elsewhere) == str(inside.resolve())


# ---------------------------------------------------------------------- the pipelines' durations

FAKE_PIPELINE = textwrap.dedent(
    """\
    import json, sys, time
    args = sys.argv[1:]
    name, output = args[2], args[args.index("--output") + 1]
    time.sleep(1.6)  # the process's start and kfp's import, before the run's own clock starts
    for task in ("materialize", "train"):
        print(f"12:00:00.000 - INFO - Executing task {task!r}", flush=True)
        time.sleep(0.2)
        print(f"12:00:00.200 - INFO - Task {task!r} finished with status SUCCESS", flush=True)
    time.sleep(0.3)
    result = {"pipeline": name, "seconds": 0.7, "outputs": {}, "tasks": {}}  # the run's own clock
    open(output, "w").write(json.dumps(result))
    """
)


def test_the_summary_shows_each_pipeline_run_with_the_duration_printed_live(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "fake_pipeline.py"
    fake.write_text(FAKE_PIPELINE)
    python = tmp_path / "python"
    python.write_text(f'#!/bin/sh\nexec {sys.executable} {fake} "$@"\n')
    python.chmod(0o755)
    (tmp_path / ".run" / "logs").mkdir(parents=True)
    out = io.StringIO()
    monkeypatch.setattr(demo, "PIPELINES_PYTHON", python)
    monkeypatch.setattr(demo, "PIPELINES", tmp_path)
    monkeypatch.setattr(demo, "ROOT", tmp_path)
    monkeypatch.setattr(demo, "STATE", tmp_path / ".run" / "demo" / "embedded", raising=False)
    monkeypatch.setattr(demo, "console", Console(file=out, width=200, force_terminal=False))
    runs: list[dict[str, Any]] = []
    demo.run_pipeline("training", {}, runs)
    live = out.getvalue()
    assert "materialize" in live
    assert "train" in live
    # the run's own clock (0.7 s) missed the process's start; the live lines did not
    assert json.loads(next(tmp_path.rglob("1-training.json")).read_text())["seconds"] == 0.7
    last_live = re.findall(r"\((\d+ s)\)", live)[-1]  # the last duration printed for the run
    assert last_live != "1 s"
    assert demo.pipeline_timings(runs) == f"training {last_live}"


def test_the_mlflow_ui_command_keeps_the_environments_python(tmp_path: Path) -> None:
    """``.venv/bin/python`` is a link to the base interpreter: resolved, it would lose the
    environment (and MLflow)."""
    venv_python = tmp_path / ".venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.symlink_to(sys.executable)
    assert demo_state.shown(venv_python, cwd=tmp_path) == ".venv/bin/python"


# ---------------------------------------------------------------------- one run at a time, known profiles


def test_a_second_run_of_a_profile_in_one_checkout_is_refused(tmp_path: Path) -> None:
    # Two runs at once reset each other's database and schema and mixed their data.
    with demo_state.run_lock(tmp_path, "real"):
        with (
            pytest.raises(
                SystemExit, match=rf"real profile is running in this checkout \(pid {os.getpid()}\)"
            ),
            demo_state.run_lock(tmp_path, "real"),
        ):
            pass
        with demo_state.run_lock(tmp_path, "embedded"):  # another profile has its own folder
            pass
    with demo_state.run_lock(tmp_path, "real"):  # released at the end of the run
        pass


@pytest.mark.parametrize("profile", ["", ".", "../x", "Real", "embedded/"])
def test_an_unknown_profile_is_refused_before_anything_moves(profile: str) -> None:
    # PROFILE= made .run/demo itself the run's folder: the reset moved every profile's results.
    with pytest.raises(SystemExit, match="is not a profile: use one of embedded, real"):
        demo_state.check_profile(profile)


def test_a_checkout_path_that_is_not_utf8_has_an_id(tmp_path: Path) -> None:
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))
    assert re.fullmatch(r"[0-9a-f]{8}", demo_state.checkout_id(odd))
    assert demo_state.checkout_id(odd) != demo_state.checkout_id(tmp_path / "caf\u00e9")
