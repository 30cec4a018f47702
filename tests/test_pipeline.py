"""End to end: a throwaway Git + DVC copy of the repository with tiny data, driven by the real dvc
CLI.

The checks are the user's view: what `dvc exp show`, `dvc metrics diff`, `dvc plots show` and the
review report show after two experiments.
"""

import contextlib
import csv
import io
import json
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from dvc.api import read as read_at_revision

from classifier.fit import VERDICT_WORDS
from experiments.queue import wait_for
from tests.conftest import (
    dvc,
    make_dvc_repo,
    repro_and_commit,
    run,
    start_paused_train,
    tiny_params,
)

# one worker of pytest-xdist runs them all: they share the module's experiments
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("pipeline")]

METRIC_FILES = [
    "metrics/evaluate.json",
    "metrics/train/metrics.json",
    "metrics/timing.json",
    "metrics/fit.json",
]
HEADLINE = {
    "metrics/evaluate.json": {"test_acc", "test_loss", "macro_f1"},
    "metrics/fit.json": {"verdict"},
    "metrics/train/metrics.json": {"best_val_acc", "train_pflop"},
}
# Chart id -> title: dvc.yaml's top-level charts are named by their title, a stage's own plots by
# their file.
CHARTS = {
    "Loss per epoch": "Loss per epoch",
    "Accuracy per epoch": "Accuracy per epoch",
    "Test confusion matrix (counts)": "Test confusion matrix (counts)",
    "plots/evaluate/confusion.csv": "Test confusion matrix (share of each true class)",
    "plots/evaluate/classes.csv": "Test F1 per class",
    "plots/train/history.csv": "Learning rate per epoch",
}
FIGURES = [
    "plots/data/samples.png",
    "plots/train/curves.png",
    "plots/evaluate/confusion.png",
    "plots/evaluate/misclassified.png",
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    params = tiny_params()
    params["train"].update(epochs=2, batch_size=8)
    return repro_and_commit(make_dvc_repo(tmp_path_factory.mktemp("repo"), params))


@pytest.fixture(scope="module")
def experiments(repo) -> dict:
    """Two experiments: one from the queue, one in the workspace; the output of each run."""
    dvc("exp", "run", "--queue", "-n", "three-epochs", "-S", "train.epochs=3", cwd=repo)
    workspace_run = dvc("exp", "run", "-n", "rmsprop", "-S", "optimizer=rmsprop", cwd=repo)
    queued_run = dvc("exp", "run", "--run-all", cwd=repo)
    return {"rmsprop": workspace_run, "three-epochs": queued_run}


def test_repro_is_up_to_date_and_keeps_outputs_in_git_or_cache(repo):
    assert "up to date" in dvc("status", cwd=repo)
    tracked = run(["git", "ls-files"], repo).split()
    assert set(METRIC_FILES) | set(FIGURES) | {path for path in CHARTS if "/" in path} <= set(
        tracked
    )
    assert not any(
        path.startswith(("data/prepared", "models/")) and not path.endswith(".gitignore")
        for path in tracked
    )


def test_experiments_skip_prepare_in_the_workspace_and_in_the_queue(experiments):
    for output in experiments.values():
        assert "Stage 'prepare' didn't change, skipping" in output
        assert "Running stage 'train'" in output


def test_exp_show_has_the_headline_metrics_and_nothing_per_class(repo, experiments):
    (baseline,) = json.loads(dvc("exp", "show", "--json", cwd=repo))[1:]  # [workspace, main]
    runs = {exp["name"]: exp["revs"][0]["data"] for exp in baseline["experiments"]}
    assert set(runs) == set(experiments)
    for data in runs.values():
        metrics = data["metrics"]
        assert list(metrics) == METRIC_FILES
        for path, keys in HEADLINE.items():
            assert keys <= set(metrics[path]["data"])
        columns = sum(len(metrics[path]["data"]) for path in metrics)
        assert columns <= 14, f"{columns} metric columns"
        assert not any(name in json.dumps(metrics) for name in ("circle", "cross", "square"))
    assert runs["three-epochs"]["metrics"]["metrics/train/metrics.json"]["data"]["step"] == 3


def test_metrics_diff_has_only_numbers_and_short_labels(repo, experiments):
    diff = json.loads(
        dvc("metrics", "diff", "rmsprop", "three-epochs", "--all", "--json", cwd=repo)
    )
    assert set(diff) == set(METRIC_FILES)
    values = [
        side for rows in diff.values() for row in rows.values() for side in (row["old"], row["new"])
    ]
    assert all(isinstance(value, (int, float)) or len(value) <= 12 for value in values)


def test_plots_show_draws_exactly_the_intended_charts_with_titles(repo, experiments):
    shown = json.loads(
        dvc("plots", "diff", "rmsprop", "three-epochs", "--json", "-o", "dvc_plots", cwd=repo)
    )
    # each file drawn once, none with DVC's default template
    assert list(shown["data"]) == list(CHARTS) + FIGURES
    for chart_id, title in CHARTS.items():
        (chart,) = shown["data"][chart_id]
        spec = json.dumps(chart["content"])
        assert chart["type"] == "vega" and chart["content"]["title"]["text"] == title
        assert chart["revisions"] == ["rmsprop", "three-epochs"]
        assert re.search(r'"title": "(epoch|true class|F1 on the test set)"', spec), (
            f"{title}: no x axis label"
        )
    for figure in FIGURES:
        assert [image["revisions"] for image in shown["data"][figure]] == [
            ["rmsprop"],
            ["three-epochs"],
        ]


def test_report_has_both_diffs_the_verdicts_and_figures_that_exist(repo, experiments):
    run(["python", "-m", "experiments.review", "rmsprop", "three-epochs", "--out", "review"], repo)
    report = (repo / "review/report.md").read_text()
    assert re.search(
        rf"\| params.yaml +\| optimizer +\| rmsprop +\| {tiny_params()['optimizer']} ", report
    )
    assert re.search(r"\| metrics/evaluate.json +\| test_acc ", report)
    assert re.search(r"\| metrics/fit.json +\| verdict ", report)
    assert (
        len(
            re.findall(
                rf"^- `(rmsprop|three-epochs)`: \*\*({'|'.join(VERDICT_WORDS.values())})\*\*",
                report,
                re.M,
            )
        )
        == 2
    )
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)
    assert len(images) == 4 and all(
        (repo / "review" / image).stat().st_size > 1000 for image in images
    )
    assert (repo / "review/charts/index.html").exists()


