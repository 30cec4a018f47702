"""The optimizer study's statistics: each optimizer's mean and spread over seeds, and paired
comparisons."""

import math
import statistics

from scipy import stats


def run_summary(result: dict, target_val_acc: float) -> dict:
    """The numbers of one finished run that the study compares, and its validation curve."""
    history = result["history"]
    reached = [int(epoch["epoch"]) for epoch in history if epoch["val_acc"] >= target_val_acc]
    return {
        "test_acc": result["test"]["test_acc"],
        "test_loss": result["test"]["test_loss"],
        "epochs_to_target": reached[0] if reached else None,
        "train_val_gap": round(history[-1]["train_acc"] - history[-1]["val_acc"], 5),
        "train_seconds": result["train"]["train_seconds"],
        "curve": [{key: row[key] for key in ("epoch", "val_acc", "val_loss")} for row in history],
    }


def spread(values: list[float]) -> dict:
    """Mean and sample standard deviation (0 for a single value)."""
    return {
        "mean": round(statistics.mean(values), 5),
        "std": round(statistics.stdev(values), 5) if len(values) > 1 else 0.0,
    }


def summary_row(optimizer: str, values: dict[str, float | None], runs: dict[int, dict]) -> dict:
    """One optimizer at its values (lr, weight decay) over its seeds: mean and spread of each
    number, and how many runs diverged or failed."""
    ok = [run for run in runs.values() if run["status"] == "ok"]
    row = {
        "optimizer": optimizer,
        **values,
        "seeds": len(runs),
        "ok": len(ok),
        "diverged": sum(run["status"] == "diverged" for run in runs.values()),
    }
    if ok:
        for key in ("test_acc", "test_loss", "train_val_gap", "train_seconds"):
            row[key] = spread([run[key] for run in ok])
        reached = [run["epochs_to_target"] for run in ok if run["epochs_to_target"] is not None]
        row["epochs_to_target"] = (
            {**spread(reached), "reached": len(reached)} if reached else {"reached": 0}
        )
    return row


def paired_comparison(
    better: str, worse: str, runs: dict[str, dict[int, dict]], metric: str = "test_acc"
) -> dict:
    """Test-accuracy (or another metric's) difference better - worse over the seeds both finished,
    with its 95% confidence interval.

    The same seed gives both optimizers the same initialisation, batches and augmentation, so the
    per-seed differences remove most of the seed-to-seed spread (a paired t interval).
    """
    seeds = [
        seed
        for seed in runs[better]
        if runs[better][seed]["status"] == runs[worse][seed]["status"] == "ok"
    ]
    differences = [runs[better][seed][metric] - runs[worse][seed][metric] for seed in seeds]
    result = {"better": better, "worse": worse, "seeds": len(seeds)}
    if len(differences) < 2:
        return {**result, "difference": None, "ci95": None, "clear": False}
    mean = statistics.mean(differences)
    t = float(stats.t.ppf(0.975, len(differences) - 1))
    half = t * statistics.stdev(differences) / math.sqrt(len(differences))
    return {
        **result,
        "difference": round(mean, 5),
        "ci95": [round(mean - half, 5), round(mean + half, 5)],
        "clear": bool(mean - half > 0),
    }


def compare(rows: list[dict], runs: dict[str, dict[int, dict]]) -> list[dict]:
    """Every pair of optimizers that finished, the one with the higher mean test accuracy first."""
    finished = sorted((row for row in rows if row["ok"]), key=lambda row: -row["test_acc"]["mean"])
    ranked = [row["optimizer"] for row in finished]
    return [
        paired_comparison(better, worse, runs)
        for i, better in enumerate(ranked)
        for worse in ranked[i + 1 :]
    ]
