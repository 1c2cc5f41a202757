"""Secrets given as files: ``NAME_FILE`` names a file whose content becomes ``NAME``.

Some settings are read by a library straight from the environment (MLflow's client reads
``MLFLOW_TRACKING_PASSWORD``), so they cannot be one of the kit's ``*_FILE`` settings. A process
that needs one calls :func:`env_from_files` first thing (before its settings load and before such a
library reads the variable): the stack then sets ``MLFLOW_TRACKING_PASSWORD_FILE`` to a file of its
data folder's ``secrets/`` (mode 0600) and never writes the value itself (docs/security.md, "The
local stack's keys"). The value is never printed; only the variable and the file are named.

No heavy import here: the model-server's launcher and MLflow's set-up call it too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, MutableMapping
from pathlib import Path

from creditrisk_telemetry.configuration import EXIT_BAD_CONFIGURATION

#: The suffix of the variable that names a secret's file.
FILE_SUFFIX = "_FILE"


def env_from_files(names: Iterable[str], environ: MutableMapping[str, str] | None = None) -> list[str]:
    """For each ``NAME`` of ``names`` whose ``NAME_FILE`` is set (and not empty), read that file,
    strip surrounding white space and set ``NAME`` to it (over any value ``NAME`` had).

    Args:
        names: The variables that may be given as files (``MLFLOW_TRACKING_PASSWORD``).
        environ: Where to read ``NAME_FILE`` and set ``NAME`` (default ``os.environ``, which child
            processes inherit).

    Returns:
        The names set from a file, in the order given.

    Raises:
        SystemExit: status 2 (:data:`EXIT_BAD_CONFIGURATION`) when a ``NAME_FILE`` cannot be read
            or holds only white space; stderr names ``NAME_FILE``, its path and why (never a value).
    """
    env = os.environ if environ is None else environ
    done: list[str] = []
    for name in names:
        variable = name + FILE_SUFFIX
        path = env.get(variable, "")
        if not path:
            continue
        try:
            value = Path(path).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            print(f"{variable}: cannot read {path}: {reason}", file=sys.stderr)
            raise SystemExit(EXIT_BAD_CONFIGURATION) from None
        if not value:
            print(f"{variable}: {path} is empty", file=sys.stderr)
            raise SystemExit(EXIT_BAD_CONFIGURATION)
        env[name] = value
        done.append(name)
    return done
