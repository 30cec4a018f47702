"""Muon's orthogonalisation in a run in fp32: in fp32, as FilterMuon does it, against
torch.optim.Muon's own bf16 cast, as before issue 47. Each is trained with the committed params in
fp32 at the optimizer study's budget (experiments/study.yaml's `changes`) over the study's seeds,
one after the other in one run on one machine, then evaluated. Chosen on validation accuracy; the
test accuracy only reports.

    python -m tools.muon_precision            writes reports/muon-precision.json and .md: two runs
                                               a seed at the study's budget, in fp32
    python -m tools.muon_precision --report   rewrites the .md from the .json
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
import yaml

from classifier.errors import UserError, run_main
from classifier.files import EVALUATE_METRICS, TIMING_METRICS, TRAIN_METRICS, write_json
from classifier.params import load_params
from experiments.queue import load_settings, with_changes
from experiments.report import markdown_table, mean_std
from experiments.statistics import paired_comparison, spread
from experiments.study import STUDY_FILE, check_study
from tools.bench import copy_code, machine, run_measured

REPORT_JSON = Path("reports/muon-precision.json")
REPORT_MD = Path("reports/muon-precision.md")
# The train stage with Muon orthogonalising as torch.optim.Muon does, in bf16, whatever the run's
# precision
TORCH_BF16_TRAIN = """
import contextlib
from classifier import optim
from classifier.errors import run_main
from stages import train

optim.orthogonalising_in = lambda precision: contextlib.nullcontext()
run_main(train.main)
"""
KEYS = ("val_acc", "test_acc", "train_pflop", "train_seconds")  # what one_run returns
ORTHOGONALISED_IN = {"fp32": ["-m", "stages.train"], "bf16": ["-c", TORCH_BF16_TRAIN]}


def one_run(params: dict, orthogonalised_in: str, tmp: Path) -> dict:
    """The train and evaluate stages on these params in a scratch copy, Muon orthogonalising in
    orthogonalised_in; what they wrote."""
    scratch = copy_code(tmp / f"{orthogonalised_in}-seed{params['seed']}", Path("data/prepared"))
    (scratch / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run_measured([sys.executable, *ORTHOGONALISED_IN[orthogonalised_in]], scratch)
    run_measured([sys.executable, "-m", "stages.evaluate"], scratch)
    trained = json.loads((scratch / TRAIN_METRICS).read_text())
    return {
        "val_acc": trained["val_acc"],
        "test_acc": json.loads((scratch / EVALUATE_METRICS).read_text())["test_acc"],
        "train_pflop": trained["train_pflop"],
        "train_seconds": json.loads((scratch / TIMING_METRICS).read_text())["train_seconds"],
    }


def measure() -> dict:
    params = load_params()
    study = load_settings(STUDY_FILE, check_study)
    if params["optimizer"] != "muon":
        raise UserError(
            f"params.yaml: 'optimizer' is {params['optimizer']}; this compares Muon's two "
            "precisions: set it to muon"
        )
    base = with_changes(params, {**study["changes"], "compute.precision": "fp32"})
    runs: dict[str, dict[int, dict]] = {"fp32": {}, "bf16": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in study["seeds"]:
            for orthogonalised_in, seeds in runs.items():
                print(f"seed {seed}, Muon orthogonalising in {orthogonalised_in} ...", flush=True)
                run = one_run({**base, "seed": seed}, orthogonalised_in, Path(tmp))
                print(f"  val acc {run['val_acc']:.4f}, {run['train_seconds']:.0f} s", flush=True)
                seeds[seed] = run
    return {
        **machine(torch.device("cpu"), "fp32"),
        "changes": study["changes"],
        "runs": runs,
    }


def report(result: dict) -> str:
    """reports/muon-precision.md, written whole from its JSON."""
    runs = result["runs"]
    rows = []
    for orthogonalised_in, seeds in runs.items():
        row = {key: spread([run[key] for run in seeds.values()]) for key in KEYS}
        rows.append(
            [
                orthogonalised_in,
                len(seeds),
                mean_std(row, "val_acc", 2, 100),
                mean_std(row, "test_acc", 2, 100),
                mean_std(row, "train_pflop", 4),
                mean_std(row, "train_seconds", 0),
            ]
        )
    paired = [
        runs["fp32"][seed]["val_acc"] - runs["bf16"][seed]["val_acc"] for seed in runs["fp32"]
    ]
    # every run finished (a failed one stops this tool), as the study's statistics expect
    finished = {
        kind: {seed: {**run, "status": "ok"} for seed, run in seeds.items()}
        for kind, seeds in runs.items()
    }
    val = paired_comparison("fp32", "bf16", finished, "val_acc")
    test = paired_comparison("fp32", "bf16", finished)
    changes = ", ".join(f"`{key}: {value}`" for key, value in result["changes"].items())
    return (
        "# Muon's orthogonalisation in a run in fp32\n\n"
        "Written by `python -m tools.muon_precision` from `reports/muon-precision.json`; do not "
        "edit.\n\n"
        f"{result['date']}, {result['machine']}. The committed params in fp32 at the optimizer "
        f"study's budget ({changes}), once per seed, Muon orthogonalising its updates in fp32 "
        "(FilterMuon, since issue 47) or in bf16 (`torch.optim.Muon`'s own cast, before). Mean ± "
        "sample standard deviation over the seeds; seconds are this machine's, both kinds in one "
        "run.\n\n"
        + markdown_table(
            ["orthogonalised in", "seeds", "val acc %", "test acc %", "train PFLOP", "train s"],
            rows,
        )
        + "\nfp32 minus bf16, seed by seed (the same seed gives both the same initialisation, "
        f"batches and augmentation): validation accuracy {points(paired)} points, mean "
        f"{points([val['difference']])}, 95% confidence interval {interval(val)} (paired t); "
        f"test accuracy {points([test['difference']])}, {interval(test)}.\n"
    )


def points(differences: list[float]) -> str:
    return ", ".join(f"{d * 100:+.2f}" for d in differences)


def interval(comparison: dict) -> str:
    low, high = comparison["ci95"]
    return f"[{low * 100:+.2f}, {high * 100:+.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--report", action="store_true", help=f"only rewrite {REPORT_MD} from {REPORT_JSON}"
    )
    if not parser.parse_args().report:
        write_json(REPORT_JSON, measure())
    REPORT_MD.write_text(report(json.loads(REPORT_JSON.read_text())))
    print(f"wrote {REPORT_MD} from {REPORT_JSON}")


if __name__ == "__main__":
    run_main(main)
