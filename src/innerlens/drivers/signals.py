"""SIGTERM ends a run the way Ctrl-C does: flushed, marked KILLED, children stopped.

``timeout``, Slurm and Kubernetes stop a job with SIGTERM. Python's default is to die at once,
leaving the run RUNNING, its last metrics unsent and its worker processes orphaned. Turning
the signal into :class:`Terminated` (a ``KeyboardInterrupt``) sends it down the one path every
run already has for Ctrl-C.
"""
from __future__ import annotations

import signal
import subprocess
import threading
from types import FrameType
from typing import Iterable


class Terminated(KeyboardInterrupt):
    """The process was sent SIGTERM."""


_received = threading.Event()


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    _received.set()
    raise Terminated(f"signal {signum}")


def was_terminated() -> bool:
    """Whether SIGTERM arrived: a library that catches the interrupt (Ray's blocking calls) may hand
    on a plain ``KeyboardInterrupt`` in place of :class:`Terminated`."""
    return _received.is_set()


def terminate_as_interrupt() -> None:
    """From now on SIGTERM raises :class:`Terminated` in the main thread (a no-op elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


def stop_processes(processes: Iterable[subprocess.Popen], grace_s: float = 30.0) -> None:
    """SIGTERM every child still running, give each ``grace_s`` to mark its run KILLED, then kill it."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        process.terminate()
    for process in running:
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
