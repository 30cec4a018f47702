"""The optimizer study's driver: its settings' checks, and the whole study on a real DVC queue,
split across two machines and collected (a dying queue worker: test_queue)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from classifier.errors import UserError
from classifier.params import parse_params
from experiments.queue import load_settings
from experiments.study import STUDY_FILE, check_study
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


def tiny_study(tmp_path) -> Path:
    """A committed tiny repository whose study sweeps sgd (diverging at its own lr) and adam (at lr
    0.002, without weight decay, so that only its lr is swept); two seeds each. Each sweep is one
    round (the widening is tested in test_sweep): the own value and a millionth of it, where sgd
    trains."""
    params = diverging(tiny_params(), "sgd")
    params["optimizers"]["adam"].update(lr=0.002, weight_decay=0.0)
    params["train"].update(epochs=1, batch_size=8)
    repo = make_dvc_repo(tmp_path / "repo", params)
    write_study(
        repo,
        {
            "optimizers": ["sgd", "adam"],
            "seeds": [0, 1],
            "changes": {"train.epochs": 2},
            "target_val_acc": 0.3,
            "sweep": {
                "factors": [1e-6, 1],
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


# ------------------------------------------------------------ the study on a real DVC queue


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    """The tiny study of sgd (diverging at its own lr) and adam, split across two machines of a team
    that share a Git and a DVC remote (machine 1 sgd, machine 2 adam, both at once). Then, at once,
    machine 1 collects the study, and machine 2 commits a change to no stage's dependencies and runs
    its shard again: each machine's clone, the experiments it trained by its number, and what the
    collection and the shard again printed. Every test of the study reads these runs: no two pay
    for the same one."""
    tmp_path = tmp_path_factory.mktemp("study")
    repo = tiny_study(tmp_path)
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
    shards = {k: start_study(machine, f"{k}/2") for k, machine in machines.items()}
    for k, optimizer in enumerate(["sgd", "adam"], start=1):
        assert f"shard {k}/2 ran {optimizer};" in output_of(shards[k])
    trained = {k: experiment_names(machine) for k, machine in machines.items()}
    (machines[2] / "README.md").write_text("a README-only change\n")
    run(["git", "add", "README.md"], machines[2])
    run(["git", "commit", "-q", "-m", "README"], machines[2])
    collection, again = start_study(machines[1]), start_study(machines[2], "2/2")
    return {
        "machines": machines,
        "trained": trained,
        "collected": output_of(collection),
        "again": output_of(again),
    }


def start_study(machine: Path, shard: str | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.study", *(["--shard", shard] if shard else [])],
        cwd=machine,
        env=ENV,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def output_of(process: subprocess.Popen) -> str:
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, output
    return output


def experiment_names(repo: Path) -> set[str]:
    return set(dvc("exp", "list", "--name-only", cwd=repo).split())


@pytest.mark.e2e
@pytest.mark.xdist_group("study")
def test_each_machine_trains_its_share_once_and_never_prepares(study):
    # sgd: the lr sweep (its own lr diverged), then the weight decay around the best lr, less the
    # lr sweep's best run (at sgd's own weight decay, 100), then the seeds; adam: its lr sweep alone
    assert study["trained"][1] == {
        "sweep-sgd-0p001",
        "sweep-sgd-0p001-wd0p0001",
        "study-sgd-seed0",
        "study-sgd-seed1",
    }
    assert study["trained"][2] == {
        "sweep-adam-2em09",
        "sweep-adam-0p002",
        "study-adam-seed0",
        "study-adam-seed1",
    }
    for k, names in study["trained"].items():
        logs = queue_logs(study["machines"][k], sorted(names))
        assert all("Running stage 'prepare'" not in log for log in logs.values())


@pytest.mark.e2e
@pytest.mark.xdist_group("study")
def test_the_collected_report_tells_a_diverged_run_and_what_each_sweep_chose(study):
    # what the other machine ran is pulled, not trained again; only the run that diverged, which
    # left no experiment, is tried again
    assert (
        "running 1 queued experiment (the run cache restores those that ran before): "
        "sweep-sgd-1000\n" in study["collected"]
    )
    assert "wrote reports/optimizers.json" in study["collected"]
    repo = study["machines"][1]
    report = json.loads((repo / "reports/optimizers.json").read_text())
    lr = report["sweep"]["sgd"]["lr"]
    assert lr["tried"]["1000.0"] == "diverged" and lr["chosen"] == 0.001
    adam = report["sweep"]["adam"]
    assert set(adam["lr"]["tried"]) == {"2e-09", "0.002"}
    # params.yaml holds 2.0e-09, not '2e-09'
    assert isinstance(adam["lr"]["tried"]["2e-09"], float)
    assert adam["weight_decay"]["not_swept"] == "weight decay 0"
    rows = {row["optimizer"]: row for row in report["rows"]}
    assert list(rows) == ["sgd", "adam"] and [row["ok"] for row in rows.values()] == [2, 2]
    assert (rows["sgd"]["seeds"], rows["sgd"]["lr"]) == (2, 0.001)
    assert [len(run["curve"]) for run in report["runs"]["sgd"].values()] == [2, 2]
    table = (repo / "reports/optimizers.md").read_text()
    assert "| optimizer | lr | weight decay | test acc % (mean ± sd) |" in table
    assert " ± " in table
    assert (repo / "plots/optimizers/curves.png").stat().st_size > 5000


@pytest.mark.e2e
@pytest.mark.xdist_group("study")
def test_a_shard_again_after_a_commit_of_no_stage_dep_trains_nothing(study):
    """A commit that touches no stage's dependencies, then machine 2's shard again: DVC's run cache
    restores every run that finished there; none trains. (Only there: `dvc exp push` sends no
    stage's Git-tracked outputs, so another machine's run cache misses them: docs/scale.md.)"""
    repo = study["machines"][2]
    assert "shard 2/2 ran adam;" in study["again"]
    names = sorted(study["trained"][2])
    for name, log in queue_logs(repo, names).items():
        assert "Stage 'train' is cached - skipping run" in log and "Running stage" not in log, name
    # and each run's results, restored, are those of the run before the commit, timing included
    refs = run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], repo).split()
    for name in names:
        before, after = (ref for ref in refs if ref.endswith(f"/{name}"))
        for path in ("metrics/evaluate.json", "metrics/timing.json"):
            shown = [run(["git", "show", f"{ref}:{path}"], repo) for ref in (before, after)]
            assert shown[0] == shown[1] and "{" in shown[0], (name, path)
