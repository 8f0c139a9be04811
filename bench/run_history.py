"""A study's runs, epoch by epoch, as a CSV: the record of a pilot or a stopped study, whose runs a
study's run summaries (finished runs only, their end values) leave out.

  python bench/run_history.py --study settled_transformer_share003_paper_wiring \
      --keys aux/weight,aux/grad_share_before,train/acc,val/acc,train/loss

Every nested run of the named study, whatever its status, from the store MLFLOW_TRACKING_URI (or the
embedded one) holds (innerlens.drivers.study_history). Writes bench/results/<study>_history.csv:
one row per run and epoch, a column per key, with the run's name and status.
"""
from __future__ import annotations

import argparse
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    from innerlens.drivers.study_history import study_history
    from innerlens.errors import ConfigError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", required=True, help="the study's name (its --study-name)")
    parser.add_argument("--keys", required=True, help="comma-separated metric keys, e.g. train/acc,val/acc")
    args = parser.parse_args()
    try:
        table = study_history(args.study, args.keys.split(","))
    except ConfigError as error:
        parser.error(str(error))
    path = RESULTS / f"{args.study}_history.csv"
    table.to_csv(path, index=False)
    print(f"{table['run'].nunique()} runs, {len(table)} epochs -> {path}")


if __name__ == "__main__":
    main()
