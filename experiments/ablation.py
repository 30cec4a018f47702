"""The ablation: what each piece of the training recipe is worth on this machine, as queued DVC
experiments.

    python -m experiments.ablation     (or: make ablation)

Its settings are experiments/ablation.yaml. 1. Training pieces: the default params with `reference`
applied (a shorter budget, and airbench's wider blocks) is the reference run; each entry of `runs`
is the reference with a few more params changed (one piece removed or swapped). Each run is a DVC
experiment named ablate-<name>, so `dvc exp show` and `dvc exp diff` compare any two, and run again,
the ablation trains only what changed (DVC's run cache restores the rest). 2. Test-time
augmentation: the committed model (models/model.pt) scored on the test split with each choice of
evaluate.tta; no retraining.

Writes reports/ablation.json, then reports/ablation.md from it. On N machines, `make ablation
SHARD=K/N` on each runs every N-th training run and pushes it; then `make ablation` on any one of
them pulls them all and writes the report without training again.
"""

import time
from pathlib import Path

import torch

from classifier.data import load_split
from classifier.errors import run_main
from classifier.evaluation import loss_and_accuracy, predictor
from classifier.files import MODEL_FILE, write_json
from classifier.models import load_checkpoint
from classifier.params import (
    TTA_VIEWS,
    check_eval,
    check_known_keys,
    check_train,
    get,
    load_params,
    require,
)
from experiments.queue import drive, load_settings, my_share, run_queue, with_changes
from experiments.report import ABLATION_JSON, ABLATION_MD, write_ablation_report

ABLATION_FILE = Path("experiments/ablation.yaml")


def check_ablation(params: dict, ablation: dict, path: Path = ABLATION_FILE) -> None:
    """Every run's params must be valid before hours of training start."""
    check_known_keys(ablation, {"reference": None, "runs": None}, path)
    for key in ("reference", "runs"):
        require(
            isinstance(get(ablation, key, path), dict),
            key,
            "a mapping of params keys to values",
            ablation[key],
            path,
        )
    reference = with_changes(params, ablation["reference"])
    for name, changes in {"reference": {}, **ablation["runs"]}.items():
        require(
            isinstance(changes, dict),
            f"runs.{name}",
            "a mapping of params keys to values",
            changes,
            path,
        )
        changed = with_changes(reference, changes)
        check_train(changed)
        check_eval(changed)


def training_runs(ablation: dict) -> dict[str, dict]:
    """Experiment name -> params changes: the reference, then every ablation run, in the file's
    order."""
    return {
        f"ablate-{name}": {**ablation["reference"], **change}
        for name, change in {"reference": {}, **ablation["runs"]}.items()
    }


def training_row(name: str, changes: dict, result: dict) -> dict:
    """One run's row of the report: what it changed, and its test accuracy, compute and seconds."""
    row = {"name": name, "changes": changes, "status": result["status"]}
    if result["status"] == "ok":
        row.update(
            test_acc=result["test"]["test_acc"],
            train_pflop=result["train"]["train_pflop"],
            train_seconds=result["train"]["train_seconds"],
        )
    return row


def tta_rows(params: dict) -> list[dict]:
    """Test accuracy of the committed model with each set of test-time views."""
    scorer = predictor(*load_checkpoint(MODEL_FILE), params)
    images, labels, _ = load_split("test")
    images, labels = torch.from_numpy(images), torch.from_numpy(labels)
    rows = []
    for tta in TTA_VIEWS:
        started = time.perf_counter()
        accuracy = loss_and_accuracy(scorer.logits(images, tta), labels)[1]
        rows.append(
            {
                "tta": tta,
                "test_acc": round(accuracy, 5),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    return rows


def run_ablation(params: dict, ablation: dict) -> None:
    """Every training run (the run cache restores what ran before) and the test-time views, then the
    report."""
    tta = tta_rows(params)
    results = run_queue(training_runs(ablation))
    rows = [
        training_row(name, changes, results[f"ablate-{name}"])
        for name, changes in {"reference": {}, **ablation["runs"]}.items()
    ]
    write_json(ABLATION_JSON, {"reference": ablation["reference"], "runs": rows, "tta": tta})
    write_ablation_report()
    print(f"wrote {ABLATION_JSON} and {ABLATION_MD}")


def run_share(ablation: dict, shard: tuple[int, int]) -> list[str]:
    """This machine's share of the training runs."""
    runs = training_runs(ablation)
    names = my_share(list(runs), shard)
    if names:
        run_queue({name: runs[name] for name in names})
    return names


def main() -> None:
    params, ablation = load_params(), load_settings(ABLATION_FILE, check_ablation)
    drive(
        __doc__,
        lambda shard: run_share(ablation, shard),
        lambda: run_ablation(params, ablation),
        "make ablation",
    )


if __name__ == "__main__":
    run_main(main)
