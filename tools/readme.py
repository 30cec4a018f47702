"""The README's tables, generated from the committed results, so that every number they show is one
a file holds.

    python -m tools.readme       rewrite the generated blocks of README.md in place

tests/test_readme.py fails when README.md differs from what this writes. A generated block sits
between `<!-- generated: NAME -->` and `<!-- end: NAME -->`; everything outside the blocks is prose.
"""

import json
import re
from pathlib import Path

from classifier.files import read_csv, read_history
from classifier.fit import fit_text
from classifier.params import load_params

README = Path("README.md")
BLOCK = re.compile(r"(<!-- generated: (\w+) -->\n).*?(<!-- end: \2 -->)", re.S)
TTA_NAMES = {"mirror_translate": "6-view TTA", "mirror": "mirror TTA", "none": "no TTA"}


def read_json(root: Path, path: str) -> dict:
    return json.loads((root / path).read_text())


def percent(value: float) -> str:
    return f"{value * 100:.2f}%"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------ one function per block


def results_block(root: Path) -> str:
    evaluated = read_json(root, "metrics/evaluate.json")
    trained = read_json(root, "metrics/train/metrics.json")
    timing = read_json(root, "metrics/timing.json")
    classes = read_csv(root / "plots/evaluate/classes.csv")
    test_images = sum(int(row["support"]) for row in classes)
    history = read_history(root / "plots/train/history.csv")
    best_epoch = max(history, key=lambda row: row["val_acc"])["epoch"]
    params = load_params(root / "params.yaml")
    tta = TTA_NAMES[params["evaluate"]["tta"]]
    epochs = trained["step"]
    return table(
        ["what", "value", "file"],
        [
            [
                f"test accuracy ({test_images:,} official test images, {tta})",
                f"**{percent(evaluated['test_acc'])}**",
                "`metrics/evaluate.json`",
            ],
            [
                "test loss (cross-entropy)",
                f"{evaluated['test_loss']:.4f}",
                "`metrics/evaluate.json`",
            ],
            ["macro F1", f"{evaluated['macro_f1']:.4f}", "`metrics/evaluate.json`"],
            [
                f"validation accuracy, last epoch / best (epoch {best_epoch} of {epochs})",
                f"{percent(trained['val_acc'])} / {percent(trained['best_val_acc'])}",
                "`metrics/train/metrics.json`",
            ],
            [
                "training compute (FLOP counter x images seen)",
                f"**{trained['train_pflop']:.3f} PFLOP**",
                "`metrics/train/metrics.json`",
            ],
            [
                f"training time ({epochs} epochs, validation included, {timing['precision']} on "
                f"{timing['device']})",
                f"{timing['train_seconds']:,.0f} s, {timing['images_per_second']:,.0f} images/s",
                "`metrics/timing.json`",
            ],
            [
                "fit diagnosis",
                fit_text(history, len(classes), params),
                "`plots/train/history.csv`, `metrics/fit.json`",
            ],
        ],
    )


def classes_block(root: Path) -> str:
    return table(
        ["class", "precision", "recall", "F1", "support"],
        [
            [
                row["class"],
                f"{float(row['precision']):.3f}",
                f"{float(row['recall']):.3f}",
                f"{float(row['f1']):.3f}",
                row["support"],
            ]
            for row in read_csv(root / "plots/evaluate/classes.csv")
        ],
    )


def rates_by_size(bench: dict) -> str:
    """Each image size's epochs, and with small-image epochs the default's mix of the two
    (bench/results.json)."""
    sizes = "; ".join(
        f"{rates['side']}×{rates['side']}: {rates['images_per_second']:,.0f} images/s x "
        f"{rates['mflop_per_image']:.0f} MFLOP = {rates['gflops']:.0f} GFLOP/s"
        for rates in bench["epoch_rates"].values()
    )
    mix = (
        f"; the default's mix: **{bench['achieved_gflops']:.0f} GFLOP/s**"
        if "small" in bench["epoch_rates"]
        else ""
    )
    return sizes + mix


