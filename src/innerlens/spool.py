"""A durable, ordered journal of tracking calls that could not be delivered.

When the tracking server is unreachable, a run's logging calls (metric batches, artifact
uploads, its end status) are appended here instead, with copies of the files they upload, and
delivered in the same order once the server answers again, by the run itself or later by
``innerlens sync``. The journal is append-only; a separate counter says how many entries were
delivered, so a delivery interrupted at any point resumes at the first undelivered entry (and
re-sends at most that one, which the tracking store accepts twice without duplicating it).
No mlflow here: the caller says how an entry is sent.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator

Entry = dict[str, Any]
JOURNAL, DELIVERED, META, LOCK = "journal.jsonl", "delivered", "run.json", "lock"


class Spool:
    """One run's undelivered calls under ``directory``."""

    def __init__(self, directory: Path) -> None:
        """Open without touching the files: only the holder (:meth:`claim`) repairs, appends or delivers,
        so a ``sync`` that merely looks can never cut a line a live run is writing."""
        self.directory = directory
        self._recount()
        self._lock: int | None = None

    def _recount(self) -> None:
        self._appended = sum(1 for _ in self._lines())
        self._delivered = int((self.directory / DELIVERED).read_text()) if (self.directory / DELIVERED).exists() else 0

    def claim(self, wait: bool = False) -> bool:
        """Take the spool for this process; False when another holds it (``wait``: block until it is free).

        Only the holder appends or delivers. Counts are re-read once the lock is held, since the
        previous holder may have appended or delivered since this object was opened.
        """
        if self._lock is None:
            descriptor = os.open(self.directory / LOCK, os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(descriptor)
                return False
            self._lock = descriptor
            self._repair()
            self._recount()
        return True

    def release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    @property
    def removed(self) -> bool:
        """Whether a delivery emptied and removed this spool's directory (its lock file is gone)."""
        return not (self.directory / LOCK).exists()

    @classmethod
    def create(cls, directory: Path, meta: dict[str, str]) -> "Spool":
        """Open the spool in ``directory`` (continuing one that exists), recording where its entries go."""
        (directory / "files").mkdir(parents=True, exist_ok=True)
        if not (directory / META).exists():
            _write_atomically(directory / META, json.dumps(meta, indent=2))
            _fsync_directory(directory)
        return cls(directory)

    @classmethod
    def own(cls, directory: Path, meta: dict[str, str]) -> "Spool":
        """The spool in ``directory``, held by this process (a run spooling its own calls).

        Waits while ``sync`` delivers an older spool of the same run there; if that delivery
        emptied and removed the directory meanwhile, starts a fresh one.
        """
        while True:
            spool = cls.create(directory, meta)
            spool.claim(wait=True)
            if not spool.removed:
                return spool
            spool.release()

    @property
    def meta(self) -> dict[str, str]:
        return json.loads((self.directory / META).read_text())

    def __len__(self) -> int:
        """Entries not yet delivered."""
        return self._appended - self._delivered

    def append(self, entry: Entry, file: Path | None = None) -> None:
        """Add ``entry``; a file (or directory) it uploads is moved into the spool and named in ``entry['file']``."""
        if file is not None:  # one folder per entry: the upload keeps the file's own name
            kept = self.directory / "files" / f"{self._appended:06d}" / file.name
            kept.parent.mkdir(parents=True)
            shutil.move(str(file), kept)
            _fsync_tree(kept)  # the moved file and its new name reach the disk before the entry naming it
            entry = {**entry, "file": str(kept.relative_to(self.directory))}
        # One entry per line: a kill can tear at most this line, which the next holder moves aside.
        assert self._lock is not None, "only the spool's holder appends (claim it first)"
        descriptor = os.open(self.directory / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            data = (json.dumps(entry) + "\n").encode()
            while data:  # os.write may write less than asked (a full disk, a signal)
                data = data[os.write(descriptor, data):]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        self._appended += 1

    def _repair(self) -> None:
        """Move a torn last line (a write cut short by a kill) aside to ``journal.torn``, so the next
        append starts on a line of its own and the journal parses."""
        path = self.directory / JOURNAL
        if not path.exists():
            return
        data = path.read_bytes()
        end = data.rfind(b"\n") + 1
        if end == len(data):
            return
        with open(self.directory / "journal.torn", "ab") as torn:
            torn.write(data[end:] + b"\n")
        with open(path, "r+b") as journal:
            journal.truncate(end)
            os.fsync(journal.fileno())

    def pending(self) -> Iterator[tuple[Entry, Path | None]]:
        """Undelivered entries in order, each with the path of its file (if any)."""
        for index, line in enumerate(self._lines()):
            if index >= self._delivered:
                entry = json.loads(line)
                yield entry, self.directory / entry["file"] if "file" in entry else None

    def deliver(self, send: Callable[[Entry, Path | None], None]) -> int:
        """Send pending entries in order until one raises (the error propagates); return how many went."""
        sent = 0
        for entry, file in self.pending():
            send(entry, file)
            self._delivered += 1
            sent += 1
            _write_atomically(self.directory / DELIVERED, str(self._delivered))
            if file is not None:
                shutil.rmtree(file.parent)
        self._recount()  # under the lock nobody else appends; this only guards an unclaimed caller
        if not len(self):
            shutil.rmtree(self.directory, ignore_errors=True)
            self.release()
        return sent

    def _lines(self) -> Iterator[str]:
        """Complete journal lines: a torn last line (no newline yet, or a write cut short) is not an entry."""
        path = self.directory / JOURNAL
        if path.exists():
            with open(path) as journal:
                yield from (line for line in journal if line.endswith("\n") and line.strip())


def spools_under(root: Path) -> list[Spool]:
    """Every run spool under ``root`` (one directory per run)."""
    return [Spool(path) for path in sorted(root.glob("*")) if (path / META).exists()] if root.exists() else []


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    with open(partial, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    """Make a rename or a new name in ``directory`` durable (a file's own fsync does not cover its name)."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_tree(path: Path) -> None:
    """fsync a moved file (or every file of a moved folder), then the folders that name them."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for file in files:
        descriptor = os.open(file, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    for directory in {file.parent for file in files} | {path.parent, path.parent.parent}:
        _fsync_directory(directory)
