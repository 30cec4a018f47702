"""The optimizer study: which optimizer trains this CNN best, answered with DVC experiments and
statistics.

    python -m experiments.study            (or: make study)

Its settings are experiments/study.yaml. 1. Sweeps (experiments/sweep.py), seed `seeds[0]`, at the
study's budget: each optimizer's lr, then its weight decay at that lr, self-widening, chosen on
validation accuracy. 2. Final runs at the budget: each optimizer at its chosen lr and weight decay,
once per seed. 3. Statistics (experiments/statistics.py): mean and spread over seeds, and for every
pair of optimizers the paired difference in test accuracy with its 95% confidence interval. Writes
reports/optimizers.json, then reports/optimizers.md and plots/optimizers/curves.png from it
(experiments/report.py).

Every run is an ordinary queued DVC experiment (sweep-<optimizer>-<lr>,
sweep-<optimizer>-<lr>-wd<weight decay>, study-<optimizer>-seed<n>), visible in `dvc exp show` and
comparable with `dvc exp diff` and `dvc plots diff`. Run again, the study trains nothing that ran
before: DVC's run cache restores it.

On N machines (make study SHARD=K/N, K = 1..N): each runs the sweeps and the seeds of every N-th
optimizer and pushes its experiments (`dvc exp push --run-cache`); then `make study` on any one of
them pulls them all and writes the report without training again.
"""

import time
from pathlib import Path

from classifier.errors import run_main
from classifier.files import write_json
from classifier.optim import OPTIMIZERS
from classifier.params import (
    check_known_keys,
    check_train,
    get,
    load_params,
    number,
    require,
)
from experiments.queue import drive, load_settings, my_share, run_queue, with_changes
from experiments.report import STUDY_JSON, STUDY_MD, STUDY_PNG, write_study_report
from experiments.statistics import compare, run_summary, summary_row
from experiments.sweep import SWEPT, final_runs, new_choices, sweep_optimizers

STUDY_FILE = Path("experiments/study.yaml")
STUDY_KEYS = {
    "optimizers": set(),
    "seeds": set(),
    "changes": None,
    "target_val_acc": set(),
    "sweep": {"factors": set(), "widen": set(), "max_widenings": set(), "changes": None},
}


def check_study(params: dict, study: dict, path: Path = STUDY_FILE) -> None:
    """Every run's params must be valid before hours of training start."""
    check_known_keys(study, STUDY_KEYS, path)
    optimizers = get(study, "optimizers", path)
    require(
        isinstance(optimizers, list)
        and optimizers
        and all(name in OPTIMIZERS for name in optimizers),
        "optimizers",
        "a list of " + " | ".join(OPTIMIZERS),
        optimizers,
        path,
    )
    seeds = get(study, "seeds", path)
    distinct = isinstance(seeds, list) and len(seeds) >= 2 and len(set(seeds)) == len(seeds)
    require(
        distinct and all(isinstance(seed, int) and seed >= 0 for seed in seeds),
        "seeds",
        "a list of at least 2 different non-negative integers",
        seeds,
        path,
    )
    factors = get(study, "sweep.factors", path)
    positive = (
        isinstance(factors, list)
        and factors
        and all(isinstance(f, int | float) and f > 0 for f in factors)
    )
    require(positive, "sweep.factors", "a list of positive numbers", factors, path)
    number(study, "sweep.widen", 1, 1e6, open_low=True, source=path)
    number(study, "sweep.max_widenings", 0, 100, integer=True, source=path)
    number(study, "target_val_acc", 0, 1, source=path)
    for key in ("changes", "sweep.changes"):
        changes = get(study, key, path)
        require(isinstance(changes, dict), key, "a mapping of params keys to values", changes, path)
        check_train(with_changes(params, changes))


def run_optimizers(params: dict, study: dict) -> tuple[dict, dict]:
    """The sweeps and the final runs of study's optimizers: the sweeps' results, and name -> each
    final run's."""
    sweep = sweep_optimizers(params, study)
    return sweep, run_queue(final_runs(study, sweep))


def summaries(study: dict, sweep: dict, results: dict) -> dict[str, dict[int, dict]]:
    """optimizer -> seed -> the numbers of its final run, or why there are none."""
    runs = {}
    for optimizer in study["optimizers"]:
        runs[optimizer] = {}
        for seed in study["seeds"]:
            result = results.get(f"study-{optimizer}-seed{seed}", {"status": "diverged"})
            numbers = (
                run_summary(result, study["target_val_acc"]) if result["status"] == "ok" else {}
            )
            runs[optimizer][seed] = {"status": result["status"], **numbers}
    return runs


def run_study(params: dict, study: dict) -> None:
    """The whole study on this machine (the run cache restores what ran before), then its report."""
    started = time.perf_counter()
    sweep, results = run_optimizers(params, study)
    runs = summaries(study, sweep, results)
    rows = [
        summary_row(
            optimizer, {key: sweep[optimizer][key]["chosen"] for key in SWEPT}, runs[optimizer]
        )
        for optimizer in study["optimizers"]
    ]
    minutes = (time.perf_counter() - started) / 60
    write_json(
        STUDY_JSON,
        {
            "rows": rows,
            "comparisons": compare(rows, runs),
            "sweep": sweep,
            "runs": {
                optimizer: {str(seed): run for seed, run in by_seed.items()}
                for optimizer, by_seed in runs.items()
            },
            "study_minutes": round(minutes, 1),
            "method": study,
        },
    )
    write_study_report()
    print(f"study took {minutes:.1f} minutes; wrote {STUDY_JSON}, {STUDY_MD}, {STUDY_PNG}")
    changes = new_choices(params, sweep)
    if changes:
        print(
            "write the study's choices into params.yaml, so that `dvc exp run -S optimizer=X` "
            f"trains X with them (and `dvc repro` again): {'; '.join(changes)}"
        )


def run_share(params: dict, study: dict, shard: tuple[int, int]) -> list[str]:
    """This machine's optimizers of the study, start to end."""
    optimizers = my_share(study["optimizers"], shard)
    if optimizers:
        run_optimizers(params, {**study, "optimizers": optimizers})
    return optimizers


def main() -> None:
    params, study = load_params(), load_settings(STUDY_FILE, check_study)
    drive(
        __doc__,
        lambda shard: run_share(params, study, shard),
        lambda: run_study(params, study),
        "make study",
    )


if __name__ == "__main__":
    run_main(main)
