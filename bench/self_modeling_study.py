"""The self-modeling replication study, with its tables copied to bench/results/.

Train (any ``innerlens self-modeling-comparison`` option is accepted):
  python bench/self_modeling_study.py --results-prefix NAME --variants baseline,middle_layer --seeds 0,1,2,3,4 ...
Combine the nested runs of several finished comparisons (for example seeds 0-4 and 5-9 run as two
studies) into one paired analysis, without training:
  python bench/self_modeling_study.py --results-prefix NAME --combine PARENT_ID,PARENT_ID@TRACKING_URI
A part whose store is gone but whose run summaries were committed is named ``results:PREFIX`` (it reads
bench/results/PREFIX_run_summaries.csv), so a study can run in parts on machines that keep nothing:
  python bench/self_modeling_study.py --results-prefix NAME --combine results:NAME_part1,PARENT_ID
``--cells`` keeps only the named cells of the parts (e.g. one share's arms out of studies that also hold another's),
so Holm runs over the contrasts the analysis is about and no others:
  python bench/self_modeling_study.py --results-prefix NAME --combine results:A,results:B --cells "baseline,middle_layer w=0.003"
The runs go to the tracking store in use (``MLFLOW_TRACKING_URI``, else the embedded one). Written:
``bench/results/NAME_{paired_statistics,run_summaries,gamma_sensitivity}.csv`` and
``NAME_command.txt`` (the command, the parent run, the wall time and the verdict table).
"""
from __future__ import annotations

import argparse
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

RESULTS = Path(__file__).parent / "results"


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def train(prefix: str, options: list[str]) -> None:
    command = [str(Path(sys.executable).parent / "innerlens"), "self-modeling-comparison", *options]
    start = time.perf_counter()
    # SIGTERM or Ctrl-C here reaches the study too, which marks its runs KILLED (re-run this command to continue it).
    signal.signal(signal.SIGTERM, _interrupt)
    study = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = study.communicate()
    except KeyboardInterrupt:
        study.terminate()
        study.communicate()
        sys.exit("stopped: the study's unfinished runs ended KILLED; the same command continues it")
    if study.returncode:  # the study's own one-line error, not a traceback of this wrapper
        sys.stderr.write(stderr[-4000:])
        sys.exit(study.returncode)
    output = subprocess.CompletedProcess(command, study.returncode, stdout, stderr)
    minutes = (time.perf_counter() - start) / 60
    parent = next(line.split()[1] for line in output.stdout.splitlines() if line.startswith("run ") and line.endswith("finished"))
    from mlflow.tracking import MlflowClient

    from innerlens import tracking

    tracking.configure_tracking()
    client = MlflowClient()
    failed = int(client.get_run(parent).data.tags.get("innerlens.failed_runs", "0"))
    if failed:  # the tables would silently hold fewer pairs than the command asked for: no results written
        reasons = [line.strip() for line in stderr.replace("\r", "\n").splitlines() if " failed: " in line]
        sys.stderr.write("\n".join(reasons[:10]) + "\n")
        sys.exit(f"{failed} run(s) of study {parent} failed (above); no results written. Fix the cause and run the same command again")
    for name in ("paired_statistics", "run_summaries", "gamma_sensitivity"):
        (RESULTS / f"{prefix}_{name}.csv").write_text(Path(client.download_artifacts(parent, f"tables/{name}.csv")).read_text())
    shown = shlex.join(["python", "bench/self_modeling_study.py", "--results-prefix", prefix, *options])
    (RESULTS / f"{prefix}_command.txt").write_text(f"{shown}\n# parent run {parent}; {minutes:.1f} min wall on this machine\n\n{output.stdout}")
    print(output.stdout)


def combine(prefix: str, parents: list[str], cells: list[str] | None) -> None:
    import mlflow

    from innerlens import tracking
    from innerlens.drivers.self_modeling_comparison import run_summaries, study_statistics, verdict_table

    tracking.configure_tracking()
    frames = []
    for item in parents:  # PARENT, PARENT@TRACKING_URI for a study kept in another store, or results:PREFIX
        if item.startswith("results:"):
            frames.append(pd.read_csv(RESULTS / f"{item.removeprefix('results:')}_run_summaries.csv"))
            continue
        parent, _, uri = item.partition("@")
        if uri:
            mlflow.set_tracking_uri(uri)
        frames.append(run_summaries(parent))
        tracking.configure_tracking()
    summaries = pd.concat(frames, ignore_index=True)
    if cells:
        missing = sorted(set(cells) - set(summaries["group"]))
        if missing:
            sys.stderr.write(f"error: no runs of cell(s) {', '.join(missing)} in {', '.join(parents)}; cells there: "
                             f"{'; '.join(sorted(summaries['group'].unique()))}\n")
            sys.exit(2)
        summaries = summaries[summaries["group"].isin(cells)].reset_index(drop=True)
    duplicated = summaries.duplicated(["group", "seed", "key"])
    assert not duplicated.any(), "a (cell, seed) appears in two of the combined studies"
    statistics = study_statistics(summaries)
    statistics.to_csv(RESULTS / f"{prefix}_paired_statistics.csv", index=False)
    summaries.to_csv(RESULTS / f"{prefix}_run_summaries.csv", index=False)
    table = verdict_table(statistics)
    shown = shlex.join(["python", "bench/self_modeling_study.py", "--results-prefix", prefix, "--combine", ",".join(parents),
                        *(["--cells", ",".join(cells)] if cells else [])])
    (RESULTS / f"{prefix}_command.txt").write_text(f"{shown}\n\n{table}\n")
    print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results-prefix", default="self_modeling_study")
    parser.add_argument("--combine", help="comma-separated parent run ids of finished comparisons, or results:PREFIX "
                        "for committed run summaries")
    parser.add_argument("--cells", help="with --combine: keep only these cells, comma-separated "
                        "(e.g. 'baseline,middle_layer w=0.003')")
    known, options = parser.parse_known_args()
    if known.cells and not known.combine:
        parser.error("--cells selects among combined runs: use it with --combine")
    if known.combine:
        combine(known.results_prefix, known.combine.split(","), known.cells.split(",") if known.cells else None)
    else:
        train(known.results_prefix, options)


if __name__ == "__main__":
    main()
