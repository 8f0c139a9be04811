"""A smoke-sized self-modeling study (3 epochs, 400 samples, the default variants and seeds: 25 runs)
timed end to end, beside one such run forced to pay the end-of-run LLC (the calibrated estimator,
what every run paid before the LLC was sized to the run).

The LLC is skipped for runs this small (too few examples for nβ = n/ln n and a 256 minibatch to mean
anything), so the study costs what its training costs. Both timings come from this one invocation,
into a fresh embedded store; the ratio is per run.

  python bench/smoke_study.py     ->  bench/results/smoke_study.json
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
SMOKE = ["--max-epochs", "3", "--samples", "400"]


def timed(home: Path, *options: str) -> tuple[float, str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}, "INNERLENS_HOME": str(home)}
    start = time.perf_counter()
    result = subprocess.run([str(Path(sys.executable).parent / "innerlens"), "self-modeling-comparison", *SMOKE, *options],
                            env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, result.stderr


def main() -> None:
    with tempfile.TemporaryDirectory() as home:
        smoke, said = timed(Path(home))
        forced, _ = timed(Path(home), "--measure-llc", "true", "--seeds", "0", "--variants", "baseline",
                          "--llc-estimators", "calibrated", "--no-gamma-sensitivity")
    out = {"command": "python bench/smoke_study.py", "machine": f"{os.cpu_count()} cores",
           "smoke_study_s": round(smoke, 1), "smoke_runs": 25, "llc_skip_notice": next((l for l in said.splitlines() if "LLC skipped" in l), ""),
           "forced_llc_s": round(forced, 1), "forced_llc_runs": 1,
           "per_run_ratio_forced_over_smoke": round(forced / (smoke / 25), 2)}
    (RESULTS / "smoke_study.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
