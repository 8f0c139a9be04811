"""The spool: an ordered, durable journal whose delivery survives being interrupted."""
from __future__ import annotations

from pathlib import Path

import pytest

from innerlens.spool import Spool, spools_under
from innerlens.tracking import sync


def _spool(tmp_path: Path, run_id: str = "run1", uri: str = "http://127.0.0.1:9") -> Spool:
    spool = Spool.create(tmp_path / "spool" / run_id, {"run_id": run_id, "tracking_uri": uri, "artifact_uri": "x"})
    assert spool.claim()  # as the run that spools holds it
    return spool


def test_interrupted_delivery_resumes_at_the_first_undelivered_entry(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    upload = tmp_path / "last.pt"
    upload.write_bytes(b"weights")
    for index in range(5):
        spool.append({"op": "batch", "index": index}, upload if index == 2 else None)
    assert not upload.exists() and len(spool) == 5  # the file moved into the spool

    sent: list[tuple[int, str | None]] = []

    def fail_at_3(entry: dict, file: Path | None) -> None:
        if entry["index"] == 3:
            raise ConnectionError("server down")
        sent.append((entry["index"], file.name if file else None))
        if file is not None:
            assert file.read_bytes() == b"weights"

    with pytest.raises(ConnectionError):
        spool.deliver(fail_at_3)
    assert sent == [(0, None), (1, None), (2, "last.pt")]  # the upload keeps its own name

    spool.release()
    reopened = Spool(spool.directory)  # as `innerlens sync` in another process finds it
    assert len(reopened) == 2
    assert reopened.deliver(lambda entry, file: sent.append((entry["index"], None))) == 2
    assert [index for index, _ in sent] == [0, 1, 2, 3, 4]  # each once, in order
    assert not spool.directory.exists()


def test_sync_leaves_a_live_runs_spool_alone(tmp_path: Path) -> None:
    live = _spool(tmp_path)
    live.append({"op": "batch", "index": 0})  # the run holds it
    assert not Spool(live.directory).claim()
    assert sync(tmp_path / "spool") == [("run1", 0, 1, True, "")]
    assert [s.meta["run_id"] for s in spools_under(tmp_path / "spool")] == ["run1"]


def test_a_torn_last_line_is_moved_aside_and_the_next_append_parses(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    spool.append({"op": "batch", "index": 0})
    with open(spool.directory / "journal.jsonl", "a") as journal:
        journal.write('{"op": "batch", "ind')  # a kill in the middle of a write
    spool.release()
    reopened = Spool(spool.directory)
    assert len(reopened) == 1
    assert reopened.claim()  # the next holder moves the torn line aside
    reopened.append({"op": "batch", "index": 1})
    assert [entry["index"] for entry, _ in Spool(spool.directory).pending()] == [0, 1]
    assert "ind" in (spool.directory / "journal.torn").read_text()


def test_sync_reports_a_corrupt_spool_in_one_line_and_delivers_the_others(tmp_path: Path) -> None:
    bad = _spool(tmp_path)
    bad.append({"op": "batch", "index": 0})
    with open(bad.directory / "journal.jsonl", "a") as journal:
        journal.write("not json at all\n")  # a complete line that does not parse
    bad.release()
    results = sync(tmp_path / "spool")
    assert len(results) == 1
    run_id, sent, waiting, alive, problem = results[0]
    assert run_id == "run1" and not alive and problem.startswith("JSONDecodeError")


def test_a_delivery_claimed_late_sends_what_the_run_appended_after_it_was_opened(tmp_path: Path) -> None:
    """`sync` opens a spool, the live run appends more and finishes, then sync claims: nothing is dropped."""
    meta = {"run_id": "run1", "tracking_uri": "http://127.0.0.1:9", "artifact_uri": "x"}
    run = Spool.own(tmp_path / "spool" / "run1", meta)
    run.append({"op": "batch", "index": 0})
    syncing = Spool(run.directory)  # counted one entry when it was opened
    assert not syncing.claim()  # the run holds it
    run.append({"op": "batch", "index": 1})
    run.append({"op": "end", "index": 2})
    run.release()  # the run ended without delivering
    assert syncing.claim()
    sent: list[int] = []
    assert syncing.deliver(lambda entry, file: sent.append(entry["index"])) == 3
    assert sent == [0, 1, 2] and not run.directory.exists()


def test_a_run_that_starts_spooling_during_a_sync_waits_and_then_starts_a_fresh_spool(tmp_path: Path) -> None:
    import threading

    meta = {"run_id": "run1", "tracking_uri": "http://127.0.0.1:9", "artifact_uri": "x"}
    old = Spool.own(tmp_path / "spool" / "run1", meta)
    old.append({"op": "batch", "index": 0})
    old.release()
    syncing = Spool(old.directory)
    assert syncing.claim()
    owned: list[Spool] = []
    waiter = threading.Thread(target=lambda: owned.append(Spool.own(old.directory, meta)))
    waiter.start()
    waiter.join(timeout=0.5)
    assert waiter.is_alive()  # blocked: sync holds the spool
    assert syncing.deliver(lambda entry, file: None) == 1  # empties it, removes the directory, releases
    waiter.join(timeout=10)
    run = owned[0]
    run.append({"op": "batch", "index": 1})  # into a directory that exists again, not a deleted one
    assert [entry["index"] for entry, _ in Spool(run.directory).pending()] == [1]
    assert not Spool(run.directory).claim()  # and the run holds it


def test_opening_a_spool_a_live_run_is_writing_never_cuts_its_half_written_line(tmp_path: Path) -> None:
    """The journal repair runs only under the lock: a sync that opens (and counts) a live run's spool
    while the run is between the two halves of a line leaves the line whole."""
    live = _spool(tmp_path)
    live.append({"op": "batch", "index": 0})
    journal = live.directory / "journal.jsonl"
    with open(journal, "a") as handle:
        handle.write('{"op": "batch", ')  # the run is mid-write
    looked = Spool(live.directory)  # innerlens sync / check_no_spool in another process
    assert len(looked) == 1 and not looked.claim()
    assert sync(tmp_path / "spool") == [("run1", 0, 1, True, "")]
    with open(journal, "a") as handle:
        handle.write('"index": 1}\n')  # the run finishes its line
    assert [entry["index"] for entry, _ in Spool(live.directory).pending()] == [0, 1]
    assert not (live.directory / "journal.torn").exists()


def test_only_the_holder_appends(tmp_path: Path) -> None:
    spool = _spool(tmp_path)
    spool.release()
    with pytest.raises(AssertionError, match="holder"):
        Spool(spool.directory).append({"op": "batch"})
