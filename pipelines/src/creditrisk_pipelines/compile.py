"""Compile the pipelines to Kubeflow IR YAML: ``python -m creditrisk_pipelines.compile``.

``make pipelines`` writes ``pipelines/compiled/<name>.yaml`` (committed: what a Kubeflow cluster
runs); ``--check`` compiles into memory and fails (exit 1, naming the stale files) when the
committed YAML differs, so CI catches a pipeline changed without ``make pipelines``. ``--image``
(or ``CREDITRISK_PIPELINES_IMAGE``) names the components' image; the committed YAML uses the
default, ``ghcr.io/creditrisk/pipelines:<version>``, and a deployment compiles its own.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import tempfile
from pathlib import Path

from creditrisk_pipelines import IMAGE_ENV

#: Where the committed YAML lives.
COMPILED_DIR = Path(__file__).resolve().parents[2] / "compiled"


def compile_all(out_dir: Path) -> dict[str, Path]:
    """Compile every pipeline of :data:`creditrisk_pipelines.pipelines.PIPELINES` into ``out_dir``.

    Returns:
        Pipeline name -> the YAML file written.
    """
    from kfp import compiler

    from creditrisk_pipelines.pipelines import PIPELINES

    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, pipeline in PIPELINES.items():
        path = out_dir / f"{name}.yaml"
        compiler.Compiler().compile(pipeline_func=pipeline, package_path=str(path))
        written[name] = path
    return written


def stale(committed_dir: Path = COMPILED_DIR) -> list[str]:
    """Names of the committed YAML files that differ from a fresh compilation (or are missing),
    each with a short unified diff."""
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        for fresh in compile_all(Path(tmp)).values():
            committed = committed_dir / fresh.name
            if not committed.exists():
                problems.append(f"{committed} is missing")
                continue
            old, new = committed.read_text().splitlines(), fresh.read_text().splitlines()
            if old != new:
                diff = "\n".join(
                    list(difflib.unified_diff(old, new, str(committed), "fresh", lineterm=""))[:40]
                )
                problems.append(f"{committed} is stale:\n{diff}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=COMPILED_DIR, help="output folder")
    parser.add_argument("--image", help=f"components' image (default: ${IMAGE_ENV} or the package's)")
    parser.add_argument("--check", action="store_true", help="fail when the committed YAML is stale")
    args = parser.parse_args(argv)
    if args.image:
        os.environ[IMAGE_ENV] = args.image  # read when the components module is imported
    if args.check:
        problems = stale(args.out)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print(
                "stale compiled pipelines: run `make pipelines` and commit pipelines/compiled/",
                file=sys.stderr,
            )
            return 1
        print(f"compiled pipelines in {args.out} are up to date")
        return 0
    for name, path in compile_all(args.out).items():
        print(f"{name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
