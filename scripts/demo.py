"""The main job (`make demo`): runs what exists of the platform so far and says what comes next.

Run by `make demo` in the development environment, after `make setup` created every environment.
Each step is a function; later issues add theirs (serving, the training pipeline, the closed loop).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
PROFILE = os.environ.get("PROFILE", "embedded")
console = Console(width=None if sys.stdout.isatty() else 140)

#: Deployables and the packages that show what each environment is for.
DEPLOYABLES: dict[str, list[str]] = {
    "services/feature-service": ["feast", "protobuf", "numpy"],
    "services/training-service": ["mlflow", "scikit-learn", "protobuf", "numpy"],
    "services/registry-gateway": ["mlflow", "scikit-learn", "protobuf"],
    "services/inference-gateway": ["fastapi", "grpcio", "protobuf"],
    "services/drift-service": ["evidently", "pandas", "protobuf"],
    "services/model-server": ["seldon-core", "mlflow", "scikit-learn", "protobuf", "numpy"],
    "pipelines": ["kfp", "protobuf"],
}

#: Which issue delivers each gRPC service of the contracts (README, "What exists today").
IMPLEMENTED_BY: dict[str, str] = {
    "creditrisk.feature.v1.FeatureStoreService": "feature-service (issue 3)",
    "creditrisk.training.v1.TrainingService": "training-service (issue 4)",
    "creditrisk.registry.v1.ModelRegistryService": "registry-gateway (issue 5)",
    "creditrisk.drift.v1.DriftService": "drift-service (issue 6)",
    "creditrisk.inference.v1.InferenceService": "inference-gateway (issue 8)",
}


def step(number: int, total: int, title: str) -> None:
    console.rule(f"[bold]Step {number}/{total}: {title}")


def show_environments() -> None:
    """One locked environment per deployable: print the interpreter and the versions that matter."""
    table = Table("deployable", "python", "key packages")
    probe = (
        "import sys, importlib.metadata as m; "
        "print(sys.version.split()[0]); "
        "print(' '.join(f'{p}=={m.version(p)}' for p in sys.argv[1:]))"
    )
    for folder, packages in DEPLOYABLES.items():
        python = ROOT / folder / ".venv" / "bin" / "python"
        out = subprocess.run(
            [str(python), "-c", probe, *packages], capture_output=True, text=True, check=True, timeout=120
        ).stdout.splitlines()
        table.add_row(folder, out[0], out[1])
    console.print(table)


def show_contracts() -> None:
    """The v1 API surface of every service, read from the generated descriptors."""
    import importlib
    import pkgutil

    import creditrisk

    table = Table("gRPC service", "RPCs", "implemented by")
    for info in sorted(pkgutil.walk_packages(creditrisk.__path__, "creditrisk."), key=lambda m: m.name):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(info.name)
        for service in module.DESCRIPTOR.services_by_name.values():
            rpcs = ", ".join(method.name for method in service.methods)
            table.add_row(service.full_name, rpcs, IMPLEMENTED_BY.get(service.full_name, "-"))
    console.print(table)


def main() -> int:
    started = time.monotonic()
    console.print(f"[bold]credit-risk platform demo[/bold] (profile: {PROFILE})")
    step(1, 2, "one locked environment per deployable")
    show_environments()
    step(2, 2, "the v1 contracts every service will speak")
    show_contracts()
    console.rule("[bold]What comes next")
    console.print(
        "The foundation is in place: contracts, service kit, telemetry, supervisor, environments. "
        "Next: the feature-service (issue 3) — `make demo` will ingest the German credit data, "
        "materialize it and print the online features of real applicants; then training (4), the "
        "registry gate (5), drift (6), the model-server (7), the inference-gateway (8) and the "
        "closed loop (9)."
    )
    console.print(f"done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
