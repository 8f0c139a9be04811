"""LLC calibration: which SGLD settings recover λ = d/2 of a regular model at the self-modeling
family's training-set size, and what each costs.

Known answer: linear regression y = w·x with Gaussian noise, d = 10 parameters, sampled at the
least-squares minimum (λ = d/2 = 5). Run: ``python bench/llc_calibration.py``; results go to
``bench/results/llc_calibration.json``.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, replace
from pathlib import Path

from innerlens.analysis.known_llc import gaussian_nll_regression
from innerlens.analysis.llc import LLCSettings, estimate_llc
from innerlens.families.self_modeling import SelfModelingConfig

N_TRAIN = SelfModelingConfig().train_size


def main() -> None:
    defaults = SelfModelingConfig().llc_settings
    candidates = {
        "old defaults (eps 1e-4, gamma 100, nbeta batch/ln batch, 2x100)": LLCSettings(
            epsilon=1e-4, gamma=100.0, nbeta=256 / math.log(256), num_chains=2, num_draws=100, num_burnin=20, batch_size=256),
        "old defaults, n/ln n": replace(defaults, epsilon=1e-4, gamma=100.0, num_chains=2, num_draws=100, num_burnin=20),
        "eps 1e-4, gamma 10": replace(defaults, epsilon=1e-4, gamma=10.0),
        "eps 3e-4, gamma 20": replace(defaults, epsilon=3e-4, gamma=20.0),
        "family defaults": defaults,
    }
    rows = []
    for name, settings in candidates.items():
        model, x, y, loss, answer = gaussian_nll_regression(N_TRAIN)
        start = time.perf_counter()
        estimates = [estimate_llc(model, x, y, loss, settings, seed=seed).mean for seed in range(3)]
        seconds = (time.perf_counter() - start) / 3
        row = {"name": name, "settings": asdict(settings), "n": N_TRAIN, "answer": answer,
               "estimates": estimates, "relative_error": [e / answer - 1 for e in estimates], "seconds": seconds}
        rows.append(row)
        print(f"{name:70s} λ̂ = {', '.join(f'{e:.2f}' for e in estimates)} (answer {answer}), {seconds:.1f} s")
    out = Path(__file__).parent / "results" / "llc_calibration.json"
    out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
