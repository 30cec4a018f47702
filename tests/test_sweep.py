"""The optimizer study's sweeps and final runs, on a fake queue."""

import math

import pytest

import experiments.sweep
from experiments.sweep import final_runs, new_choices, next_value, sweep_optimizers


def test_the_sweep_widens_until_the_best_value_is_inside():
    assert next_value({0.1: 0.5, 0.3: 0.6, 1.0: 0.55}, widen=3) is None
    assert next_value({0.1: 0.5, 0.3: 0.6, 1.0: 0.65}, widen=3) == 3.0
    assert next_value({0.1: 0.7, 0.3: 0.6, 1.0: 0.55}, widen=3) == 0.0333
    # a diverged run scores lowest
    assert next_value({0.1: 0.5, 0.3: 0.6, 1.0: "diverged"}, widen=3) is None
    # every run diverged: go lower
    assert next_value({0.1: "diverged", 0.3: "diverged"}, widen=3) == 0.0333


def sweep_setup() -> tuple[dict, dict]:
    """params.yaml and study.yaml: sgd with weight decay, adam with weight decay 0, rmsprop without
    any, nadam diverging at every lr."""
    params = {
        "optimizers": {
            "sgd": {"lr": 0.1, "weight_decay": 0.001},
            "adam": {"lr": 0.002, "weight_decay": 0.0},
            "rmsprop": {"lr": 0.001},
            "nadam": {"lr": 0.002, "weight_decay": 0.01},
        }
    }
    study = {
        "optimizers": ["sgd", "adam", "rmsprop", "nadam"],
        "seeds": [0, 1],
        "changes": {"train.epochs": 3},
        "sweep": {
            "factors": [0.3, 1, 3],
            "widen": 3,
            "max_widenings": 2,
            "changes": {"train.epochs": 1},
        },
    }
    return params, study


def fake_queue(monkeypatch, params: dict) -> list[dict]:
    """run_queue without DVC: every batch of runs queued, in order; sgd is best at lr 0.3 and weight
    decay 0.003, adam and rmsprop at their own lr times 3, nadam diverges."""
    queued = []

    def accuracy(changes: dict) -> float | str:
        optimizer = changes["optimizer"]
        settings = {
            **params["optimizers"][optimizer],
            **{
                key.split(".")[-1]: value
                for key, value in changes.items()
                if key.startswith(f"optimizers.{optimizer}.")
            },
        }
        if optimizer == "nadam":
            return "diverged"
        best_lr = 0.3 if optimizer == "sgd" else 3 * params["optimizers"][optimizer]["lr"]
        decay_penalty = (
            0.01 * abs(math.log(settings["weight_decay"] / 0.003)) if optimizer == "sgd" else 0
        )
        return 0.9 - 0.1 * abs(math.log(settings["lr"] / best_lr)) - decay_penalty

    def result(score: float | str) -> dict:
        return (
            {"status": score}
            if isinstance(score, str)
            else {"status": "ok", "train": {"val_acc": score}}
        )

    def run_queue(runs: dict[str, dict]) -> dict[str, dict]:
        queued.append(runs)
        return {name: result(accuracy(changes)) for name, changes in runs.items()}

    monkeypatch.setattr(experiments.sweep, "run_queue", run_queue)
    return queued


