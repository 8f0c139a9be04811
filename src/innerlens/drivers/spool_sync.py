"""``innerlens sync``: deliver what runs spooled while the tracking server was unreachable, and say
what happened to each run in one line."""
from __future__ import annotations

from pathlib import Path

from innerlens.tracking import spool_root, sync
from innerlens.tracking.delivery import waiting_spools


def sync_lines(spool_dir: Path | None, list_only: bool) -> tuple[list[str], bool]:
    """(one line per run, whether something could not be delivered); ``list_only`` delivers nothing."""
    if list_only:
        listed = waiting_spools(spool_dir)
        lines = [f"run {run_id}: {waiting} calls, {why}" for run_id, waiting, why in listed]
        return lines or [f"nothing waits in {spool_dir or spool_root()}"], False
    results = sync(spool_dir)
    lines = [] if results else [f"nothing to sync in {spool_dir or spool_root()}"]
    for run_id, sent, waiting, alive, problem in results:
        if problem:
            lines.append(f"run {run_id}: cannot deliver its spool: {problem}")
        elif alive:
            lines.append(f"run {run_id}: still running, it delivers its own {waiting} spooled calls; skipped")
        else:
            lines.append(f"run {run_id}: delivered {sent} calls" + (f", {waiting} still waiting (server unreachable)" if waiting else ""))
    return lines, any((waiting and not alive) or problem for _, _, waiting, alive, problem in results)