def test_the_model_is_a_dvc_artifact(repo):
    from dvc.repo import Repo

    with Repo(str(repo)) as dvc_repo:
        artifacts = dvc_repo.artifacts.read()
    model = artifacts["dvc.yaml"]["cifar10-cnn"]
    assert (model.path, model.type) == ("models/model.pt", "model") and model.desc and model.labels
    assert (repo / model.path).exists()


def test_predict_uses_an_experiments_model_without_checking_it_out(repo, experiments, tmp_path):
    """--rev reads the model of experiment three-epochs through dvc.api; it predicts what that run
    evaluated."""
    with tarfile.open(repo / "data/raw/cifar10.tar") as archive:
        archive.extractall(
            tmp_path, members=[m for m in archive if "/test/" in m.name], filter="data"
        )
    before = run(["git", "status", "--porcelain"], repo)
    run(
        [
            "python",
            "-m",
            "commands.predict",
            str(tmp_path / "cifar10/test"),
            "--rev",
            "three-epochs",
            "--out",
            str(tmp_path / "predicted.csv"),
        ],
        repo,
    )
    predicted = [row["class"] for row in csv.DictReader(open(tmp_path / "predicted.csv"))]
    confusion = read_at_revision("plots/evaluate/confusion.csv", repo=str(repo), rev="three-epochs")
    evaluated = [row["predicted"] for row in csv.DictReader(io.StringIO(confusion))]
    assert predicted == evaluated and len(predicted) == 12
    assert run(["git", "status", "--porcelain"], repo) == before  # the workspace is untouched
    failed = subprocess.run(
        [sys.executable, "-m", "commands.predict", str(tmp_path), "--rev", "no-such-exp"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert (
        failed.returncode == 2
        and "error: cannot read models/model.pt of revision no-such-exp" in failed.stderr
    )


def test_two_queued_experiments_run_at_once_without_clashing(repo, experiments):
    for seed in (1, 2):
        dvc("exp", "run", "--queue", "-n", f"seed-{seed}", "-S", f"seed={seed}", cwd=repo)
    dvc("queue", "start", "--jobs", "2", cwd=repo)
    with contextlib.chdir(repo):  # as the drivers wait: `dvc queue status` costs seconds a call
        wait_for(["seed-1", "seed-2"])
    assert " Failed " not in dvc("queue", "status", cwd=repo)
    (baseline,) = json.loads(dvc("exp", "show", "--json", cwd=repo))[1:]
    runs = {exp["name"]: exp["revs"][0]["data"] for exp in baseline["experiments"]}
    seeds = [runs[f"seed-{seed}"]["params"]["params.yaml"]["data"]["seed"] for seed in (1, 2)]
    accuracies = [
        runs[f"seed-{seed}"]["metrics"]["metrics/evaluate.json"]["data"]["test_acc"]
        for seed in (1, 2)
    ]
    assert seeds == [1, 2] and all(0 <= accuracy <= 1 for accuracy in accuracies)


def test_the_run_cache_restores_an_experiment_that_already_ran(repo, experiments):
    """The same params as the workspace experiment `rmsprop`, queued from the baseline: every stage
    is restored from the run cache (not merely found unchanged in dvc.lock), none trains."""
    run(["git", "checkout", "--", "."], repo)
    dvc("checkout", "--force", cwd=repo)
    dvc("exp", "run", "--queue", "-n", "rmsprop-again", "-S", "optimizer=rmsprop", cwd=repo)
    started = time.monotonic()
    dvc("exp", "run", "--run-all", cwd=repo)
    seconds = time.monotonic() - started
    log = dvc("queue", "logs", "rmsprop-again", cwd=repo)
    assert "Running stage" not in log
    for stage in ("train", "evaluate", "plot"):
        assert f"Stage '{stage}' is cached - skipping run, checking out outputs" in log
    shown = json.loads(dvc("exp", "show", "--json", cwd=repo))[1]["experiments"]
    metrics = {exp["name"]: exp["revs"][0]["data"]["metrics"] for exp in shown}
    # timing too: restored, not measured again
    assert metrics["rmsprop-again"] == metrics["rmsprop"]
    print(f"\nrestored from the run cache in {seconds:.1f} s")


def test_resume_in_a_queued_experiment_needs_the_checkpoint_copied_in(repo, experiments):
    """A queued run starts from what Git tracks: without `-C checkpoints` resume refuses with one
    line, with it the run continues from the checkpoint to the results of an uninterrupted run. (DVC
    copies a file only into a folder that exists there, so the folder is what to copy.)"""
    run(["git", "checkout", "--", "."], repo)
    dvc("checkout", "--force", cwd=repo)
    paused = start_paused_train(repo, epoch=2)  # the committed params, killed after epoch 1
    paused.kill()
    paused.wait()
    # the killed run's partial history; its checkpoint is not tracked
    run(["git", "checkout", "--", "."], repo)
    dvc("exp", "run", "--queue", "-n", "resume-missing", "-S", "train.resume=true", cwd=repo)
    dvc(
        "exp",
        "run",
        "--queue",
        "-n",
        "resume-copied",
        "-S",
        "train.resume=true",
        "-C",
        "checkpoints",
        cwd=repo,
    )
    dvc("exp", "run", "--run-all", cwd=repo)

    missing = dvc("queue", "logs", "resume-missing", cwd=repo)
    assert (
        "error: train.resume is true, but this queued experiment's workspace has no "
        "checkpoints/train.pt" in missing
    )
    assert "train.resume: continuing after epoch 1" in dvc(
        "queue", "logs", "resume-copied", cwd=repo
    )
    for path in ("plots/train/history.csv", "metrics/train/metrics.json", "metrics/evaluate.json"):
        assert (
            read_at_revision(path, repo=str(repo), rev="resume-copied") == (repo / path).read_text()
        )
