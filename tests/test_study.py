"""The optimizer study's driver: its settings' checks, and the whole study on a real DVC queue, on
one machine (each optimizer's part its own test, so that two workers run them at once) and on
several (a dying queue worker: test_queue)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from classifier.errors import UserError
from classifier.params import load_params, parse_params
from experiments.queue import load_settings
from experiments.study import STUDY_FILE, check_study
from experiments.sweep import rounded, value_name
from tests.conftest import (
    ENV,
    REPO,
    diverging,
    dvc,
    make_dvc_repo,
    queue_logs,
    repro_and_commit,
    run,
    tiny_params,
)


def write_study(repo: Path, study: dict) -> None:
    (repo / "experiments/study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))


def tiny_study(tmp_path, optimizers: list[str], diverge=True) -> Path:
    """A committed tiny repository whose study sweeps these of sgd (diverging at its own lr, unless
    not diverge) and adam (at lr 0.002, without weight decay, so that only its lr is swept); two
    seeds each. Each sweep is one round (the widening is tested in test_sweep): the own value alone,
    or, with diverge, also a millionth of it, where sgd trains."""
    params = diverging(tiny_params(), "sgd") if diverge else tiny_params()
    params["optimizers"]["adam"].update(lr=0.002, weight_decay=0.0)
    params["train"].update(epochs=1, batch_size=8)
    repo = make_dvc_repo(tmp_path / "repo", params)
    write_study(
        repo,
        {
            "optimizers": list(optimizers),
            "seeds": [0, 1],
            "changes": {"train.epochs": 2},
            "target_val_acc": 0.3,
            "sweep": {
                "factors": [1e-6, 1] if diverge else [1],
                "widen": 1e6,
                "max_widenings": 0,
                "changes": {"train.epochs": 3},
            },
        },
    )
    run(["git", "commit", "-q", "-am", "a tiny study"], repo)
    return repro_and_commit(repo)


def test_the_committed_study_settings_are_valid(monkeypatch):
    monkeypatch.chdir(REPO)
    assert load_settings(STUDY_FILE, check_study)["optimizers"]


def test_bad_study_settings_are_named(params):
    study = parse_params((REPO / "experiments/study.yaml").read_text())
    with pytest.raises(
        UserError, match=r"study.yaml: 'optimizers' is \['sgd', 'adamax'\]; allowed: a list of sgd"
    ):
        check_study(params, {**study, "optimizers": ["sgd", "adamax"]})
    with pytest.raises(
        UserError, match=r"study.yaml: 'seeds' is \[0\]; allowed: a list of at least 2 different"
    ):
        check_study(params, {**study, "seeds": [0]})
    with pytest.raises(UserError, match=r"study.yaml: unknown key 'keep'"):
        check_study(params, {**study, "keep": ["optimizers.muon.lr"]})
    with pytest.raises(
        UserError, match=r"'train.epochs' is 0; allowed: an integer in \[1, 10000\]"
    ):
        check_study(params, {**study, "changes": {"train.epochs": 0}})


@pytest.mark.e2e
def test_a_study_on_a_real_dvc_queue_tells_a_diverged_run_and_sweeps_the_weight_decay(tmp_path):
    repo = tiny_study(tmp_path, ["sgd"])
    output = run(["python", "-m", "experiments.study"], repo)
    assert "wrote reports/optimizers.json, reports/optimizers.md" in output

    study = json.loads((repo / "reports/optimizers.json").read_text())
    lr = study["sweep"]["sgd"]["lr"]
    assert lr["tried"]["1000.0"] == "diverged" and lr["chosen"] == 0.001
    (row,) = study["rows"]
    assert (row["optimizer"], row["seeds"], row["ok"], row["lr"]) == ("sgd", 2, 2, 0.001)
    assert [len(run["curve"]) for run in study["runs"]["sgd"].values()] == [2, 2]
    table = (repo / "reports/optimizers.md").read_text()
    assert "| optimizer | lr | weight decay | test acc % (mean ± sd) |" in table
    assert " ± " in table
    assert (repo / "plots/optimizers/curves.png").stat().st_size > 5000
    names = dvc("exp", "list", "--name-only", cwd=repo).split()
    assert {"study-sgd-seed1", "sweep-sgd-0p001", "sweep-sgd-0p001-wd0p0001"} <= set(names)
    # the lr sweep's best run (at sgd's own weight decay, 100), not trained again by the wd sweep
    assert not any(name.startswith("sweep-sgd-0p001-wd100") for name in names)
    assert all("Running stage 'prepare'" not in log for log in queue_logs(repo, names).values())


@pytest.mark.e2e
def test_a_study_again_after_a_commit_of_no_stage_dep_trains_nothing(tmp_path):
    repo = tiny_study(tmp_path, ["adam"])
    run(["python", "-m", "experiments.study"], repo)
    study = json.loads((repo / "reports/optimizers.json").read_text())
    sweep = study["sweep"]["adam"]
    assert set(sweep["lr"]["tried"]) == {"2e-09", "0.002"}
    # params.yaml holds 2.0e-09, not '2e-09'
    assert isinstance(sweep["lr"]["tried"]["2e-09"], float)
    assert sweep["weight_decay"]["not_swept"] == "weight decay 0"
    names = dvc("exp", "list", "--name-only", cwd=repo).split()
    assert {"sweep-adam-0p002", "study-adam-seed0", "study-adam-seed1"} <= set(names)

    # A commit that touches no stage's dependencies, then the study again: DVC's run cache restores
    # every run, none trains.
    (repo / "README.md").write_text("a README-only change\n")
    run(["git", "add", "README.md"], repo)
    run(["git", "commit", "-q", "-m", "README"], repo)
    run(["python", "-m", "experiments.study"], repo)
    for name, log in queue_logs(repo, names).items():
        assert "Stage 'train' is cached - skipping run" in log and "Running stage" not in log, name
    again = json.loads((repo / "reports/optimizers.json").read_text())
    assert again["rows"] == study["rows"]


@pytest.mark.e2e
def test_a_study_split_across_two_machines_is_collected_without_training(tmp_path):
    repo = tiny_study(tmp_path, ["sgd", "adam"], diverge=False)
    # the team's writable DVC remote
    dvc("remote", "add", "-d", "team", str(tmp_path / "dvc-remote"), cwd=repo)
    run(["git", "commit", "-q", "-am", "the team's DVC remote"], repo)
    dvc("push", cwd=repo)
    origin = tmp_path / "origin.git"  # the team's Git remote
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], tmp_path)
    run(["git", "push", "-q", str(origin), "main"], repo)
    machines = {k: tmp_path / f"machine{k}" for k in (1, 2)}
    for machine in machines.values():
        run(["git", "clone", "-q", str(origin), str(machine)], tmp_path)
        dvc("pull", "-q", cwd=machine)
    shards = {  # both at once, as two machines of a team run them
        k: subprocess.Popen(
            [sys.executable, "-m", "experiments.study", "--shard", f"{k}/2"],
            cwd=machine,
            env=ENV,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for k, machine in machines.items()
    }
    for k, optimizer in enumerate(["sgd", "adam"], start=1):
        output = shards[k].communicate(timeout=600)[0]
        assert shards[k].returncode == 0 and f"shard {k}/2 ran {optimizer};" in output, output
        trained = set(dvc("exp", "list", "--name-only", cwd=machines[k]).split())
        own = load_params(machines[k] / "params.yaml")["optimizers"][optimizer]
        lr = value_name(rounded(own["lr"]))
        assert trained == {
            f"sweep-{optimizer}-{lr}",
            f"study-{optimizer}-seed0",
            f"study-{optimizer}-seed1",
        }

    collected = run([sys.executable, "-m", "experiments.study"], tmp_path / "machine1")
    # nothing trained
    assert "queued experiments" not in collected and "wrote reports/optimizers.json" in collected
    report = json.loads((tmp_path / "machine1/reports/optimizers.json").read_text())
    assert [(row["optimizer"], row["ok"]) for row in report["rows"]] == [("sgd", 2), ("adam", 2)]