def bench_block(root: Path) -> str:
    bench = read_json(root, "bench/results.json")
    precision = bench["precision"]
    stages = bench["stages"]
    noop = bench["noop_repro_seconds"]
    bf16 = (
        [["share of the bf16 peak", percent(bench["share_of_bf16_peak"])]]
        if precision != "bf16"
        else []
    )
    return table(
        ["what", "measured"],
        [
            ["machine", f"{bench['machine']}, {bench['date']}"],
            [
                "peak matmul (4096², `torch.matmul`), fp32 / bf16",
                f"{bench['peak_gflops_fp32']:.0f} / {bench['peak_gflops_bf16']:.0f} GFLOP/s",
            ],
            [
                f"the train stage's epochs ({precision}, batch {bench['batch_size']}, "
                "validation aside)",
                rates_by_size(bench),
            ],
            [
                f"share of the {precision} peak (the precision training uses here)",
                f"**{percent(bench['share_of_peak'])}**",
            ],
            *bf16,
            [
                "default training compute, and the time it implies at this rate",
                f"{bench['default_train_pflop']:.3f} PFLOP, "
                f"{bench['implied_train_seconds']:,.0f} s",
            ],
            [
                "naive loop for context (fp32, `ImageFolder` + `DataLoader`)",
                f"{bench['naive_images_per_second']:.0f} images/s (the pipeline is "
                f"{bench['speedup_over_naive']:.2f}x faster)",
            ],
            [
                "train stage, one epoch, in 1 / 2 processes (`train.processes`, gloo on the CPU)",
                " / ".join(f"{rate:,.0f}" for rate in bench["processes_images_per_second"].values())
                + " images/s",
            ],
            ["`prepare` on the full dataset", f"{stages['prepare']['seconds']:.1f} s"],
            [
                "no-op `dvc repro`",
                "not measured (pipeline not up to date)" if noop is None else f"{noop:.2f} s",
            ],
            ["`dvc pull` of the raw data, fresh clone", f"{bench['fresh_pull_seconds']:.1f} s"],
            [
                "peak memory: " + " / ".join(stages),
                " / ".join(f"{cost['peak_memory_gb']:.2f}" for cost in stages.values()) + " GB",
            ],
        ],
    )


def anchor_block(root: Path) -> str:
    """The default train stage against the reference, from one `make bench-anchor` run
    (bench/anchor.json)."""
    if not (root / "bench/anchor.json").exists():
        return "Not measured yet: `make bench-anchor` writes `bench/anchor.json`.\n"
    anchor = read_json(root, "bench/anchor.json")
    ours, reference = anchor["ours"], anchor["reference"]
    rows = [
        [
            run["recipe"],
            percent(run["test_acc"]),
            f"{run['epochs']:g}",
            f"{run['train_pflop']:.3f}",
            f"**{run['train_seconds']:,.0f}**",
            f"{run['images_per_second']:,.0f}",
            f"{run['achieved_gflops']:.0f}",
            f"**{percent(run['share_of_peak'])}**",
        ]
        for run in (reference, ours)
    ]
    loop = anchor["ours_loop"]
    return (
        f"{anchor['machine']}, {anchor['date']}; peak matmul (4096²) fp32 "
        f"{anchor['peak_gflops_fp32']:.0f}, bf16 {anchor['peak_gflops_bf16']:.0f} GFLOP/s; both "
        f"trained in {ours['precision']}, one after the other:\n\n"
        + table(
            [
                "run",
                "test accuracy (6-view TTA)",
                "epochs",
                "PFLOP",
                "train s",
                "images/s",
                "GFLOP/s",
                f"share of the {ours['precision']} peak",
            ],
            rows,
        )
        + f"\nSeconds against the reference's: **{anchor['seconds_ratio']:.2f}x** at "
        f"{(ours['test_acc'] - reference['test_acc']) * 100:+.2f} points.\n\nThe default's "
        "training loop alone, validation aside, timed in the same run right before: "
        f"{rates_by_size(loop)}, **{percent(loop['share_of_peak'])}** of the {loop['precision']} "
        f"peak against the reference's {percent(reference['share_of_peak'])}.\n"
    )


BLOCKS = {
    "results": results_block,
    "classes": classes_block,
    "bench": bench_block,
    "anchor": anchor_block,
}


def render(readme: str, root: Path = Path(".")) -> str:
    """readme with every generated block rewritten from the files under root."""
    return BLOCK.sub(
        lambda match: match.group(1) + BLOCKS[match.group(2)](root) + match.group(3), readme
    )


def main() -> None:
    readme = README.read_text()
    README.write_text(render(readme))
    print(
        f"rewrote the generated blocks of {README}: "
        f"{', '.join(m.group(2) for m in BLOCK.finditer(readme))}"
    )


if __name__ == "__main__":
    main()
