"""The optimizer study: its sweep, statistics, tables and figure, and the whole study on a real DVC queue."""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import yaml

from classifier.cli import UserError
from classifier.params import parse_params
import experiments.study
from experiments.study import (check_study, compare, comparison_table, final_runs, new_choices, value_name, next_value,
                               paired_comparison, plot_optimizer_curves, results_table, rounded, summary_row,
                               sweep_optimizers, sweep_table)
from experiments.dvc_queue import my_share, parse_shard, run_alive
from tests.conftest import (REPO, diverging, dvc, make_dvc_repo, queue_logs, repro_and_commit, run, tiny_params,
                            write_params)


def finished(test_acc, test_loss=0.9, epochs_to_target=2, gap=-0.01, seconds=10.0):
    return {"status": "ok", "test_acc": test_acc, "test_loss": test_loss, "epochs_to_target": epochs_to_target,
            "train_val_gap": gap, "train_seconds": seconds}


def test_the_sweep_widens_until_the_best_value_is_inside():
    assert next_value({0.1: 0.5, 0.3: 0.6, 1.0: 0.55}, widen=3) is None
    assert next_value({0.1: 0.5, 0.3: 0.6, 1.0: 0.65}, widen=3) == 3.0
    assert next_value({0.1: 0.7, 0.3: 0.6, 1.0: 0.55}, widen=3) == 0.0333
    assert next_value({0.1: 0.5, 0.3: 0.6, 1.0: "diverged"}, widen=3) is None  # a diverged run scores lowest
    assert next_value({0.1: "diverged", 0.3: "diverged"}, widen=3) == 0.0333  # every run diverged: go lower


def sweep_params() -> dict:
    """sgd with weight decay, adam with weight decay 0, rmsprop without any, nadam diverging at every lr."""
    return {"optimizers": {"sgd": {"lr": 0.1, "weight_decay": 0.001}, "adam": {"lr": 0.002, "weight_decay": 0.0},
                           "rmsprop": {"lr": 0.001}, "nadam": {"lr": 0.002, "weight_decay": 0.01}},
            "study": {"optimizers": ["sgd", "adam", "rmsprop", "nadam"], "seeds": [0, 1],
                      "changes": {"train.epochs": 3},
                      "sweep": {"factors": [0.3, 1, 3], "widen": 3, "max_widenings": 2,
                                "changes": {"train.epochs": 1}}}}


def fake_queue(monkeypatch, params: dict) -> list[dict]:
    """run_queue without DVC: every batch of runs queued, in order; sgd is best at lr 0.3 and weight decay 0.003,
    adam and rmsprop at their own lr times 3, nadam diverges."""
    queued = []

    def accuracy(changes: dict) -> float | str:
        optimizer = changes["optimizer"]
        settings = {**params["optimizers"][optimizer], **{key.split(".")[-1]: value for key, value in changes.items()
                                                         if key.startswith(f"optimizers.{optimizer}.")}}
        if optimizer == "nadam":
            return "diverged"
        best_lr = 0.3 if optimizer == "sgd" else 3 * params["optimizers"][optimizer]["lr"]
        decay_penalty = 0.01 * abs(math.log(settings["weight_decay"] / 0.003)) if optimizer == "sgd" else 0
        return 0.9 - 0.1 * abs(math.log(settings["lr"] / best_lr)) - decay_penalty

    def result(score: float | str) -> dict:
        return {"status": score} if isinstance(score, str) else {"status": "ok", "train": {"val_acc": score}}

    def run_queue(runs: dict[str, dict], record: Path) -> dict[str, dict]:
        assert record == Path("reports/optimizers-runs.json")
        queued.append(runs)
        return {name: result(accuracy(changes)) for name, changes in runs.items()}

    monkeypatch.setattr(experiments.study, "run_queue", run_queue)
    return queued


