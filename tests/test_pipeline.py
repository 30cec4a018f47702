"""End to end: a throwaway Git + DVC copy of the repository with tiny data, driven by the real dvc CLI."""

import json
from pathlib import Path

import pytest

from tests.conftest import dvc, make_dvc_repo, repro_and_commit, tiny_params


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    params = tiny_params()
    params["train"].update(epochs=2, batch_size=8)
    return make_dvc_repo(tmp_path_factory.mktemp("repo"), params)


@pytest.fixture(scope="module")
def reproduced(repo) -> Path:
    return repro_and_commit(repo)


def test_repro_writes_metrics_and_plots_that_parse(reproduced):
    for name in ("data", "train", "evaluate", "classes", "fit"):
        assert json.loads((reproduced / f"metrics/{name}.json").read_text())
    for name in ("train/history.csv", "evaluate/confusion.csv", "data/samples.png", "train/curves.png",
                 "evaluate/confusion.png", "evaluate/misclassified.png"):
        assert (reproduced / "plots" / name).stat().st_size > 0
    assert "up to date" in dvc("status", cwd=reproduced)
    shown = json.loads(dvc("metrics", "show", "--json", cwd=reproduced))
    (workspace,) = shown.values()  # keyed by revision; one, the workspace
    assert "accuracy" in workspace["data"]["metrics/evaluate.json"]["data"]


def test_optimizer_experiment_reuses_prepare_and_moves_the_metrics(reproduced):
    output = dvc("exp", "run", "-S", "optimizer=rmsprop", cwd=reproduced)
    assert "Stage 'prepare' didn't change, skipping" in output
    for stage in ("train", "evaluate", "plot"):
        assert f"Running stage '{stage}'" in output

    diff = json.loads(dvc("metrics", "diff", "--json", cwd=reproduced))
    assert diff["metrics/train.json"]["val_loss"]["diff"] != 0
    assert "metrics/data.json" not in diff or all(row.get("diff", 0) == 0
                                                  for row in diff["metrics/data.json"].values())

    params_diff = json.loads(dvc("params", "diff", "--json", cwd=reproduced))
    assert params_diff["params.yaml"]["optimizer"] == {"old": tiny_params()["optimizer"], "new": "rmsprop"}

    experiments = dvc("exp", "show", "--no-pager", "--csv", cwd=reproduced)
    assert "rmsprop" in experiments

    dvc("plots", "diff", "HEAD", "-o", "plots_diff", cwd=reproduced)
    assert (reproduced / "plots_diff/index.html").exists()
