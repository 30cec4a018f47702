"""End to end: a throwaway Git + DVC copy of the repository with tiny data, driven by the real dvc CLI."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, make_image_folder, tiny_params, write_params

COPIED = ["stages", "dvc.yaml", ".gitignore", "data/raw/.gitignore"]


def run(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def dvc(*args: str, cwd: Path) -> str:
    return run([sys.executable, "-m", "dvc", *args], cwd)


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A committed copy of the repository whose data is a tiny image folder tracked by DVC."""
    repo = tmp_path_factory.mktemp("repo")
    for name in COPIED:
        source, target = REPO / name, repo / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target)
    params = tiny_params()
    params["train"].update(epochs=2, batch_size=8)
    write_params(repo, params)
    make_image_folder(repo / "data/raw/cifar10", {"train": 10, "test": 4})
    run(["git", "init", "-q", "-b", "main"], repo)
    dvc("init", "-q", cwd=repo)
    dvc("add", "-q", "data/raw/cifar10", cwd=repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "tiny copy"], repo)
    return repo


@pytest.fixture(scope="module")
def reproduced(repo) -> Path:
    dvc("repro", cwd=repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "baseline results"], repo)
    return repo


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