def test_the_weight_decay_is_swept_at_the_best_lr_without_training_the_best_lr_run_again(monkeypatch):
    params = sweep_params()
    queued = fake_queue(monkeypatch, params)
    sweep = sweep_optimizers(params)

    assert [sorted(runs) for runs in queued] == [  # one optimizer's runs at a time, each batch recorded
        ["sweep-sgd-0p03", "sweep-sgd-0p1", "sweep-sgd-0p3"], ["sweep-adam-0p0006", "sweep-adam-0p002",
         "sweep-adam-0p006"], ["sweep-rmsprop-0p0003", "sweep-rmsprop-0p001", "sweep-rmsprop-0p003"],
        ["sweep-nadam-0p0006", "sweep-nadam-0p002", "sweep-nadam-0p006"],
        ["sweep-sgd-0p9"], ["sweep-adam-0p018"], ["sweep-rmsprop-0p009"], ["sweep-nadam-0p0002"],  # each at an edge
        ["sweep-nadam-6p67em05"],  # nadam still diverges at the last widening
        ["sweep-sgd-0p3-wd0p0003", "sweep-sgd-0p3-wd0p003"],  # wd 0.001 at lr 0.3 is sweep-sgd-0p3: not again
        ["sweep-sgd-0p3-wd0p009"]]
    assert queued[9]["sweep-sgd-0p3-wd0p003"] == {"train.epochs": 1, "optimizer": "sgd", "optimizers.sgd.lr": 0.3,
                                                  "optimizers.sgd.weight_decay": 0.003}
    assert sweep["sgd"]["lr"] == {"chosen": 0.3, "at_edge": False, "tried": {
        "0.03": pytest.approx(0.9 - 0.1 * math.log(10) - 0.01 * math.log(3)),
        "0.1": pytest.approx(0.9 - 0.1 * math.log(3) - 0.01 * math.log(3)),
        "0.3": pytest.approx(0.9 - 0.01 * math.log(3)), "0.9": pytest.approx(0.9 - 0.11 * math.log(3))}}
    assert sweep["sgd"]["weight_decay"]["chosen"] == 0.003 and not sweep["sgd"]["weight_decay"]["at_edge"]
    assert sweep["sgd"]["weight_decay"]["tried"]["0.001"] == sweep["sgd"]["lr"]["tried"]["0.3"]  # reused
    assert list(sweep["sgd"]["weight_decay"]["tried"]) == ["0.0003", "0.001", "0.003", "0.009"]
    assert sweep["nadam"]["lr"]["chosen"] is None and sweep["nadam"]["lr"]["at_edge"]
    assert {name: sweep[name]["weight_decay"] for name in ("adam", "rmsprop", "nadam")} == {
        "adam": {"chosen": 0.0, "at_edge": False, "tried": {}, "not_swept": "weight decay 0"},
        "rmsprop": {"chosen": None, "at_edge": False, "tried": {}, "not_swept": "no weight decay"},
        "nadam": {"chosen": 0.01, "at_edge": False, "tried": {}, "not_swept": "every lr diverged"}}


def test_the_final_runs_use_the_chosen_lr_and_weight_decay(monkeypatch):
    params = sweep_params()
    fake_queue(monkeypatch, params)
    by_optimizer = final_runs(params, sweep_optimizers(params))
    runs = {name: changes for batch in by_optimizer.values() for name, changes in batch.items()}
    assert list(by_optimizer) == ["sgd", "adam", "rmsprop"]  # nadam diverged at every lr: no final runs
    assert sorted(runs) == ["study-adam-seed0", "study-adam-seed1", "study-rmsprop-seed0", "study-rmsprop-seed1",
                            "study-sgd-seed0", "study-sgd-seed1"]
    assert runs["study-sgd-seed1"] == {"train.epochs": 3, "optimizer": "sgd", "seed": 1, "optimizers.sgd.lr": 0.3,
                                       "optimizers.sgd.weight_decay": 0.003}
    assert runs["study-adam-seed0"] == {"train.epochs": 3, "optimizer": "adam", "seed": 0, "optimizers.adam.lr": 0.006,
                                        "optimizers.adam.weight_decay": 0.0}
    assert runs["study-rmsprop-seed0"] == {"train.epochs": 3, "optimizer": "rmsprop", "seed": 0,
                                           "optimizers.rmsprop.lr": 0.003}  # its section has no weight decay


