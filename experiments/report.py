"""The reports of the optimizer study and the ablation, Markdown written whole from their JSON, and
the study's figure.

    python -m experiments.report    rewrite the reports (and the study's figure) from their JSON

The study and the ablation write their report this way after they run; tests/test_report.py fails
when a committed report differs from what its JSON gives.
"""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from classifier.errors import run_main  # noqa: E402
from classifier.files import save_figure, write_text  # noqa: E402

STUDY_JSON, STUDY_MD = Path("reports/optimizers.json"), Path("reports/optimizers.md")
STUDY_PNG = Path("plots/optimizers/curves.png")
ABLATION_JSON, ABLATION_MD = Path("reports/ablation.json"), Path("reports/ablation.md")
TTA_NAMES = {"mirror_translate": "6-view TTA", "mirror": "mirror TTA", "none": "no TTA"}


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def percent(value: float) -> str:
    return f"{value * 100:.2f}%"


# ------------------------------------------------------------ the optimizer study


def mean_std(row: dict, key: str, digits: int, scale: float = 1) -> str:
    value = row[key]
    return f"{value['mean'] * scale:.{digits}f} ± {value['std'] * scale:.{digits}f}"


def results_cells(row: dict) -> list:
    """One optimizer's row of the results table."""
    lr = f"{row['lr']:g}" if row["lr"] is not None else "none (every lr diverged)"
    weight_decay = (
        f"{row['weight_decay']:g}" if row["weight_decay"] is not None else "the optimizer's default"
    )
    if not row["ok"]:
        return [
            row["optimizer"],
            lr,
            weight_decay,
            f"{row['diverged']} of {row['seeds']} diverged",
        ] + [""] * 5
    reached = row["epochs_to_target"]
    if not reached["reached"]:
        to_target = "not reached"
    else:
        to_target = mean_std(row, "epochs_to_target", 1)
        if reached["reached"] != row["ok"]:
            to_target += f" ({reached['reached']} of {row['ok']} runs)"
    return [
        row["optimizer"],
        lr,
        weight_decay,
        mean_std(row, "test_acc", 2, 100),
        mean_std(row, "test_loss", 3),
        to_target,
        mean_std(row, "train_val_gap", 1, 100),
        f"{row['ok']} of {row['seeds']}",
        f"{row['train_seconds']['mean']:.0f}",
    ]


def results_table(rows: list[dict], target_val_acc: float) -> str:
    header = [
        "optimizer",
        "lr",
        "weight decay",
        "test acc % (mean ± sd)",
        "test loss",
        f"epochs to {target_val_acc:.0%} val",
        "train - val gap (points)",
        "runs ok",
        "train s",
    ]
    ordered = sorted(rows, key=lambda row: -row["test_acc"]["mean"] if row["ok"] else 1)
    return markdown_table(header, [results_cells(row) for row in ordered])


def comparison_table(comparisons: list[dict]) -> str:
    rows = []
    for pair in comparisons:
        name = f"{pair['better']} - {pair['worse']}"
        if pair["difference"] is None:
            rows.append([name, "fewer than 2 common seeds", "", ""])
            continue
        low, high = (100 * bound for bound in pair["ci95"])
        rows.append(
            [
                name,
                f"{100 * pair['difference']:+.2f}",
                f"{low:+.2f} to {high:+.2f}",
                "yes" if pair["clear"] else "no",
            ]
        )
    return markdown_table(
        [
            "comparison",
            "test acc difference (points, mean over seeds)",
            "95% confidence interval",
            "larger than the seed-to-seed spread?",
        ],
        rows,
    )


def sweep_cell(result: dict) -> str:
    """One sweep of one optimizer: the validation accuracy at each value tried, the chosen one in
    bold."""
    if "not_swept" in result:
        return f"{result['not_swept']}: not swept"
    cells = []
    for value, score in result["tried"].items():
        cell = f"{float(value):g}: " + (score if isinstance(score, str) else f"{score:.3f}")
        cells.append(f"**{cell}**" if float(value) == result["chosen"] else cell)
    return ", ".join(cells) + (
        " (best at the edge after the last widening)" if result["at_edge"] else ""
    )


def sweep_table(sweep: dict[str, dict]) -> str:
    rows = [
        [optimizer, sweep_cell(result["lr"]), sweep_cell(result["weight_decay"])]
        for optimizer, result in sweep.items()
    ]
    return markdown_table(
        [
            "optimizer",
            "validation accuracy at each lr tried, at its own weight decay (the chosen one in "
            "bold)",
            "validation accuracy at each weight decay tried, at the chosen lr",
        ],
        rows,
    )


