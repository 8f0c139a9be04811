"""How long `innerlens --help`, a command's --help and an option error take, as a user runs them.

Each is run as a fresh process 7 times; the median wall time is reported. The configs the CLI
renders import no torch, mlflow or pandas (tests/test_config_cli.py checks ``sys.modules``), so
this is Python's start plus click. Run: ``python bench/cli_start.py``; results go to
``bench/results/cli_start.json``.
"""
from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {"innerlens --help": ["--help"], "innerlens self-modeling --help": ["self-modeling", "--help"],
            "innerlens grokking --p 100 (an option error)": ["grokking", "--p", "100"]}


def main() -> None:
    executable = shutil.which("innerlens") or str(Path(sys.executable).parent / "innerlens")
    results = {}
    for name, argv in COMMANDS.items():
        times = []
        for _ in range(7):
            start = time.perf_counter()
            subprocess.run([executable, *argv], capture_output=True, check=False)
            times.append(time.perf_counter() - start)
        results[name] = {"median_s": statistics.median(times), "all_s": times}
        print(f"{name:50s} {statistics.median(times):.3f} s (median of 7)")
    (Path(__file__).parent / "results" / "cli_start.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