def test_a_zero_weight_decay_is_not_swept_even_with_one_factor(monkeypatch):
    params = sweep_params()
    params["study"]["optimizers"] = ["adam"]
    params["study"]["sweep"].update(factors=[1], max_widenings=0)
    queued = fake_queue(monkeypatch, params)
    sweep = sweep_optimizers(params)
    assert queued == [{"sweep-adam-0p002": {"train.epochs": 1, "optimizer": "adam", "optimizers.adam.lr": 0.002}}]
    assert sweep["adam"]["weight_decay"]["not_swept"] == "weight decay 0"


def test_a_summary_row_has_mean_and_spread_over_seeds():
    runs = {0: finished(0.80, epochs_to_target=2), 1: finished(0.82, epochs_to_target=3),
            2: finished(0.84, epochs_to_target=None), 3: {"status": "diverged"}}
    row = summary_row("adam", {"lr": 0.002, "weight_decay": 0.0}, runs)
    assert (row["seeds"], row["ok"], row["diverged"]) == (4, 3, 1)
    assert row["test_acc"] == {"mean": 0.82, "std": 0.02}
    assert row["epochs_to_target"] == {"mean": 2.5, "std": 0.70711, "reached": 2}


def test_a_paired_comparison_separates_a_steady_difference_from_noise():
    runs = {"a": {0: finished(0.80), 1: finished(0.85), 2: finished(0.90)},
            "b": {0: finished(0.79), 1: finished(0.84), 2: finished(0.885)},
            "c": {0: finished(0.84), 1: finished(0.80), 2: finished(0.90)}}
    steady = paired_comparison("a", "b", runs)  # b is 1.0, 1.0 and 1.5 points behind on every seed
    half = 4.3027 * 0.0028868 / math.sqrt(3)  # t(0.975, 2) x sd / sqrt(n)
    assert steady["difference"] == pytest.approx(0.01167, abs=1e-5) and steady["clear"]
    assert steady["ci95"] == pytest.approx([0.01167 - half, 0.01167 + half], abs=1e-4)
    noisy = paired_comparison("a", "c", runs)  # same mean spread, but c is ahead on one seed and behind on another
    assert not noisy["clear"] and noisy["ci95"][0] < 0 < noisy["ci95"][1]
    rows = [summary_row(name, {"lr": 0.1, "weight_decay": 0.0}, by_seed) for name, by_seed in runs.items()]
    assert [(pair["better"], pair["worse"]) for pair in compare(rows, runs)] == [("a", "c"), ("a", "b"), ("c", "b")]


