"""The optimizer study's statistics: mean and spread over seeds, paired comparisons."""

import math

import pytest

from experiments.statistics import compare, paired_comparison, summary_row


def finished(test_acc, test_loss=0.9, epochs_to_target=2, gap=-0.01, seconds=10.0):
    return {
        "status": "ok",
        "test_acc": test_acc,
        "test_loss": test_loss,
        "epochs_to_target": epochs_to_target,
        "train_val_gap": gap,
        "train_seconds": seconds,
    }


def test_a_summary_row_has_mean_and_spread_over_seeds():
    runs = {
        0: finished(0.80, epochs_to_target=2),
        1: finished(0.82, epochs_to_target=3),
        2: finished(0.84, epochs_to_target=None),
        3: {"status": "diverged"},
    }
    row = summary_row("adam", {"lr": 0.002, "weight_decay": 0.0}, runs)
    assert (row["seeds"], row["ok"], row["diverged"]) == (4, 3, 1)
    assert row["test_acc"] == {"mean": 0.82, "std": 0.02}
    assert row["epochs_to_target"] == {"mean": 2.5, "std": 0.70711, "reached": 2}


def test_a_paired_comparison_separates_a_steady_difference_from_noise():
    runs = {
        "a": {0: finished(0.80), 1: finished(0.85), 2: finished(0.90)},
        "b": {0: finished(0.79), 1: finished(0.84), 2: finished(0.885)},
        "c": {0: finished(0.84), 1: finished(0.80), 2: finished(0.90)},
    }
    steady = paired_comparison("a", "b", runs)  # b is 1.0, 1.0 and 1.5 points behind on every seed
    half = 4.3027 * 0.0028868 / math.sqrt(3)  # t(0.975, 2) x sd / sqrt(n)
    assert steady["difference"] == pytest.approx(0.01167, abs=1e-5) and steady["clear"]
    assert steady["ci95"] == pytest.approx([0.01167 - half, 0.01167 + half], abs=1e-4)
    # same mean spread, but c is ahead on one seed and behind on another
    noisy = paired_comparison("a", "c", runs)
    assert not noisy["clear"] and noisy["ci95"][0] < 0 < noisy["ci95"][1]
    rows = [
        summary_row(name, {"lr": 0.1, "weight_decay": 0.0}, by_seed)
        for name, by_seed in runs.items()
    ]
    assert [(pair["better"], pair["worse"]) for pair in compare(rows, runs)] == [
        ("a", "c"),
        ("a", "b"),
        ("c", "b"),
    ]
