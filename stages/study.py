"""The optimizer study: which optimizer trains this CNN best, answered with DVC experiments.

    python -m stages.study            (or: make study)

1. Learning-rate sweep: for each optimizer in study.optimizers, queue one experiment per factor in
   study.sweep_factors (its own lr times the factor), each for study.sweep_epochs epochs; run the queue.
2. Final runs: each optimizer at the lr that gave the best validation accuracy in the sweep, for
   study.epochs epochs; run the queue.
3. Compare: reports/optimizers.json, reports/optimizers.md and plots/optimizers/curves.png.

Every run is an ordinary DVC experiment (sweep-<optimizer>-<lr>, study-<optimizer>), so it stays visible
in `dvc exp show` and comparable with `dvc exp diff` and `dvc plots diff`. Same model, data, seed and
schedule for every optimizer: only the optimizer and its own settings change.
"""

import copy
import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from stages.outputs import (EVALUATE_METRICS, HISTORY_CSV, TIMING_METRICS, TRAIN_METRICS, save_figure,  # noqa: E402
                            write_json)
from stages.params import (OPTIMIZERS, StageError, _number, _require, check_train, get, load_params,  # noqa: E402
                           run_stage)

STUDY_JSON = Path("reports/optimizers.json")
TABLE_MD = Path("reports/optimizers.md")
CURVES_PNG = Path("plots/optimizers/curves.png")


# ----------------------------------------------------------------------------- DVC and Git

