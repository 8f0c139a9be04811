"""The error types every layer raises, and what the CLI makes of them (exit codes 2 and 1)."""
from __future__ import annotations


class ConfigError(ValueError):
    """A user-facing, one-line configuration error (raised before anything is logged): exit code 2."""


class RunFailed(RuntimeError):
    """A run or study that failed for a reason worth one line to the user (exit code 1); its run is FAILED."""
