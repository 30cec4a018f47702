"""The optimizer study: which optimizer trains this CNN best, answered with DVC experiments and statistics.

    python -m experiments.study            (or: make study)

1. Sweeps, seed `seed`, at the study's budget study.changes (and study.sweep.changes on top), each
   self-widening: first the learning rate, each optimizer of study.optimizers at its own lr times
   study.sweep.factors (and its own weight decay); while the best lr is the lowest or highest tried, one more lr
   study.sweep.widen further out. Then the weight decay the same way, at the best lr (the run at its own weight
   decay is the lr sweep's best run, not trained again); an optimizer without weight decay, or with 0, keeps it.
2. Final runs at the budget study.changes: each optimizer at its best lr and weight decay, once per seed of
   study.seeds (the seed sets initialisation, shuffling and augmentation; the split has its own
   data.split_seed).
3. Statistics: mean and standard deviation over seeds, and for every pair of optimizers the paired
   difference in test accuracy with its 95% confidence interval. Writes reports/optimizers.json,
   reports/optimizers.md (the README's tables) and plots/optimizers/curves.png.

Every run is an ordinary queued DVC experiment (sweep-<optimizer>-<lr>, sweep-<optimizer>-<lr>-wd<weight decay>,
study-<optimizer>-seed<n>), visible in `dvc exp show` and comparable with `dvc exp diff` and `dvc plots diff`.
Interrupted or run again, the study trains nothing twice: reports/optimizers-runs.json (Git-tracked) records
every run's results by the code, data and params it ran with, and is written after each optimizer's batch of
runs; commit it, and the study goes on in a fresh clone where it stopped.

On N machines (make study SHARD=K/N, K = 1..N): each runs the sweeps and the seeds of every N-th optimizer and
pushes its experiments (`dvc exp push --run-cache`); then `make study` on any one of them pulls them all and
writes the report without training again.
"""

import math
import statistics
import time
from pathlib import Path

import numpy as np
from scipy import stats

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from classifier.cli import run_main  # noqa: E402
from classifier.outputs import save_figure, write_json, write_text  # noqa: E402
from classifier.params import (OPTIMIZERS, PARAMS_FILE, check_known_keys, check_train, get,  # noqa: E402
                               load_params, number, require)
from experiments.dvc_queue import (machine_args, my_share, pull_runs, push_runs, run_queue,  # noqa: E402
                                  with_changes)

STUDY_JSON = Path("reports/optimizers.json")
RUNS_JSON = Path("reports/optimizers-runs.json")
TABLE_MD = Path("reports/optimizers.md")
OPTIMIZER_CURVES_PNG = Path("plots/optimizers/curves.png")


# ----------------------------------------------------------------------------- the sweeps

SWEPT = ("lr", "weight_decay")  # the keys of optimizers.<name> that the study tunes, in this order


def value_name(value: float) -> str:
    """An lr or a weight decay as a word for an experiment name: 0.002 -> 0p002, 1e-05 -> 1em05, 1000 -> 1000."""
    return f"{value:g}".replace(".", "p").replace("-", "m").replace("+", "")


def rounded(lr: float) -> float:
    return float(f"{lr:.3g}")


def sweep_run(params: dict, optimizer: str, values: dict[str, float]) -> tuple[str, dict]:
    """One sweep trial, at values (its lr, and for a weight-decay trial its weight decay): name and params."""
    name = f"sweep-{optimizer}-{value_name(values['lr'])}"
    if "weight_decay" in values:
        name += f"-wd{value_name(values['weight_decay'])}"
    study = params["study"]
    return name, {**study["changes"], **study["sweep"]["changes"], "optimizer": optimizer,
                  **{f"optimizers.{optimizer}.{key}": value for key, value in values.items()}}


def best_value(scores: dict[float, float | str]) -> float | None:
    """The value with the highest validation accuracy; a diverged or failed run scores lowest."""
    scored = {value: score for value, score in scores.items() if not isinstance(score, str)}
    return max(scored, key=scored.get) if scored else None


def next_value(scores: dict[float, float | str], widen: float) -> float | None:
    """The value to try next: one step beyond the edge where the best sits, or None when it sits inside."""
    best = best_value(scores)
    if best is None or best == min(scores):  # every value diverged: go lower
        return rounded(min(scores) / widen)
    if best == max(scores):
        return rounded(max(scores) * widen)
    return None