def test_the_weight_decay_is_swept_at_the_best_lr_without_training_the_best_lr_run_again(
    monkeypatch,
):
    params, study = sweep_setup()
    queued = fake_queue(monkeypatch, params)
    sweep = sweep_optimizers(params, study)

    assert [sorted(runs) for runs in queued] == [  # one round of every optimizer at a time
        [
            "sweep-adam-0p0006",
            "sweep-adam-0p002",
            "sweep-adam-0p006",
            "sweep-nadam-0p0006",
            "sweep-nadam-0p002",
            "sweep-nadam-0p006",
            "sweep-rmsprop-0p0003",
            "sweep-rmsprop-0p001",
            "sweep-rmsprop-0p003",
            "sweep-sgd-0p03",
            "sweep-sgd-0p1",
            "sweep-sgd-0p3",
        ],
        # each at an edge
        ["sweep-adam-0p018", "sweep-nadam-0p0002", "sweep-rmsprop-0p009", "sweep-sgd-0p9"],
        ["sweep-nadam-6p67em05"],  # nadam still diverges at the last widening
        # wd 0.001 at lr 0.3 is sweep-sgd-0p3: not again
        ["sweep-sgd-0p3-wd0p0003", "sweep-sgd-0p3-wd0p003"],
        ["sweep-sgd-0p3-wd0p009"],
    ]
    assert queued[3]["sweep-sgd-0p3-wd0p003"] == {
        "train.epochs": 1,
        "optimizer": "sgd",
        "optimizers.sgd.lr": 0.3,
        "optimizers.sgd.weight_decay": 0.003,
    }
    assert sweep["sgd"]["lr"] == {
        "chosen": 0.3,
        "at_edge": False,
        "tried": {
            "0.03": pytest.approx(0.9 - 0.1 * math.log(10) - 0.01 * math.log(3)),
            "0.1": pytest.approx(0.9 - 0.1 * math.log(3) - 0.01 * math.log(3)),
            "0.3": pytest.approx(0.9 - 0.01 * math.log(3)),
            "0.9": pytest.approx(0.9 - 0.11 * math.log(3)),
        },
    }
    assert (
        sweep["sgd"]["weight_decay"]["chosen"] == 0.003
        and not sweep["sgd"]["weight_decay"]["at_edge"]
    )
    # reused
    assert sweep["sgd"]["weight_decay"]["tried"]["0.001"] == sweep["sgd"]["lr"]["tried"]["0.3"]
    assert list(sweep["sgd"]["weight_decay"]["tried"]) == ["0.0003", "0.001", "0.003", "0.009"]
    assert sweep["nadam"]["lr"]["chosen"] is None and sweep["nadam"]["lr"]["at_edge"]
    assert {name: sweep[name]["weight_decay"] for name in ("adam", "rmsprop", "nadam")} == {
        "adam": {"chosen": 0.0, "at_edge": False, "tried": {}, "not_swept": "weight decay 0"},
        "rmsprop": {"chosen": None, "at_edge": False, "tried": {}, "not_swept": "no weight decay"},
        "nadam": {"chosen": 0.01, "at_edge": False, "tried": {}, "not_swept": "every lr diverged"},
    }


def test_the_final_runs_use_the_chosen_lr_and_weight_decay(monkeypatch):
    params, study = sweep_setup()
    fake_queue(monkeypatch, params)
    runs = final_runs(study, sweep_optimizers(params, study))
    # nadam diverged at every lr: no final runs
    assert list(runs) == [
        "study-sgd-seed0",
        "study-sgd-seed1",
        "study-adam-seed0",
        "study-adam-seed1",
        "study-rmsprop-seed0",
        "study-rmsprop-seed1",
    ]
    assert runs["study-sgd-seed1"] == {
        "train.epochs": 3,
        "optimizer": "sgd",
        "seed": 1,
        "optimizers.sgd.lr": 0.3,
        "optimizers.sgd.weight_decay": 0.003,
    }
    assert runs["study-adam-seed0"] == {
        "train.epochs": 3,
        "optimizer": "adam",
        "seed": 0,
        "optimizers.adam.lr": 0.006,
        "optimizers.adam.weight_decay": 0.0,
    }
    # its section has no weight decay
    assert runs["study-rmsprop-seed0"] == {
        "train.epochs": 3,
        "optimizer": "rmsprop",
        "seed": 0,
        "optimizers.rmsprop.lr": 0.003,
    }


def test_a_zero_weight_decay_is_not_swept_even_with_one_factor(monkeypatch):
    params, study = sweep_setup()
    study["optimizers"] = ["adam"]
    study["sweep"].update(factors=[1], max_widenings=0)
    queued = fake_queue(monkeypatch, params)
    sweep = sweep_optimizers(params, study)
    assert queued == [
        {"sweep-adam-0p002": {"train.epochs": 1, "optimizer": "adam", "optimizers.adam.lr": 0.002}}
    ]
    assert sweep["adam"]["weight_decay"]["not_swept"] == "weight decay 0"


def test_the_study_names_the_choices_that_params_yaml_lacks():
    params = {"optimizers": {"adam": {"lr": 0.002, "weight_decay": 0.0005}, "muon": {"lr": 0.12}}}
    sweep = {
        "adam": {"lr": {"chosen": 0.004}, "weight_decay": {"chosen": 0.0005}},
        "muon": {"lr": {"chosen": 0.12}, "weight_decay": {"chosen": None}},
    }
    assert new_choices(params, sweep) == ["optimizers.adam.lr: 0.002 -> 0.004"]
    sweep["muon"]["lr"]["chosen"] = 0.24
    assert new_choices(params, sweep) == [
        "optimizers.adam.lr: 0.002 -> 0.004",
        "optimizers.muon.lr: 0.12 -> 0.24",
    ]
