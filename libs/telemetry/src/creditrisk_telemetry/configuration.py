"""Settings from the environment, loaded the same way by every process (extra ``settings``).

:func:`load_or_exit` builds any pydantic-settings ``BaseSettings`` class and exits with status 2
(:data:`EXIT_BAD_CONFIGURATION`) for every bad-environment case (validation errors, and
pydantic-settings' ``SettingsError``, e.g. a list field given ``a,b`` instead of JSON), printing
each variable's name and the reason, **never the value** (a value may be a secret: a DSN, a
token); a variable with the class's ``env_prefix`` that names no field is reported as a warning (a
typo such as ``FEATURE_SERVICE_PROT`` would otherwise go unnoticed).

It lives here, beside the telemetry set-up, rather than in the service kit because the
model-server loads its settings the same way and cannot install the kit (seldon-core 1.19's pins
hold grpcio-reflection and protobuf below the kit's versions); the kit's
``ServiceSettings.load_or_exit`` calls it.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from typing import Any, NoReturn

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsError

EXIT_BAD_CONFIGURATION = 2
"""Process exit status on invalid settings (the usage-error status of sysexits/argparse)."""


def env_name(cls: type[BaseSettings], field_name: str) -> str:
    """The environment variable that sets ``field_name`` of ``cls`` (prefix + name, upper case)."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    return f"{prefix}{field_name}".upper()


def load_or_exit[S: BaseSettings](cls: type[S], **overrides: Any) -> S:
    """Read and validate ``cls`` from the environment; on error print each wrong variable, exit 2.

    Args:
        cls: The settings class.
        **overrides: Values that win over the environment (tests, command-line flags).

    Returns:
        The validated settings.

    Raises:
        SystemExit: With status 2 (:data:`EXIT_BAD_CONFIGURATION`) when a value is invalid or
            cannot be parsed; each problem is printed to stderr as ``NAME: reason``, under
            ``invalid configuration of <class name>:``. Values are never printed.
    """
    try:
        settings = cls(**overrides)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = [str(part) for part in error["loc"]]
            # A field read through a validation alias is reported under the alias, already a name.
            name = (env_name(cls, loc[0]) if loc[0] in cls.model_fields else loc[0]) if loc else "(settings)"
            if len(loc) > 1:
                name += " (" + ".".join(loc[1:]) + ")"
            problems.append(f"{name}: {error['msg']}")
        _exit(cls, problems)
    except SettingsError as exc:
        # Raised while parsing a source, before validation: e.g. a list field given "a,b".
        match = re.search(r'field "([^"]+)"', str(exc))
        name = env_name(cls, match.group(1)) if match else "(settings)"
        reason = "cannot be parsed"
        if _is_complex(cls, match.group(1) if match else ""):
            reason += ' (this field takes JSON, e.g. ["a", "b"] or {"k": "v"})'
        if exc.__cause__ is not None:
            reason += f": {type(exc.__cause__).__name__}"
        _exit(cls, [f"{name}: {reason}"])
    for name in unknown_variables(cls):
        print(f"warning: {name} is set but names no setting of {cls.__name__}; ignored", file=sys.stderr)
    return settings


def _is_complex(cls: type[BaseSettings], field_name: str) -> bool:
    field = cls.model_fields.get(field_name)
    origin = getattr(field.annotation, "__origin__", None) if field is not None else None
    return origin in (list, dict, set, tuple, frozenset)


def _exit(cls: type[BaseSettings], problems: list[str]) -> NoReturn:
    lines = [f"invalid configuration of {cls.__name__}:", *(f"  {p}" for p in problems)]
    print("\n".join(lines), file=sys.stderr)
    raise SystemExit(EXIT_BAD_CONFIGURATION) from None


def unknown_variables(cls: type[BaseSettings], environ: Mapping[str, str] | None = None) -> list[str]:
    """Variables with ``cls``'s ``env_prefix`` that name no field (likely typos), sorted."""
    prefix = str(cls.model_config.get("env_prefix", "")).upper()
    if not prefix:
        return []
    known = {env_name(cls, name) for name in cls.model_fields}
    delimiter = cls.model_config.get("env_nested_delimiter") or None
    unknown = []
    for variable in os.environ if environ is None else environ:
        upper = variable.upper()
        if not upper.startswith(prefix):
            continue
        head = upper.split(delimiter.upper(), 1)[0] if delimiter else upper
        if head not in known:
            unknown.append(variable)
    return sorted(unknown)