def sweep_key(params: dict, key: str, fixed: dict[str, dict], known: dict[str, dict]) -> dict[str, dict]:
    """One self-widening sweep of optimizers.<name>.<key>, per optimizer of fixed (name -> the values it keeps):
    the validation accuracy (or failure) of every value tried, the best value, and whether it sits at an edge.

    Starts at each optimizer's own value times study.sweep.factors; while the best value is the lowest or highest
    tried, tries one more a factor study.sweep.widen further out (study.sweep.max_widenings times at most), so
    that the chosen value has a worse one on each side. A value in known (name -> value -> score) is not run.
    """
    sweep = params["study"]["sweep"]
    scores = {optimizer: dict(known.get(optimizer, {})) for optimizer in fixed}
    to_try = {optimizer: [value for factor in sweep["factors"]
                          if (value := rounded(params["optimizers"][optimizer][key] * factor)) not in scores[optimizer]]
              for optimizer in fixed}
    for widening in range(sweep["max_widenings"] + 1):
        runs = {optimizer: {value: sweep_run(params, optimizer, {**fixed[optimizer], key: value}) for value in values}
                for optimizer, values in to_try.items()}
        results = run_each_optimizer({optimizer: dict(trials.values()) for optimizer, trials in runs.items()})
        for optimizer, trials in runs.items():
            for value, (name, _) in trials.items():
                result = results[name]
                scores[optimizer][value] = result["train"]["val_acc"] if result["status"] == "ok" else result["status"]
        to_try = {optimizer: [value] for optimizer, tried in scores.items()
                  if (value := next_value(tried, sweep["widen"]))}
        if not to_try or widening == sweep["max_widenings"]:
            break
        print(f"best {key.replace('_', ' ')} at the edge of the sweep for {', '.join(to_try)}: widening it", flush=True)
    return {optimizer: {"chosen": best_value(tried), "at_edge": next_value(tried, sweep["widen"]) is not None,
                        "tried": {str(value): tried[value] for value in sorted(tried)}}
            for optimizer, tried in scores.items()}