def test_the_tables_show_mean_and_spread_and_say_which_differences_are_clear():
    runs = {"adam": {0: finished(0.80, gap=-0.02), 1: finished(0.82, gap=0.0)},
            "sgd": {0: {"status": "diverged"}, 1: {"status": "diverged"}}}
    rows = [summary_row("adam", {"lr": 0.002, "weight_decay": 0.0}, runs["adam"]),
            summary_row("sgd", {"lr": 1000.0, "weight_decay": 0.0005}, runs["sgd"])]
    lines = results_table(rows, target_val_acc=0.7).splitlines()
    assert lines[0].startswith("| optimizer | lr | weight decay | test acc % (mean ± sd) | test loss | epochs to 70%")
    assert lines[2] == "| adam | 0.002 | 0 | 81.00 ± 1.41 | 0.900 ± 0.000 | 2.0 ± 0.0 | -1.0 ± 1.4 | 2 of 2 | 10 |"
    assert lines[3] == "| sgd | 1000 | 0.0005 | 2 of 2 diverged |" + " |" * 5
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert compare(rows, runs) == []  # nothing to compare adam with
    pairs = [{"better": "a", "worse": "b", "seeds": 3, "difference": 0.0117, "ci95": [0.0045, 0.0188], "clear": True}]
    assert "| a - b | +1.17 | +0.45 to +1.88 | yes |" in comparison_table(pairs)
    sweep = {"adam": {"lr": {"chosen": 0.002, "at_edge": False,
                             "tried": {"0.0006": 0.5, "0.002": 0.6, "0.006": "diverged"}},
                      "weight_decay": {"chosen": 0.0, "at_edge": False, "tried": {}, "not_swept": "weight decay 0"}},
             "sgd": {"lr": {"chosen": 0.6, "at_edge": True, "tried": {"0.2": 0.5, "0.6": 0.55}},
                     "weight_decay": {"chosen": 0.0005, "at_edge": False,
                                      "tried": {"0.00015": 0.52, "0.0005": 0.55, "0.0015": 0.54}}}}
    lines = sweep_table(sweep).splitlines()
    assert lines[2] == "| adam | 0.0006: 0.500, **0.002: 0.600**, 0.006: diverged | weight decay 0: not swept |"
    assert lines[3] == ("| sgd | 0.2: 0.500, **0.6: 0.550** (best at the edge after the last widening) | "
                        "0.00015: 0.520, **0.0005: 0.550**, 0.0015: 0.540 |")


def test_the_figure_shows_each_optimizer_mean_curve_with_a_band_and_whole_epochs():
    def history(accuracies):
        return [{"epoch": epoch + 1, "val_acc": acc, "val_loss": 1 - acc} for epoch, acc in enumerate(accuracies)]
    figure = plot_optimizer_curves({"adam": [history([0.5, 0.7, 0.8]), history([0.6, 0.7, 0.9])],
                          "sgd": [history([0.4, 0.5, 0.6]), history([0.4, 0.6, 0.6])]})
    accuracy_axis = figure.axes[0]
    assert [text.get_text() for text in accuracy_axis.get_legend().get_texts()] == ["adam (2 seeds)", "sgd (2 seeds)"]
    assert list(accuracy_axis.lines[0].get_ydata()) == pytest.approx([0.55, 0.7, 0.85])
    assert len(accuracy_axis.collections) == 2  # one band per optimizer
    band = accuracy_axis.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(0.5) and band.max() == pytest.approx(0.9)
    assert all(tick == int(tick) for tick in accuracy_axis.get_xticks())
    plt.close(figure)


def test_the_study_names_the_choices_that_params_yaml_lacks():
    params = {"optimizers": {"adam": {"lr": 0.002, "weight_decay": 0.0005}, "muon": {"lr": 0.12}}}
    sweep = {"adam": {"lr": {"chosen": 0.004}, "weight_decay": {"chosen": 0.0005}},
             "muon": {"lr": {"chosen": 0.12}, "weight_decay": {"chosen": None}}}
    assert new_choices(params, sweep) == ["optimizers.adam.lr: 0.002 -> 0.004"]
    sweep["muon"]["lr"]["chosen"] = 0.24
    assert new_choices(params, sweep) == ["optimizers.adam.lr: 0.002 -> 0.004", "optimizers.muon.lr: 0.12 -> 0.24"]
    params["study"] = {"keep": ["optimizers.muon.lr"]}  # chosen at the default's full budget instead
    assert new_choices(params, sweep) == ["optimizers.adam.lr: 0.002 -> 0.004"]


def test_params_carry_what_the_committed_study_chose():
    """`dvc exp run -S optimizer=X` trains X with the lr and weight decay the study chose for it."""
    sweep = json.loads((REPO / "reports/optimizers.json").read_text())["sweep"]
    changes = new_choices(parse_params((REPO / "params.yaml").read_text()), sweep)
    assert not changes, f"params.yaml lacks what reports/optimizers.json chose: {'; '.join(changes)}"


