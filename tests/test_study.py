"""The optimizer study: its tables from results, and the whole study on a real DVC queue with tiny data."""

import json

import pytest

from stages.params import StageError
from stages.study import check_study, markdown_table, pick_learning_rates, table_row
from tests.conftest import dvc, make_dvc_repo, repro_and_commit, run, tiny_params

HISTORY = [{"epoch": 1, "train_acc": 0.5, "val_acc": 0.55, "val_loss": 1.2},
           {"epoch": 2, "train_acc": 0.8, "val_acc": 0.72, "val_loss": 0.9}]


def ok_result(val_acc=0.72, test_acc=0.7):
    return {"status": "ok", "history": HISTORY, "test": {"test_acc": test_acc, "test_loss": 0.95},
            "train": {"val_acc": val_acc, "best_val_acc": 0.72, "train_seconds": 12.3}}


def test_table_row_reports_speed_accuracy_and_gap():
    row = table_row("adam", 0.002, ok_result(), target_val_acc=0.7)
    assert row == {"optimizer": "adam", "lr": 0.002, "status": "ok", "test_acc": 0.7, "test_loss": 0.95,
                   "best_val_acc": 0.72, "best_epoch": 2, "epochs_to_target": 2, "train_val_gap": 0.08,
                   "train_seconds": 12.3}
    assert table_row("adam", 0.002, ok_result(), target_val_acc=0.9)["epochs_to_target"] is None


def test_sweep_picks_the_best_lr_and_survives_divergence():
    params = {"study": {"optimizers": ["sgd", "adam"]}}
    runs = {"a": {"optimizer": "sgd", "optimizers.sgd.lr": 0.1}, "b": {"optimizer": "sgd", "optimizers.sgd.lr": 1.0},
            "c": {"optimizer": "adam", "optimizers.adam.lr": 10.0}}
    results = {"a": ok_result(val_acc=0.6), "b": ok_result(val_acc=0.7), "c": {"status": "diverged"}}
    chosen = pick_learning_rates(params, runs, results)
    assert chosen["sgd"] == {"lr": 1.0, "sweep": {"0.1": 0.6, "1.0": 0.7}}
    assert chosen["adam"] == {"lr": None, "sweep": {"10.0": "diverged"}}


def test_markdown_table_ranks_by_test_accuracy():
    rows = [table_row("sgd", 0.1, ok_result(test_acc=0.6), 0.7), table_row("adam", 0.002, ok_result(), 0.7),
            {"optimizer": "rmsprop", "lr": 1.0, "status": "diverged"}]
    lines = markdown_table(rows, 0.7).splitlines()
    assert lines[0].startswith("| optimizer | lr | test acc")
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["adam", "sgd", "rmsprop"]
    assert "| 0.7000 | 0.9500 | 0.7200 (2) | 2 | +0.0800 | 12 |" in lines[2]
    assert "diverged" in lines[4]


def test_study_runs_on_a_real_dvc_queue(tmp_path):
    params = tiny_params()
    params["train"].update(epochs=1, batch_size=8)
    params["optimizers"]["sgd"]["lr"] = 1000.0  # survives the 1-epoch sweep, diverges in the 2-epoch final run
    params["study"] = {"optimizers": ["sgd", "adam"], "epochs": 2, "sweep_epochs": 1, "sweep_factors": [1],
                       "target_val_acc": 0.5}
    repo = make_dvc_repo(tmp_path / "repo", params)
    repro_and_commit(repo)

    output = run(["python", "-m", "stages.study"], repo)
    assert "wrote reports/optimizers.json" in output

    study = json.loads((repo / "reports/optimizers.json").read_text())
    rows = {row["optimizer"]: row for row in study["rows"]}
    assert rows["sgd"] == {"optimizer": "sgd", "lr": 1000.0, "status": "diverged"}
    assert rows["adam"]["status"] == "ok" and rows["adam"]["lr"] == 0.002
    assert 0 <= rows["adam"]["test_acc"] <= 1 and rows["adam"]["best_epoch"] in (1, 2)
    assert set(study["lr_sweep"]["adam"]["sweep"]) == {"0.002"}
    table = (repo / "reports/optimizers.md").read_text().splitlines()
    assert table[0].startswith("| optimizer | lr | test acc | test loss | best val acc (epoch) | epochs to 50% val")
    assert table[2].startswith(f"| adam | 0.002 | {rows['adam']['test_acc']:.4f} | ")
    assert table[3].startswith("| sgd | 1000.0 | diverged |")
    assert (repo / "plots/optimizers/curves.png").stat().st_size > 5000

    shown = dvc("exp", "show", "--no-pager", "--csv", cwd=repo)
    assert "study-adam" in shown and "sweep-adam-0p002" in shown


def test_bad_study_params_are_named(params):
    params["study"] = {"optimizers": ["sgd", "adamax"], "epochs": 2, "sweep_epochs": 1, "sweep_factors": [1],
                       "target_val_acc": 0.5}
    with pytest.raises(StageError, match=r"'study.optimizers' is \['sgd', 'adamax'\]; allowed: a list of sgd"):
        check_study(params)
    params["study"].update(optimizers=["sgd"], epochs=0)
    with pytest.raises(StageError, match=r"'study.epochs' is 0; allowed: an integer in \[1, 10000\]"):
        check_study(params)