def run_each_optimizer(runs: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """optimizer -> its runs (name -> params changes), one optimizer's batch at a time, each batch recorded in
    RUNS_JSON as it finishes: name -> results."""
    return {name: result for batch in runs.values() if batch for name, result in run_queue(batch, RUNS_JSON).items()}


def not_swept(own: float | None, lr: dict) -> dict:
    """The weight-decay entry of an optimizer whose weight decay is not swept: it keeps its own."""
    reason = ("every lr diverged" if lr["chosen"] is None else "no weight decay" if own is None
              else "weight decay 0")
    return {"chosen": own, "at_edge": False, "tried": {}, "not_swept": reason}


def sweep_optimizers(params: dict) -> dict[str, dict]:
    """Per optimizer: the lr sweep at its own weight decay, then the weight-decay sweep at the best lr.

    The weight-decay sweep's run at the optimizer's own weight decay is the lr sweep's best run: its score is
    reused, not trained again. Zero weight decay cannot be scaled, so an optimizer with none keeps it.
    """
    optimizers = params["study"]["optimizers"]
    lr = sweep_key(params, "lr", {optimizer: {} for optimizer in optimizers}, {})
    own = {optimizer: params["optimizers"][optimizer].get("weight_decay") for optimizer in optimizers}
    decaying = [optimizer for optimizer in optimizers if own[optimizer] and lr[optimizer]["chosen"] is not None]
    best_run = {optimizer: {rounded(own[optimizer]): lr[optimizer]["tried"][str(lr[optimizer]["chosen"])]}
                for optimizer in decaying}
    weight_decay = sweep_key(params, "weight_decay", {optimizer: {"lr": lr[optimizer]["chosen"]}
                                                      for optimizer in decaying}, best_run)
    return {optimizer: {"lr": lr[optimizer], "weight_decay": weight_decay.get(optimizer)
                        or not_swept(own[optimizer], lr[optimizer])} for optimizer in optimizers}


# ----------------------------------------------------------------------------- the final runs and their statistics

def chosen(optimizer: str, sweep: dict) -> dict:
    """The params keys the sweeps chose for the optimizer; a weight decay its section lacks stays unset."""
    return {f"optimizers.{optimizer}.{key}": sweep[key]["chosen"] for key in SWEPT
            if sweep[key]["chosen"] is not None}


def final_runs(params: dict, sweep: dict[str, dict]) -> dict[str, dict[str, dict]]:
    """optimizer -> name -> params, one per seed, at the optimizer's lr and weight decay from the sweeps."""
    study = params["study"]
    return {optimizer: {f"study-{optimizer}-seed{seed}": {**study["changes"], "optimizer": optimizer, "seed": seed,
                                                           **chosen(optimizer, sweep[optimizer])}
                        for seed in study["seeds"]}
            for optimizer in study["optimizers"] if sweep[optimizer]["lr"]["chosen"] is not None}


def new_choices(params: dict, sweep: dict[str, dict]) -> list[str]:
    """The sweep's choices that params.yaml's optimizers: sections do not hold yet, as "key: old -> new", but for
    the keys in study.keep (settings that runs at the default's full budget chose over the study's)."""
    keep = params.get("study", {}).get("keep", [])
    return [f"optimizers.{optimizer}.{key}: {params['optimizers'][optimizer].get(key)} -> {result['chosen']}"
            for optimizer, keys in sweep.items() for key, result in keys.items()
            if result["chosen"] is not None and params["optimizers"][optimizer].get(key) != result["chosen"]
            and f"optimizers.{optimizer}.{key}" not in keep]


def run_summary(result: dict, target_val_acc: float) -> dict:
    """The numbers of one finished run that the study compares."""
    history = result["history"]
    reached = [int(epoch["epoch"]) for epoch in history if epoch["val_acc"] >= target_val_acc]
    return {"test_acc": result["test"]["test_acc"], "test_loss": result["test"]["test_loss"],
            "epochs_to_target": reached[0] if reached else None,
            "train_val_gap": round(history[-1]["train_acc"] - history[-1]["val_acc"], 5),
            "train_seconds": result["train"]["train_seconds"]}


def spread(values: list[float]) -> dict:
    """Mean and sample standard deviation (0 for a single value)."""
    return {"mean": round(statistics.mean(values), 5),
            "std": round(statistics.stdev(values), 5) if len(values) > 1 else 0.0}


def summary_row(optimizer: str, values: dict[str, float | None], runs: dict[int, dict]) -> dict:
    """One optimizer at its values (lr, weight decay) over its seeds: mean and spread of each number, and how
    many runs diverged or failed."""
    ok = [run for run in runs.values() if run["status"] == "ok"]
    row = {"optimizer": optimizer, **values, "seeds": len(runs), "ok": len(ok),
           "diverged": sum(run["status"] == "diverged" for run in runs.values())}
    if ok:
        row.update({key: spread([run[key] for run in ok])
                    for key in ("test_acc", "test_loss", "train_val_gap", "train_seconds")})
        reached = [run["epochs_to_target"] for run in ok if run["epochs_to_target"] is not None]
        row["epochs_to_target"] = {**spread(reached), "reached": len(reached)} if reached else {"reached": 0}
    return row


def paired_comparison(better: str, worse: str, runs: dict[str, dict[int, dict]]) -> dict:
    """Test-accuracy difference better - worse over the seeds both finished, with its 95% confidence interval.

    The same seed gives both optimizers the same initialisation, batches and augmentation, so the
    per-seed differences remove most of the seed-to-seed spread (a paired t interval).
    """
    seeds = [seed for seed in runs[better] if runs[better][seed]["status"] == runs[worse][seed]["status"] == "ok"]
    differences = [runs[better][seed]["test_acc"] - runs[worse][seed]["test_acc"] for seed in seeds]
    result = {"better": better, "worse": worse, "seeds": len(seeds)}
    if len(differences) < 2:
        return {**result, "difference": None, "ci95": None, "clear": False}
    mean = statistics.mean(differences)
    half = float(stats.t.ppf(0.975, len(differences) - 1)) * statistics.stdev(differences) / math.sqrt(len(differences))
    return {**result, "difference": round(mean, 5), "ci95": [round(mean - half, 5), round(mean + half, 5)],
            "clear": bool(mean - half > 0)}


def compare(rows: list[dict], runs: dict[str, dict[int, dict]]) -> list[dict]:
    """Every pair of optimizers that finished, the one with the higher mean test accuracy first."""
    finished = sorted((row for row in rows if row["ok"]), key=lambda row: -row["test_acc"]["mean"])
    ranked = [row["optimizer"] for row in finished]
    return [paired_comparison(better, worse, runs) for i, better in enumerate(ranked) for worse in ranked[i + 1:]]


# ----------------------------------------------------------------------------- tables and figure

def mean_std(row: dict, key: str, digits: int, scale: float = 1) -> str:
    value = row[key]
    return f"{value['mean'] * scale:.{digits}f} ± {value['std'] * scale:.{digits}f}"


def results_table(rows: list[dict], target_val_acc: float) -> str:
    header = ["optimizer", "lr", "weight decay", "test acc % (mean ± sd)", "test loss",
              f"epochs to {target_val_acc:.0%} val", "train - val gap (points)", "runs ok", "train s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in sorted(rows, key=lambda row: -row["test_acc"]["mean"] if row["ok"] else 1):
        lr = f"{row['lr']:g}" if row["lr"] is not None else "none (every lr diverged)"
        weight_decay = f"{row['weight_decay']:g}" if row["weight_decay"] is not None else "the optimizer's default"
        if not row["ok"]:
            lines.append(f"| {row['optimizer']} | {lr} | {weight_decay} | {row['diverged']} of {row['seeds']} "
                         "diverged |" + " |" * (len(header) - 4))
            continue
        reached = row["epochs_to_target"]
        to_target = ("not reached" if not reached["reached"] else mean_std(row, "epochs_to_target", 1)
                     + ("" if reached["reached"] == row["ok"] else f" ({reached['reached']} of {row['ok']} runs)"))
        lines.append(f"| {row['optimizer']} | {lr} | {weight_decay} | {mean_std(row, 'test_acc', 2, 100)} | "
                     f"{mean_std(row, 'test_loss', 3)} | {to_target} | {mean_std(row, 'train_val_gap', 1, 100)} | "
                     f"{row['ok']} of {row['seeds']} | {row['train_seconds']['mean']:.0f} |")
    return "\n".join(lines) + "\n"


def comparison_table(comparisons: list[dict]) -> str:
    lines = ["| comparison | test acc difference (points, mean over seeds) | 95% confidence interval | "
             "larger than the seed-to-seed spread? |", "|---|---|---|---|"]
    for pair in comparisons:
        if pair["difference"] is None:
            lines.append(f"| {pair['better']} - {pair['worse']} | fewer than 2 common seeds | | |")
            continue
        low, high = (100 * bound for bound in pair["ci95"])
        lines.append(f"| {pair['better']} - {pair['worse']} | {100 * pair['difference']:+.2f} | "
                     f"{low:+.2f} to {high:+.2f} | {'yes' if pair['clear'] else 'no'} |")
    return "\n".join(lines) + "\n"


def sweep_cell(result: dict) -> str:
    """One sweep of one optimizer: the validation accuracy at each value tried, the chosen one in bold."""
    if "not_swept" in result:
        return f"{result['not_swept']}: not swept"
    cells = []
    for value, score in result["tried"].items():
        cell = f"{float(value):g}: " + (score if isinstance(score, str) else f"{score:.3f}")
        cells.append(f"**{cell}**" if float(value) == result["chosen"] else cell)
    return ", ".join(cells) + (" (best at the edge after the last widening)" if result["at_edge"] else "")


def sweep_table(sweep: dict[str, dict]) -> str:
    lines = ["| optimizer | validation accuracy at each lr tried, at its own weight decay (the chosen one in bold) | "
             "validation accuracy at each weight decay tried, at the chosen lr |", "|---|---|---|"]
    for optimizer, result in sweep.items():
        lines.append(f"| {optimizer} | {sweep_cell(result['lr'])} | {sweep_cell(result['weight_decay'])} |")
    return "\n".join(lines) + "\n"


def plot_optimizer_curves(histories: dict[str, list[list[dict]]]):
    """Each optimizer's mean validation accuracy and loss over its seeds, with a band from lowest to highest."""
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for optimizer, runs in histories.items():
        epochs = [int(row["epoch"]) for row in runs[0]]
        for axis, metric in zip(axes, ("val_acc", "val_loss")):
            values = np.array([[row[metric] for row in history] for history in runs])
            line, = axis.plot(epochs, values.mean(axis=0), "o-", label=f"{optimizer} ({len(runs)} seeds)")
            axis.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2)
    for axis, label in zip(axes, ("validation accuracy", "validation loss")):
        axis.set(xlabel="epoch", ylabel=label)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle("Optimizer study: mean validation curves over seeds (band: lowest to highest seed)")
    return figure


# ----------------------------------------------------------------------------- the study

STUDY_KEYS = {"optimizers": set(), "seeds": set(), "changes": None, "target_val_acc": set(), "keep": set(),
              "sweep": {"factors": set(), "widen": set(), "max_widenings": set(), "changes": None}}


def check_study(params: dict) -> None:
    check_known_keys({"study": get(params, "study")}, {"study": STUDY_KEYS}, PARAMS_FILE)
    check_train(params)
    optimizers = get(params, "study.optimizers")
    require(isinstance(optimizers, list) and optimizers and all(name in OPTIMIZERS for name in optimizers),
             "study.optimizers", "a list of " + " | ".join(OPTIMIZERS), optimizers)
    seeds = get(params, "study.seeds")
    require(isinstance(seeds, list) and len(seeds) >= 2 and len(set(seeds)) == len(seeds)
             and all(isinstance(seed, int) and seed >= 0 for seed in seeds),
             "study.seeds", "a list of at least 2 different non-negative integers", seeds)
    factors = get(params, "study.sweep.factors")
    require(isinstance(factors, list) and factors and all(isinstance(f, int | float) and f > 0 for f in factors),
             "study.sweep.factors", "a list of positive numbers", factors)
    number(params, "study.sweep.widen", 1, 1e6, open_low=True)
    number(params, "study.sweep.max_widenings", 0, 100, integer=True)
    for key in ("study.changes", "study.sweep.changes"):
        changes = get(params, key)
        require(isinstance(changes, dict), key, "a mapping of params keys to values", changes)
        check_train(with_changes(params, changes))
    number(params, "study.target_val_acc", 0, 1)
    keep = params["study"].get("keep", [])
    swept = [f"optimizers.{name}.{key}" for name in optimizers for key in ("lr", "weight_decay")]
    require(isinstance(keep, list) and all(key in swept for key in keep), "study.keep",
            "a list of the swept keys (optimizers.<one of study.optimizers>.lr or .weight_decay)", keep)


def run_shard(params: dict, shard: tuple[int, int], git_remote: str) -> None:
    """This machine's optimizers of the study, start to end, pushed for the machine that writes the report."""
    optimizers = my_share(params["study"]["optimizers"], shard)
    if optimizers:
        mine = {**params, "study": {**params["study"], "optimizers": optimizers}}
        run_each_optimizer(final_runs(mine, sweep_optimizers(mine)))
        push_runs(git_remote)
    print(f"shard {shard[0]}/{shard[1]} ran {', '.join(optimizers) or 'nothing (more shards than optimizers)'}; "
          "once every shard has finished, `make study` on any machine pulls their runs and writes the report")


def main() -> None:
    shard, git_remote = machine_args(__doc__)
    params = load_params()
    check_study(params)
    if shard is not None:
        return run_shard(params, shard, git_remote)
    pull_runs(git_remote)
    study = params["study"]
    started = time.perf_counter()

    sweep = sweep_optimizers(params)
    results = run_each_optimizer(final_runs(params, sweep))
    runs = {optimizer: {seed: results[f"study-{optimizer}-seed{seed}"]
                        if sweep[optimizer]["lr"]["chosen"] is not None else {"status": "diverged"}
                        for seed in study["seeds"]} for optimizer in study["optimizers"]}
    summaries = {optimizer: {seed: {"status": run["status"], **(run_summary(run, study["target_val_acc"])
                                                                if run["status"] == "ok" else {})}
                             for seed, run in by_seed.items()} for optimizer, by_seed in runs.items()}
    rows = [summary_row(optimizer, {key: sweep[optimizer][key]["chosen"] for key in SWEPT}, summaries[optimizer])
            for optimizer in study["optimizers"]]
    comparisons = compare(rows, summaries)
    minutes = (time.perf_counter() - started) / 60

    write_json(STUDY_JSON, {"rows": rows, "comparisons": comparisons, "sweep": sweep,
                            "runs": {optimizer: {str(seed): run for seed, run in by_seed.items()}
                                     for optimizer, by_seed in summaries.items()},
                            "study_minutes": round(minutes, 1), "method": study})
    tables = (results_table(rows, study["target_val_acc"]) + "\n" + comparison_table(comparisons) + "\n"
              + sweep_table(sweep))
    write_text(TABLE_MD, tables)
    histories = {optimizer: [run["history"] for run in by_seed.values() if run["status"] == "ok"]
                 for optimizer, by_seed in runs.items()}
    figure = plot_optimizer_curves({optimizer: runs for optimizer, runs in histories.items() if runs})
    save_figure(figure, OPTIMIZER_CURVES_PNG)
    plt.close(figure)
    print(tables)
    print(f"study took {minutes:.1f} minutes; wrote {STUDY_JSON}, {TABLE_MD}, {OPTIMIZER_CURVES_PNG}")
    if changes := new_choices(params, sweep):
        print(f"write the study's choices into params.yaml, so that `dvc exp run -S optimizer=X` trains X with them "
              f"(and `dvc repro` again): {'; '.join(changes)}")


if __name__ == "__main__":
    run_main(main)
