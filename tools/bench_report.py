"""reports/bench.md, written whole from every result file in bench/: one row per machine and
precision, so that figures from several machines sit side by side.

    python -m tools.bench_report     rewrite reports/bench.md (tools.bench does after each run)
"""

import json
from pathlib import Path

from experiments.report import markdown_table

BENCH_DIR = Path("bench")
REPORT = Path("reports/bench.md")


def results(mode: str, root: Path) -> list[tuple[str, dict]]:
    """(file name, contents) of bench/<mode>-*.json, oldest first."""
    found = [
        (path.name, json.loads(path.read_text())) for path in (root / BENCH_DIR).glob("*.json")
    ]
    found = [(name, result) for name, result in found if name.startswith(f"{mode}-")]
    return sorted(found, key=lambda item: (item[1]["date"], item[0]))


def which(name: str, result: dict) -> list[str]:
    """A row's first cells: the file, the date, the machine."""
    return [f"`{name}`", result["date"], result["machine"]]


def percent(share: float | None) -> str:
    return "–" if share is None else f"{share * 100:.0f}%"


def precision_of(result: dict) -> str:
    """The training precision (the first anchor files have it in their runs only)."""
    return result.get("precision") or result["ours"]["precision"]


def peak_cells(result: dict) -> list[str]:
    """The theoretical and the best measured peak at the result's precision; the old files (before
    the bound) have only a 4096² matmul's."""
    precision = precision_of(result)
    if "peaks" not in result:
        return ["–", f"{result[f'peak_gflops_{precision}']:.0f} (matmul 4096²)"]
    peaks = result["peaks"]
    best = peaks["measured"][precision]
    return [
        f"{peaks['theoretical_gflops'][precision]:.0f} ({peaks['clock_mhz']} MHz)",
        f"{best['gflops']:.0f} ({best['by']})",
    ]


def anchor_table(root: Path) -> str:
    rows = []
    for name, result in results("anchor", root):
        ours, reference = result["ours"], result["reference"]
        bound = "peaks" in result
        rows.append(
            [
                *which(name, result),
                precision_of(result),
                f"{ours['train_images']:,}" if "train_images" in ours else "all",
                *peak_cells(result),
                f"{reference['achieved_gflops']:.0f}",
                f"{ours['achieved_gflops']:.0f}",
                f"{result['ours_loop']['achieved_gflops']:.0f}",
                percent(ours["share_of_peak"] if bound else None),
                percent(reference["share_of_peak"] if bound else None),
                f"{result['seconds_ratio']:.2f}x",
                f"{result['projected_full_seconds_ratio']:.2f}x"
                if "projected_full_seconds_ratio" in result
                else "–",
                f"{ours['test_acc'] * 100:.2f}% / {reference['test_acc'] * 100:.2f}%",
            ]
        )
    return markdown_table(
        [
            "file",
            "date",
            "machine",
            "precision",
            "train images",
            "theoretical peak GFLOP/s",
            "best measured GFLOP/s",
            "reference GFLOP/s",
            "train stage GFLOP/s",
            "its loop GFLOP/s",
            "train stage, share of peak",
            "reference, share of peak",
            "seconds ratio",
            "projected, full data",
            "test accuracy, ours / reference",
        ],
        rows,
    )


def bench_table(root: Path) -> str:
    rows = []
    for name, result in results("results", root):
        sizes = "; ".join(
            f"{rates['side']}²: {rates['gflops']:.0f}" for rates in result["epoch_rates"].values()
        )
        stages = result["stages"]
        rows.append(
            [
                *which(name, result),
                result["precision"],
                *peak_cells(result),
                sizes,
                f"{result['achieved_gflops']:.0f}",
                percent(result["share_of_peak"] if "peaks" in result else None),
                f"{result['naive_images_per_second']:.0f}",
                " / ".join(
                    f"{rate:,.0f}" for rate in result["processes_images_per_second"].values()
                ),
                f"{stages['prepare']['seconds']:.1f}",
                "–"
                if result["noop_repro_seconds"] is None
                else f"{result['noop_repro_seconds']:.2f}",
                f"{result['fresh_pull_seconds']:.1f}",
                " / ".join(f"{cost['peak_memory_gb']:.2f}" for cost in stages.values()),
            ]
        )
    return markdown_table(
        [
            "file",
            "date",
            "machine",
            "precision",
            "theoretical peak GFLOP/s",
            "best measured GFLOP/s",
            "epochs GFLOP/s by image side",
            "default's mix GFLOP/s",
            "share of peak",
            "naive loop images/s",
            "1 / 2 processes images/s",
            "prepare s",
            "no-op repro s",
            "fresh pull s",
            "peak memory GB per stage",
        ],
        rows,
    )


def predict_table(root: Path) -> str:
    rows = [
        [
            *which(name, result),
            result["tta"],
            f"{result['predict']['images_per_second']:.0f}",
            f"{result['evaluate']['images_per_second']:.0f}",
        ]
        for name, result in results("predict", root)
    ]
    return markdown_table(
        ["file", "date", "machine", "TTA", "predict images/s", "evaluate images/s"], rows
    )


def gpu_table(root: Path) -> str:
    rows = [
        [
            *which(name, result),
            result["precision"],
            f"{result['peak_gflops_bf16']:.0f}",
            f"{result['train_pflop']:.3f}",
            f"{result['train_seconds']:.0f}",
            f"{result['achieved_gflops']:.0f}",
            percent(result["share_of_peak"]),
            f"{result['test_acc'] * 100:.2f}%",
        ]
        for name, result in results("gpu", root)
    ]
    if not rows:
        return "None yet: no GPU has been lent to a run of `make gpu-check`.\n"
    return markdown_table(
        [
            "file",
            "date",
            "GPU",
            "precision",
            "bf16 matmul GFLOP/s",
            "PFLOP",
            "train s",
            "GFLOP/s",
            "share of the matmul",
            "test accuracy",
        ],
        rows,
    )


def bench_report(root: Path = Path(".")) -> str:
    return "\n".join(
        [
            "# Speed: the benchmark's results\n",
            "Written by `python -m tools.bench_report` from `bench/*.json` (each file one run of "
            "`make bench`, `make bench-anchor` or `make bench-predict` on the machine it names); "
            "what each figure means: [docs/speed.md](../docs/speed.md). A share of peak is taken "
            "against the higher of the theoretical peak (cores x clock x FLOPs per cycle of the "
            "instruction set) and the best rate measured in the same run; the first files, "
            "measured before that bound existed, have only a 4096² matmul's rate.\n",
            "## The default against the reference (`make bench-anchor`)\n",
            anchor_table(root),
            "## The train stage's loop and the pipeline's overheads (`make bench`)\n",
            bench_table(root),
            "## Prediction (`make bench-predict`)\n",
            predict_table(root),
            "## On a GPU (`make gpu-check`)\n",
            gpu_table(root),
        ]
    )


def write_report(root: Path = Path(".")) -> None:
    (root / REPORT).write_text(bench_report(root))


if __name__ == "__main__":
    write_report()
    print(f"wrote {REPORT}")