def tiny_study(tmp_path) -> Path:
    """A committed tiny repository whose study sweeps sgd (diverging at its own lr) and adam (at lr 0.002, whatever
    params.yaml holds, and without weight decay, so that only its lr is swept)."""
    params = diverging(tiny_params(), "sgd")
    params["optimizers"]["adam"].update(lr=0.002, weight_decay=0.0)
    params["train"].update(epochs=1, batch_size=8)
    params["study"] = {"optimizers": ["sgd", "adam"], "seeds": [0, 1], "changes": {"train.epochs": 2},
                       "target_val_acc": 0.3,
                       "sweep": {"factors": [1], "widen": 1e6, "max_widenings": 1, "changes": {"train.epochs": 4}}}
    return repro_and_commit(make_dvc_repo(tmp_path / "repo", params))


@pytest.mark.e2e
def test_study_runs_on_a_real_dvc_queue_and_trains_nothing_twice(tmp_path):
    repo = tiny_study(tmp_path)
    output = run(["python", "-m", "experiments.study"], repo)
    assert "wrote reports/optimizers.json" in output

    study = json.loads((repo / "reports/optimizers.json").read_text())
    sweep = study["sweep"]
    assert sweep["sgd"]["lr"]["tried"]["1000.0"] == "diverged" and sweep["sgd"]["lr"]["chosen"] == 0.001
    assert set(sweep["adam"]["lr"]["tried"]) == {"2e-09", "0.002"}
    assert isinstance(sweep["adam"]["lr"]["tried"]["2e-09"], float)  # params.yaml holds 2.0e-09, not '2e-09'
    # sgd's weight decay 100 at lr 0.001 is the lr sweep's best run; one widening goes 1e6 lower
    assert set(sweep["sgd"]["weight_decay"]["tried"]) == {"0.0001", "100.0"}
    assert sweep["sgd"]["weight_decay"]["tried"]["100.0"] == sweep["sgd"]["lr"]["tried"]["0.001"]
    assert sweep["adam"]["weight_decay"]["not_swept"] == "weight decay 0"
    rows = {row["optimizer"]: row for row in study["rows"]}
    for name in ("sgd", "adam"):
        assert (rows[name]["seeds"], rows[name]["lr"], rows[name]["weight_decay"]) == (
            2, sweep[name]["lr"]["chosen"], sweep[name]["weight_decay"]["chosen"])
        accuracies = [run["test_acc"] for run in study["runs"][name].values()]
        assert rows[name]["test_acc"]["mean"] == pytest.approx(sum(accuracies) / 2, abs=1e-5)
        spread = abs(accuracies[0] - accuracies[1]) / math.sqrt(2)  # the sample standard deviation of two values
        assert rows[name]["test_acc"]["std"] == pytest.approx(spread, abs=1e-5)
    table = (repo / "reports/optimizers.md").read_text()
    assert "| optimizer | lr | weight decay | test acc % (mean ± sd) |" in table and " ± " in table
    adam_sweep = [line for line in table.splitlines() if line.startswith("| adam | 2e-09: ")]
    assert adam_sweep and adam_sweep[0].endswith(" | weight decay 0: not swept |")
    assert (repo / "plots/optimizers/curves.png").stat().st_size > 5000
    names = [name for name in dvc("exp", "list", "--name-only", cwd=repo).split()]
    assert {"study-adam-seed1", "sweep-adam-0p002", "sweep-sgd-0p001", "sweep-sgd-0p001-wd0p0001"} <= set(names)
    assert not any(name.startswith("sweep-sgd-0p001-wd100") for name in names)  # the lr sweep's best run
    assert all("Running stage 'prepare'" not in log for log in queue_logs(repo, names).values())

    # A commit that touches no stage's dependencies, then the study again: every run is in the record.
    record = json.loads((repo / "reports/optimizers-runs.json").read_text())
    assert record["sweep-sgd-1000"]["status"] == "diverged" and record["study-adam-seed1"]["status"] == "ok"
    assert set(record) == set(names) | {"sweep-sgd-1000"}
    (repo / "README.md").write_text("a README-only change\n")
    run(["git", "add", "README.md"], repo)
    run(["git", "commit", "-q", "-m", "README only"], repo)
    again = run(["python", "-m", "experiments.study"], repo)
    assert "recorded in reports/optimizers-runs.json" in again and "queued experiments" not in again
    assert json.loads((repo / "reports/optimizers.json").read_text())["rows"] == study["rows"]

    # Without the record (the study's first run in a clone that never committed it): the run cache restores
    # every run that finished; the one that diverged runs again.
    (repo / "reports/optimizers-runs.json").unlink()
    run(["python", "-m", "experiments.study"], repo)
    for name, log in queue_logs(repo, names).items():
        assert "Stage 'train' is cached - skipping run" in log and "Running stage" not in log, name
    assert json.loads((repo / "reports/optimizers.json").read_text())["rows"] == study["rows"]
    assert json.loads((repo / "reports/optimizers-runs.json").read_text()) == record


