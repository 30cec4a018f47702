"""The ablation: what each piece of the training recipe is worth on this machine, as queued DVC experiments.

    python -m experiments.ablation     (or: make ablation)

1. Training pieces: the default params with `ablation.reference` applied (a shorter budget, and here
   airbench's wider blocks) is the reference run; each entry of `ablation.runs` is the reference with a few
   more params changed (one piece removed or swapped). Each run is a DVC experiment named ablate-<name>, so
   `dvc exp show` and `dvc exp diff` compare any two. reports/ablation-runs.json (Git-tracked) records each
   run's results by the code, data and params it ran with, so run again, even in a fresh clone, it trains only
   what changed.
2. Test-time augmentation: the committed model (models/model.pt) scored on the test split with each choice of
   evaluate.tta; no retraining, so this part takes a minute.

Writes reports/ablation.json; `python -m tools.readme` turns it into the README's ablation table. On N
machines, `make ablation SHARD=K/N` on each runs every N-th training run and pushes it; then `make ablation` on
any one of them pulls them all and writes the report without training again.
"""

import time
from pathlib import Path

import torch

from classifier.cli import run_main
from classifier.prepared import load_split
from classifier.evaluation import loss_and_accuracy, predictor
from classifier.models import load_checkpoint
from classifier.outputs import MODEL_FILE, write_json
from classifier.params import (PARAMS_FILE, TTA_VIEWS, check_eval, check_known_keys, check_train, get, load_params,
                               require)
from experiments.dvc_queue import machine_args, my_share, pull_runs, push_runs, run_queue, with_changes

ABLATION_JSON = Path("reports/ablation.json")
RUNS_JSON = Path("reports/ablation-runs.json")


def check_ablation(params: dict) -> None:
    """Every run's params must be valid before hours of training start."""
    check_known_keys({"ablation": get(params, "ablation")}, {"ablation": {"reference": None, "runs": None}},
                     PARAMS_FILE)
    for key in ("ablation.reference", "ablation.runs"):
        require(isinstance(get(params, key), dict), key, "a mapping of params keys to values", get(params, key))
    reference = with_changes(params, params["ablation"]["reference"])
    for name, changes in {"reference": {}, **params["ablation"]["runs"]}.items():
        require(isinstance(changes, dict), f"ablation.runs.{name}", "a mapping of params keys to values", changes)
        changed = with_changes(reference, changes)
        check_train(changed)
        check_eval(changed)


def training_runs(params: dict) -> dict[str, dict]:
    """Experiment name -> params changes: the reference, then every ablation run, in params order."""
    ablation = params["ablation"]
    return {f"ablate-{name}": {**ablation["reference"], **change}
            for name, change in {"reference": {}, **ablation["runs"]}.items()}


def training_rows(params: dict) -> list[dict]:
    """Queue and run the reference and every ablation run; one row of results per run, in params order."""
    changes = {"reference": {}, **params["ablation"]["runs"]}
    results = run_queue(training_runs(params), RUNS_JSON)
    rows = []
    for name, change in changes.items():
        result = results[f"ablate-{name}"]
        row = {"name": name, "changes": change, "status": result["status"]}
        if result["status"] == "ok":
            row.update(test_acc=result["test"]["test_acc"], train_pflop=result["train"]["train_pflop"],
                       train_seconds=result["train"]["train_seconds"])
        rows.append(row)
    return rows


def tta_rows(params: dict) -> list[dict]:
    """Test accuracy of the committed model with each set of test-time views."""
    scorer = predictor(*load_checkpoint(MODEL_FILE), params)
    images, labels, _ = load_split("test")
    images, labels = torch.from_numpy(images), torch.from_numpy(labels)
    rows = []
    for tta in TTA_VIEWS:
        started = time.perf_counter()
        accuracy = loss_and_accuracy(scorer.logits(images, tta), labels)[1]
        rows.append({"tta": tta, "test_acc": round(accuracy, 5), "seconds": round(time.perf_counter() - started, 1)})
    return rows


def run_shard(params: dict, shard: tuple[int, int], git_remote: str) -> None:
    """This machine's share of the training runs, pushed for the machine that writes the report."""
    runs = training_runs(params)
    names = my_share(list(runs), shard)
    if names:
        run_queue({name: runs[name] for name in names}, RUNS_JSON)
        push_runs(git_remote)
    print(f"shard {shard[0]}/{shard[1]} ran {', '.join(names) or 'nothing (more shards than runs)'}; once every "
          "shard has finished, `make ablation` on any machine pulls their runs and writes the report")


def main() -> None:
    shard, git_remote = machine_args(__doc__)
    params = load_params()
    check_ablation(params)
    if shard is not None:
        return run_shard(params, shard, git_remote)
    pull_runs(git_remote)
    tta = tta_rows(params)
    rows = training_rows(params)
    write_json(ABLATION_JSON, {"reference": params["ablation"]["reference"], "runs": rows, "tta": tta})
    for row in rows:
        print(row)
    print(f"wrote {ABLATION_JSON}; run `python -m tools.readme` to update the README's table")


if __name__ == "__main__":
    run_main(main)
