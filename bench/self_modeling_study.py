"""The self-modeling replication study, with its tables copied to bench/results/.

Run (the README's numbers):
  python bench/self_modeling_study.py --variants baseline,middle_layer --self-model-weights 0.01,0.1,1 --seeds 0,1,2,3,4,5,6,7,8,9
Any ``innerlens self-modeling-comparison`` option is accepted. The runs go to the tracking
store in use (``MLFLOW_TRACKING_URI``, else the embedded one); the paired statistics, per-run
summaries and γ table are written to ``bench/results/self_modeling_study_*.csv`` with the
command in ``bench/results/self_modeling_study_command.txt``.
"""
from __future__ import annotations

import shlex
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    command = [str(Path(sys.executable).parent / "innerlens"), "self-modeling-comparison", *sys.argv[1:]]
    start = time.perf_counter()
    output = subprocess.run(command, check=True, capture_output=True, text=True)
    minutes = (time.perf_counter() - start) / 60
    parent = next(line.split()[1] for line in output.stdout.splitlines() if line.startswith("run ") and line.endswith("finished"))
    from mlflow.tracking import MlflowClient

    from innerlens import tracking

    tracking.configure_tracking()
    client = MlflowClient()
    for name in ("paired_statistics", "run_summaries", "gamma_sensitivity"):
        path = client.download_artifacts(parent, f"tables/{name}.csv")
        (RESULTS / f"self_modeling_study_{name}.csv").write_text(Path(path).read_text())
    (RESULTS / "self_modeling_study_command.txt").write_text(
        f"{shlex.join(['innerlens', *command[1:]])}\n# parent run {parent}; {minutes:.1f} min wall on this machine\n\n{output.stdout}")
    print(output.stdout)


if __name__ == "__main__":
    main()
