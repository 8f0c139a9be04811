"""A local copy of a run's artifacts (``--output-dir``), which never deletes what innerlens did not write.

The directory is checked before the run starts (a bad one is a one-line error, exit 2) and only
replaced after the run has logged everything, so a failed run leaves an older copy in place.
An existing directory is archived with a timestamp (``--force-overwrite`` deletes it instead), but
only when it holds the marker an earlier copy left; any other non-empty directory (``.``, a home,
a data folder) is refused, and nothing is ever touched through a symlink.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from innerlens.errors import ConfigError

MARKER = ".innerlens-output"


def check_output_dir(path: str | Path, force_overwrite: bool) -> Path:
    """The target directory, or a one-line error for one that must not be touched."""
    target = Path(path)
    if target.is_symlink():
        raise ConfigError(f"--output-dir {str(target)!r} is a symlink; give the directory it points to")
    if target.exists() and not target.is_dir():
        raise ConfigError(f"--output-dir {str(target)!r} is a file, not a directory")
    if target.is_dir() and any(target.iterdir()) and not (target / MARKER).is_file():
        raise ConfigError(f"--output-dir {str(target)!r} holds files innerlens did not write (no {MARKER}); "
                          "give a new or empty directory, or an earlier innerlens copy")
    return target.resolve()


def write_local_copy(run_id: str, target: Path, force_overwrite: bool) -> Path:
    """Download every artifact of ``run_id`` into ``target`` after moving (or deleting) what is there."""
    from innerlens import tracking

    target = check_output_dir(target, force_overwrite)  # again: the directory may have changed during the run
    if target.exists():
        if force_overwrite:
            shutil.rmtree(target)
        else:
            target.rename(target.with_name(f"{target.name}.{time.strftime('%Y%m%d-%H%M%S')}"))
    tracking.download_run_artifacts(run_id, target)
    (target / MARKER).write_text(f"run {run_id}\n")
    return target