def command(*args: str, check: bool = True) -> str:
    result = subprocess.run(args, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise StageError(f"`{' '.join(args)}` failed: {(result.stderr or result.stdout).strip()[-500:]}")
    return result.stdout + result.stderr


def dvc(*args: str, check: bool = True) -> str:
    return command(sys.executable, "-m", "dvc", *args, check=check)


def experiment_refs(base: str) -> dict[str, str]:
    """Experiment name -> commit, for the experiments based on commit `base`."""
    prefix = f"refs/exps/{base[:2]}/{base[2:]}/"
    lines = command("git", "for-each-ref", "--format=%(refname) %(objectname)", prefix).splitlines()
    return {ref.removeprefix(prefix): sha for ref, sha in (line.split() for line in lines)}


def read_at(sha: str, path) -> str:
    return command("git", "show", f"{sha}:{path}")


def with_changes(params: dict, changes: dict) -> dict:
    """A copy of params with each dotted key of changes set; a key that params lacks is an error."""
    changed = copy.deepcopy(params)
    for key, value in changes.items():
        get(params, key)
        *parents, last = key.split(".")
        section = changed
        for part in parents:
            section = section[part]
        section[last] = value
    return changed


def pipeline_params(params: dict) -> dict:
    """params without the study's and the ablation's own sections: they list runs, no stage reads them."""
    return {key: value for key, value in params.items() if key not in ("study", "ablation")}


def ran_with(sha: str, params: dict, overrides: dict) -> bool:
    """Whether experiment commit sha ran with params plus overrides (then its result still holds)."""
    ran = yaml.safe_load(read_at(sha, "params.yaml"))
    return pipeline_params(ran) == pipeline_params(with_changes(params, overrides))


def run_queue(runs: dict[str, dict]) -> dict[str, str]:
    """Queue one experiment per run (name -> params to set) and run the queue to the end, one at a time.

    An experiment that already ran from this commit with the same params is kept, not re-run, so an
    interrupted study or ablation resumes where it stopped. Returns experiment name -> commit of the
    experiments based on the commit they were queued from, so a commit made while the queue runs does
    not hide them.
    """
    base = command("git", "rev-parse", "HEAD").strip()
    existing, params = experiment_refs(base), load_params()
    finished = [name for name in runs if name in existing and ran_with(existing[name], params, runs[name])]
    stale = [name for name in runs if name in existing and name not in finished]
    if stale:
        dvc("exp", "remove", *stale)
    if finished:
        print(f"kept {len(finished)} experiments that already ran with the same params: {', '.join(finished)}")
    todo = [name for name in runs if name not in finished]
    for name in todo:
        dvc("exp", "run", "--queue", "--force", "-n", name,
            *[arg for key, value in runs[name].items() for arg in ("-S", f"{key}={json.dumps(value)}")])
    print(f"running {len(todo)} queued experiments: {', '.join(todo)}", flush=True)
    dvc("queue", "start", "--jobs", "1")
    while True:  # `dvc queue start` returns at once; the worker runs the queue in the background
        status = dvc("queue", "status")
        if " Queued " not in status and " Running " not in status:
            return experiment_refs(base)
        time.sleep(5)


def collect(name: str, refs: dict[str, str]) -> dict:
    """One experiment's results, or why there are none (diverged, failed)."""
    if name not in refs:
        logs = dvc("queue", "logs", name, check=False)
        return {"status": "diverged" if "training diverged" in logs else "failed"}
    sha = refs[name]
    history = list(csv.DictReader(io.StringIO(read_at(sha, HISTORY_CSV))))
    trained = {**json.loads(read_at(sha, TRAIN_METRICS)), **json.loads(read_at(sha, TIMING_METRICS))}
    return {"status": "ok", "train": trained, "test": json.loads(read_at(sha, EVALUATE_METRICS)),
            "history": [{key: float(value) for key, value in row.items()} for row in history]}


# ----------------------------------------------------------------------------- the study

def lr_name(lr: float) -> str:
    return f"{lr:.2g}".replace(".", "p").replace("-", "m")


def sweep_runs(params: dict) -> dict[str, dict]:
    study = params["study"]
    runs = {}
    for optimizer in study["optimizers"]:
        base_lr = params["optimizers"][optimizer]["lr"]
        for factor in study["sweep_factors"]:
            lr = float(f"{base_lr * factor:.3g}")
            runs[f"sweep-{optimizer}-{lr_name(lr)}"] = {
                "optimizer": optimizer, f"optimizers.{optimizer}.lr": lr, "train.epochs": study["sweep_epochs"]}
    return runs


def pick_learning_rates(params: dict, runs: dict[str, dict], results: dict[str, dict]) -> dict[str, dict]:
    """Each optimizer's lr with the best final validation accuracy in the sweep (None if every lr failed)."""
    chosen = {}
    for optimizer in params["study"]["optimizers"]:
        tried = [(name, overrides[f"optimizers.{optimizer}.lr"]) for name, overrides in runs.items()
                 if overrides["optimizer"] == optimizer]
        scored = [(results[name]["train"]["val_acc"], lr) for name, lr in tried if results[name]["status"] == "ok"]
        chosen[optimizer] = {"lr": max(scored)[1] if scored else None,
                             "sweep": {str(lr): results[name]["train"]["val_acc"]
                                       if results[name]["status"] == "ok" else results[name]["status"]
                                       for name, lr in tried}}
    return chosen


def table_row(optimizer: str, lr: float | None, result: dict, target_val_acc: float) -> dict:
    row = {"optimizer": optimizer, "lr": lr, "status": result["status"]}
    if result["status"] != "ok":
        return row
    history, trained = result["history"], result["train"]
    reached = [int(epoch["epoch"]) for epoch in history if epoch["val_acc"] >= target_val_acc]
    final = history[-1]
    best = max(history, key=lambda epoch: epoch["val_acc"])
    return {**row, "test_acc": result["test"]["test_acc"], "test_loss": result["test"]["test_loss"],
            "best_val_acc": trained["best_val_acc"], "best_epoch": int(best["epoch"]),
            "epochs_to_target": reached[0] if reached else None,
            "train_val_gap": round(final["train_acc"] - final["val_acc"], 5),
            "train_seconds": trained["train_seconds"]}


def markdown_table(rows: list[dict], target_val_acc: float) -> str:
    header = ["optimizer", "lr", "test acc", "test loss", "best val acc (epoch)",
              f"epochs to {target_val_acc:.0%} val", "train - val gap", "train s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in sorted(rows, key=lambda r: -r.get("test_acc", -1)):
        if row["status"] != "ok":
            lines.append(f"| {row['optimizer']} | {row['lr']} | {row['status']} |" + " |" * (len(header) - 3))
            continue
        to_target = row["epochs_to_target"] or "not reached"
        lines.append(f"| {row['optimizer']} | {row['lr']:g} | {row['test_acc']:.4f} | {row['test_loss']:.4f} | "
                     f"{row['best_val_acc']:.4f} ({row['best_epoch']}) | {to_target} | "
                     f"{row['train_val_gap']:+.4f} | {row['train_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def plot_overlay(results: dict[str, dict]):
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for optimizer, result in results.items():
        if result["status"] != "ok":
            continue
        epochs = [row["epoch"] for row in result["history"]]
        for axis, metric in zip(axes, ("val_acc", "val_loss")):
            axis.plot(epochs, [row[metric] for row in result["history"]], "o-", label=optimizer)
    for axis, label in zip(axes, ("validation accuracy", "validation loss")):
        axis.set(xlabel="epoch", ylabel=label)
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle("Optimizer study: validation curves, same model, data, seed and schedule")
    return figure


def check_study(params: dict) -> None:
    check_train(params)
    optimizers = get(params, "study.optimizers")
    _require(isinstance(optimizers, list) and optimizers and all(name in OPTIMIZERS for name in optimizers),
             "study.optimizers", "a list of " + " | ".join(OPTIMIZERS), optimizers)
    factors = get(params, "study.sweep_factors")
    _require(isinstance(factors, list) and factors and all(isinstance(f, int | float) and f > 0 for f in factors),
             "study.sweep_factors", "a list of positive numbers", factors)
    _number(params, "study.epochs", 1, 10_000, integer=True)
    _number(params, "study.sweep_epochs", 1, 10_000, integer=True)
    _number(params, "study.target_val_acc", 0, 1)


def main() -> None:
    params = load_params()
    check_study(params)
    study = params["study"]
    started = time.perf_counter()

    runs = sweep_runs(params)
    refs = run_queue(runs)
    chosen = pick_learning_rates(params, runs, {name: collect(name, refs) for name in runs})

    finals = {f"study-{optimizer}": {"optimizer": optimizer, f"optimizers.{optimizer}.lr": choice["lr"],
                                     "train.epochs": study["epochs"]}
              for optimizer, choice in chosen.items() if choice["lr"] is not None}
    refs = run_queue(finals)
    results = {optimizer: collect(f"study-{optimizer}", refs) if chosen[optimizer]["lr"] is not None
               else {"status": "diverged at every lr"} for optimizer in study["optimizers"]}

    rows = [table_row(optimizer, chosen[optimizer]["lr"], results[optimizer], study["target_val_acc"])
            for optimizer in study["optimizers"]]
    minutes = (time.perf_counter() - started) / 60
    write_json(STUDY_JSON, {"rows": rows, "lr_sweep": chosen, "study_minutes": round(minutes, 1),
                            "method": {key: study[key] for key in sorted(study)}})
    TABLE_MD.parent.mkdir(parents=True, exist_ok=True)
    TABLE_MD.write_text(markdown_table(rows, study["target_val_acc"]))
    figure = plot_overlay(results)
    save_figure(figure, CURVES_PNG)
    plt.close(figure)
    print(markdown_table(rows, study["target_val_acc"]))
    print(f"study took {minutes:.1f} minutes; wrote {STUDY_JSON}, {TABLE_MD}, {CURVES_PNG}")


if __name__ == "__main__":
    run_stage(main)