def study_report(study: dict) -> str:
    """reports/optimizers.md: what was compared, and the three tables."""
    method = study["method"]
    changes = ", ".join(f"`{key}: {value}`" for key, value in method["changes"].items())
    return (
        "# Optimizer study\n\nWritten by `make study` (`experiments/study.py`) from "
        f"`{STUDY_JSON}`. Every optimizer trains the default model on the same data at the "
        f"study's budget ({changes}), its lr and weight decay chosen on validation accuracy "
        f"(seed {method['seeds'][0]}), then once per seed "
        f"({', '.join(map(str, method['seeds']))}); test accuracy only reports.\n\n## "
        f"Results\n\n{results_table(study['rows'], method['target_val_acc'])}\n## Which "
        f"differences are larger than the noise\n\n{comparison_table(study['comparisons'])}\n## "
        f"The sweeps\n\n{sweep_table(study['sweep'])}\n![validation curves of each "
        f"optimizer](../{STUDY_PNG})\n"
    )


def plot_optimizer_curves(runs: dict[str, dict[str, dict]]):
    """Each optimizer's mean validation accuracy and loss over its seeds, with a band from lowest to
    highest."""
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for optimizer, by_seed in runs.items():
        curves = [run["curve"] for run in by_seed.values() if run["status"] == "ok"]
        if not curves:
            continue
        epochs = [row["epoch"] for row in curves[0]]
        for axis, metric in zip(axes, ("val_acc", "val_loss")):
            values = np.array([[row[metric] for row in curve] for curve in curves])
            (line,) = axis.plot(
                epochs, values.mean(axis=0), "o-", label=f"{optimizer} ({len(curves)} seeds)"
            )
            axis.fill_between(
                epochs, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2
            )
    for axis, label in zip(axes, ("validation accuracy", "validation loss")):
        axis.set(xlabel="epoch", ylabel=label)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(
        "Optimizer study: mean validation curves over seeds (band: lowest to highest seed)"
    )
    return figure


def write_study_report() -> None:
    study = json.loads(STUDY_JSON.read_text())
    write_text(STUDY_MD, study_report(study))
    figure = plot_optimizer_curves(study["runs"])
    save_figure(figure, STUDY_PNG)
    plt.close(figure)


# ------------------------------------------------------------ the ablation


def change_text(changes: dict) -> str:
    return ", ".join(f"`{key}: {json.dumps(value)}`" for key, value in changes.items()) or "none"


def ablation_report(ablation: dict) -> str:
    """reports/ablation.md: each training run against the reference, and the test-time views."""
    reference = next(row for row in ablation["runs"] if row["name"] == "reference")
    rows = []
    for row in ablation["runs"]:
        if row["status"] != "ok":
            rows.append([row["name"], change_text(row["changes"]), row["status"], "", "", ""])
            continue
        delta = (
            "" if row is reference else f"{(row['test_acc'] - reference['test_acc']) * 100:+.2f}"
        )
        rows.append(
            [
                row["name"],
                change_text(row["changes"]),
                percent(row["test_acc"]),
                delta,
                f"{row['train_pflop']:.3f}",
                f"{row['train_seconds']:,.0f}",
            ]
        )
    tta = [
        [TTA_NAMES[row["tta"]], percent(row["test_acc"]), f"{row['seconds']:.0f}"]
        for row in ablation["tta"]
    ]
    return (
        "# Ablation\n\nWritten by `make ablation` (`experiments/ablation.py`) from "
        f"`{ABLATION_JSON}`. Every run is the default with the reference's changes "
        f"({change_text(ablation['reference'])}), then its own; one seed each, so a difference "
        "under the seed-to-seed spread (the `seed-1` row) is noise.\n\n"
        + markdown_table(
            ["run", "change from the reference", "test accuracy", "Δ points", "PFLOP", "train s"],
            rows,
        )
        + "\nTest-time augmentation, on the model committed when the ablation ran:\n\n"
        + markdown_table(["test-time views", "test accuracy", "evaluation s"], tta)
    )


def write_ablation_report() -> None:
    write_text(ABLATION_MD, ablation_report(json.loads(ABLATION_JSON.read_text())))


def main() -> None:
    write_study_report()
    write_ablation_report()
    print(f"rewrote {STUDY_MD}, {STUDY_PNG} and {ABLATION_MD} from their JSON")


if __name__ == "__main__":
    run_main(main)
