"""The links a command prints open the right page of the MLflow UI, checked in headless Chromium
(Debian's chromium, installed by .ci/run) with a fresh profile, as a new user's browser would be."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.support import clean_env, tiny_args

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=30000", "--window-size=1400,900"]


def _innerlens(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    command = [str(Path(sys.executable).parent / "innerlens"), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def _links(stdout: str) -> dict[str, str]:
    return dict(re.findall(r"^([\w ./]+): (http\S+)$", stdout, re.MULTILINE))


def _page_text(url: str, profile: Path) -> str:
    """The page's visible text after its scripts ran, in a browser that has never seen MLflow."""
    dom = subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                         capture_output=True, text=True, timeout=180).stdout
    text = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text))


def test_a_run_on_a_server_prints_links_that_open_its_page_in_the_model_training_view(mlflow_server: str, tmp_path: Path) -> None:
    env = clean_env(MLFLOW_TRACKING_URI=mlflow_server, MLFLOW_EXPERIMENT_NAME="ui-links")
    result = _innerlens("self-modeling", *tiny_args(max_epochs="1", llc_every="0"), env=env)
    run_id = re.search(r"^run (\w+) finished$", result.stdout, re.MULTILINE).group(1)
    links = _links(result.stdout)
    assert links["run page"].startswith(f"{mlflow_server}/#/experiments/") and f"/runs/{run_id}?" in links["run page"]
    assert "mlflow ui" not in result.stdout  # a server is in use: nothing to start
    page = _page_text(links["run page"], tmp_path / "profile-run")
    assert "middle_layer-s0" in page and "Model registry" in page  # the run, in the Machine learning view's sidebar
    assert "Judges" not in page and "Evaluation runs" not in page  # not the GenAI view a fresh browser defaults to
    table = _page_text(links["all runs"], tmp_path / "profile-table")
    assert "middle_layer-s0" in table and "Judges" not in table
    shot = tmp_path / "runs-table.png"  # what the person following the README sees
    subprocess.run(["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile-shot'}", f"--screenshot={shot}",
                    links["all runs"]], capture_output=True, timeout=180)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_the_documented_experiment_url_without_the_view_parameter_opens_genai_in_a_fresh_browser(mlflow_server: str, tmp_path: Path) -> None:
    """The control: what the README warns about is real, so the parameter is what makes the difference."""
    env = clean_env(MLFLOW_TRACKING_URI=mlflow_server, MLFLOW_EXPERIMENT_NAME="ui-links-control")
    result = _innerlens("self-modeling", *tiny_args(max_epochs="1", llc_every="0"), env=env)
    table = _links(result.stdout)["all runs"]
    page = _page_text(table.split("?")[0].removesuffix("/runs"), tmp_path / "profile")
    assert "Judges" in page


def test_a_local_store_prints_the_ui_command_and_the_pages_it_will_serve(tmp_path: Path) -> None:
    env = clean_env(INNERLENS_HOME=str(tmp_path), MLFLOW_EXPERIMENT_NAME="ui-links-local")
    result = _innerlens("self-modeling-comparison", *tiny_args(max_epochs="1", llc_every="0"), "--variants", "baseline,middle_layer",
                        "--seeds", "0,1", "--workers", "0", "--no-gamma-sensitivity", env=env)
    assert re.search(r"^open the MLflow UI with:  mlflow ui --backend-store-uri sqlite:///\S+mlflow\.db$", result.stdout, re.MULTILINE)
    links = _links(result.stdout)
    run_id = re.search(r"^run (\w+) finished$", result.stdout, re.MULTILINE).group(1)
    assert links["run page"].startswith("http://127.0.0.1:5000/#/experiments/") and run_id in links["run page"]
    assert links["summary.md"].endswith(f"/runs/{run_id}/artifacts/summary.md?workflowType=machine_learning")
    assert "tables/paired_statistics.csv" in links and "figures" in links
