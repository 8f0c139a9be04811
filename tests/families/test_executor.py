"""The local executor: a worker process that dies does not stop the study; its run ends FAILED."""
from __future__ import annotations

import functools
import os

from mlflow.tracking import MlflowClient
from support import TINY_MODEL

from innerlens import session, tracking
from innerlens.configs.self_modeling import SelfModelingConfig
from innerlens.drivers.executor import end_lost_runs, study_run
from innerlens.drivers.local_executor import WORKER_DIED, LocalExecutor

TINY = dict(**TINY_MODEL, max_epochs=2, measure_llc=False)


def _die_inside_the_run(config: SelfModelingConfig, *, parent: tracking.RunContext, callbacks: tuple = (),
                        progress: bool = False) -> str:
    """A worker killed mid-run (out of memory, a native crash): the run exists, its process vanishes."""
    with tracking.start_run(config, variant=config.variant, run_name="doomed", parent=parent) as tracker:
        tracker.flush()
        os._exit(9)


def _train_or_die(job: tuple[SelfModelingConfig, str, str]) -> str:
    single, parent_id, task = job
    return study_run(_die_inside_the_run if task == "doomed" else functools.partial(session.run, "self_modeling"), single, parent_id, task, {}).run_id


def _cell_that_dies(job: tuple[list[SelfModelingConfig], str]) -> str:
    """A stacked cell's worker killed mid-run: a run per seed, one executor task (the cell)."""
    import threading

    singles, parent_id = job
    started = threading.Barrier(len(singles) + 1)

    def seed_run(config: SelfModelingConfig, *, parent: tracking.RunContext, callbacks: tuple = (), progress: bool = False) -> str:
        with tracking.start_run(config, variant=config.variant, run_name=f"seed {config.seed}", parent=parent) as tracker:
            tracker.flush()
            started.wait()
            threading.Event().wait()  # training, until the process dies
        return tracker.run_id

    for single in singles:
        threading.Thread(target=study_run, args=(seed_run, single, parent_id, f"seed {single.seed}", {}),
                         kwargs={"unit": "cell"}, daemon=True).start()
    started.wait()
    os._exit(9)


def test_a_stacked_cell_that_keeps_dying_leaves_none_of_its_seeds_running(local_store: str) -> None:
    parent_config = SelfModelingConfig(variant="baseline", **TINY)
    with tracking.start_run(parent_config, variant="study", run_name="study") as parent:
        parent_id = parent.run_id
        parent.flush()
        singles = [SelfModelingConfig(variant="baseline", seed=seed, **TINY) for seed in (0, 1)]
        results = LocalExecutor(workers=1, threads=1, progress=False, max_retries=1).run(_cell_that_dies, [("cell", (singles, parent_id))])
        assert results[0].error.startswith(WORKER_DIED)
        end_lost_runs(parent_id, results)
    seeds = tracking.children(parent_id)
    assert sorted(r.data.tags[tracking.TAG_TASK] for r in seeds) == ["seed 0", "seed 1"]  # the retry continued them
    assert {r.info.status for r in seeds} == {"FAILED"}


def test_a_worker_that_dies_marks_its_run_failed_and_the_study_goes_on(local_store: str) -> None:
    parent_config = SelfModelingConfig(variant="baseline", **TINY)
    with tracking.start_run(parent_config, variant="study", run_name="study") as parent:
        parent_id = parent.run_id
        parent.flush()
        tasks = [(f"seed {seed}", (SelfModelingConfig(variant="baseline", seed=seed, **TINY), parent_id, f"seed {seed}"))
                 for seed in (0, 1)]
        tasks.insert(1, ("doomed", (SelfModelingConfig(variant="baseline", seed=2, **TINY), parent_id, "doomed")))
        results = LocalExecutor(workers=2, threads=1, progress=False, max_retries=1).run(_train_or_die, tasks)
        end_lost_runs(parent_id, results)
    assert [bool(r.error) for r in results] == [False, True, False]
    assert results[1].error.startswith(WORKER_DIED) and "2 times" in results[1].error
    client = MlflowClient()
    children = {child.data.tags[tracking.TAG_TASK]: child for child in client.search_runs(
        [client.get_run(parent_id).info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")}
    assert sorted(children) == ["doomed", "seed 0", "seed 1"]  # the retry continued the doomed run, not a second one
    assert children["doomed"].info.status == "FAILED"
    assert children["seed 0"].info.status == children["seed 1"].info.status == "FINISHED"
    assert {r.value for r in results if not r.error} == {children["seed 0"].info.run_id, children["seed 1"].info.run_id}
