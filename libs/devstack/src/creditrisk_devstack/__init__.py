"""Local process supervisor for ``make demo`` and the end-to-end tests.

Named processes, each in its own process group, with readiness checks (gRPC health, HTTP, TCP),
one log file per process, dependency order, and a guaranteed stop of every group it started.
"""

from .readiness import (
    GrpcReadiness,
    HttpReadiness,
    NoReadiness,
    Readiness,
    TcpReadiness,
    free_port,
    port_in_use,
)
from .spec import (
    CHILD_UMASK,
    DEFAULT_GRACE_S,
    PortInUseError,
    ProcessExitedError,
    ProcessFailedError,
    ProcessSpec,
    ReadinessTimeoutError,
    StopError,
    SupervisorError,
    command_hook,
    private_dir,
    process_environment,
)
from .stackfile import ResolvedProcess, Stack, StackFile, StackFileError, load_stack, read_stack_file
from .supervisor import (
    Interrupted,
    ManagedProcess,
    ProcessStatus,
    Supervisor,
    default_log_dir,
    find_repo_root,
)

__all__ = [
    "CHILD_UMASK",
    "DEFAULT_GRACE_S",
    "GrpcReadiness",
    "HttpReadiness",
    "Interrupted",
    "ManagedProcess",
    "NoReadiness",
    "PortInUseError",
    "ProcessExitedError",
    "ProcessFailedError",
    "ProcessSpec",
    "ProcessStatus",
    "Readiness",
    "ReadinessTimeoutError",
    "ResolvedProcess",
    "Stack",
    "StackFile",
    "StackFileError",
    "StopError",
    "Supervisor",
    "SupervisorError",
    "TcpReadiness",
    "command_hook",
    "default_log_dir",
    "find_repo_root",
    "free_port",
    "load_stack",
    "port_in_use",
    "private_dir",
    "process_environment",
    "read_stack_file",
]