def test_bad_study_params_are_named(params):
    with pytest.raises(UserError, match=r"'study.optimizers' is \['sgd', 'adamax'\]; allowed: a list of sgd"):
        check_study({**params, "study": {**params["study"], "optimizers": ["sgd", "adamax"]}})
    with pytest.raises(UserError, match=r"'study.seeds' is \[0\]; allowed: a list of at least 2 different"):
        check_study({**params, "study": {**params["study"], "seeds": [0]}})
    with pytest.raises(UserError, match=r"'study.keep' is \['optimizers.nadam.lr'\]; allowed: a list of the swept"):
        check_study({**params, "study": {**params["study"], "keep": ["optimizers.nadam.lr"]}})
    params["study"]["changes"] = {"train.epochs": 0}
    with pytest.raises(UserError, match=r"'train.epochs' is 0; allowed: an integer in \[1, 10000\]"):
        check_study(params)


@pytest.mark.e2e
def test_a_queue_worker_that_dies_is_restarted_once_then_named(tmp_path):
    """kill -9 of DVC's queue worker while a run is running: the worker is started again, the run it left stuck as
    'Running' is named with the worker's log, and after `dvc queue kill` the study runs again to the end."""
    repo = tiny_study(tmp_path)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["study"].update(optimizers=["adam"], sweep={**params["study"]["sweep"], "max_widenings": 0})
    write_params(repo, params)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    study = subprocess.Popen([sys.executable, "-m", "experiments.study"], cwd=repo, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    worker_pid = repo / ".dvc/tmp/exps/celery/dvc-exp-worker-1.pid"
    while "Running" not in dvc("queue", "status", cwd=repo) or not worker_pid.exists():
        assert study.poll() is None, study.communicate()
        time.sleep(0.2)
    os.kill(int(worker_pid.read_text()), signal.SIGKILL)
    stdout, stderr = study.communicate(timeout=600)

    assert study.returncode == 2, stderr
    assert "the DVC queue's worker stopped with 1 experiments waiting; starting it again" in stdout
    assert stderr.strip().splitlines()[-1] == (
        "error: the DVC queue's worker stopped while experiment 'sweep-adam-0p002' was running (worker log: "
        ".dvc/tmp/exps/celery/dvc-exp-worker-1.out); see `dvc queue status`, stop it with `dvc queue kill "
        "sweep-adam-0p002`, then run this again: finished runs are kept")
    dvc("queue", "kill", "sweep-adam-0p002", cwd=repo)
    assert "wrote reports/optimizers.json" in run(["python", "-m", "experiments.study"], repo)


def test_a_queued_run_counts_as_alive_while_its_process_is(tmp_path, monkeypatch):
    """A worker whose queue has emptied drops out of `dvc queue status` while it runs its last experiment."""
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / ".dvc/tmp/exps/run/271a99f0ab7d"
    run_dir.mkdir(parents=True)
    (run_dir / "271a99f0ab7d.pid").write_text(str(os.getpid()))
    assert run_alive("271a99f") and not run_alive("c3ddfa6")
    ended = subprocess.Popen(["true"])
    ended.wait()
    (run_dir / "271a99f0ab7d.pid").write_text(str(ended.pid))
    assert not run_alive("271a99f")


def test_shards_split_the_runs_so_that_each_runs_on_exactly_one_machine():
    assert parse_shard(None) is None and parse_shard("2/3") == (2, 3)
    for bad in ("0/3", "4/3", "2", "a/b", "1/0"):
        with pytest.raises(UserError, match=f"SHARD={bad}: give K/N"):
            parse_shard(bad)
    names = ["nesterov", "adam", "adamw", "rmsprop", "muon"]
    shares = [my_share(names, (k, 3)) for k in (1, 2, 3)]
    assert shares == [["nesterov", "rmsprop"], ["adam", "muon"], ["adamw"]] and my_share(names, None) == names
    assert my_share(["adam"], (2, 2)) == []  # more machines than optimizers: this one runs nothing


def without_timing(value):
    """A report without its seconds and minutes, which differ from machine to machine and run to run."""
    if isinstance(value, dict):
        return {key: without_timing(item) for key, item in value.items() if not key.endswith(("seconds", "minutes"))}
    return [without_timing(item) for item in value] if isinstance(value, list) else value


@pytest.mark.e2e
def test_a_study_split_across_three_machines_reports_what_one_machine_does(tmp_path):
    params = tiny_params()
    params["train"].update(epochs=1, batch_size=8)
    params["study"] = {"optimizers": ["sgd", "adam", "rmsprop"], "seeds": [0, 1], "changes": {"train.epochs": 2},
                       "target_val_acc": 0.3,
                       "sweep": {"factors": [1], "widen": 3, "max_widenings": 0, "changes": {"train.epochs": 2}}}
    repo = repro_and_commit(make_dvc_repo(tmp_path / "repo", params))
    dvc("remote", "add", "-d", "team", str(tmp_path / "dvc-remote"), cwd=repo)  # the team's writable DVC remote
    run(["git", "commit", "-q", "-am", "the team's DVC remote"], repo)
    dvc("push", cwd=repo)
    run([sys.executable, "-m", "experiments.study"], repo)  # one machine, all runs: no Git remote to pull from
    one_machine = json.loads((repo / "reports/optimizers.json").read_text())

    origin = tmp_path / "origin.git"  # the team's Git remote
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], tmp_path)
    run(["git", "push", "-q", str(origin), "main"], repo)
    trained = {}
    for k, optimizer in enumerate(params["study"]["optimizers"], start=1):
        machine = tmp_path / f"machine{k}"
        run(["git", "clone", "-q", str(origin), str(machine)], tmp_path)
        dvc("pull", "-q", cwd=machine)
        output = run([sys.executable, "-m", "experiments.study", "--shard", f"{k}/3"], machine)
        assert f"shard {k}/3 ran {optimizer};" in output
        trained[k] = set(dvc("exp", "list", "--name-only", cwd=machine).split())
        lr = value_name(rounded(params["optimizers"][optimizer]["lr"]))
        assert trained[k] == {f"sweep-{optimizer}-{lr}", f"study-{optimizer}-seed0", f"study-{optimizer}-seed1"}
    assert trained[1].isdisjoint(trained[2] | trained[3]) and trained[2].isdisjoint(trained[3])

    collected = run([sys.executable, "-m", "experiments.study"], tmp_path / "machine1")
    assert "queued experiments" not in collected and "wrote reports/optimizers.json" in collected  # nothing trained
    report = json.loads((tmp_path / "machine1/reports/optimizers.json").read_text())
    assert without_timing(report) == without_timing(one_machine)
