"""A review of two revisions for a pull request: what changed, and what it did to the results, in
Markdown.

    python -m experiments.review [OLD [NEW]] [--out review]   (make review OLD=main NEW=workspace)

OLD and NEW are Git revisions, experiment names or `workspace`; the defaults compare the workspace
with main. The params and metrics tables are DVC's own (`dvc params diff --md`, `dvc metrics diff
--md`), the figures come from `dvc plots diff`; only the fit diagnosis is worked out again, from
each side's history and params, as the plot stage works it out. Writes OUT/report.md, the figures of
both sides under OUT/figures/ and every chart, interactive, in OUT/charts/index.html.
"""

import argparse
import csv
import io
import json
import shutil
from pathlib import Path

from classifier.errors import run_main
from classifier.files import (
    CLASSES_CSV,
    CONFUSION_PNG,
    CURVES_PNG,
    HISTORY_CSV,
    parse_history,
    write_text,
)
from classifier.fit import fit_text
from classifier.params import PARAMS_FILE, parse_params
from experiments.gitdvc import dvc, read_at

FIGURES = {"learning curves": CURVES_PNG, "test confusion matrix": CONFUSION_PNG}


def fit_at(rev: str) -> str:
    """The fit diagnosis of a revision, from its training history and params, as the plot stage
    makes it."""
    history = parse_history(list(csv.DictReader(io.StringIO(read_at(rev, HISTORY_CSV)))))
    if not history:
        return "(no training history)"
    num_classes = len(list(csv.DictReader(io.StringIO(read_at(rev, CLASSES_CSV)))))
    return fit_text(history, num_classes, parse_params(read_at(rev, PARAMS_FILE)))


def figure_paths(old: str, new: str, out: Path) -> dict:
    """{(figure file, rev): path of that revision's copy}, from `dvc plots diff --json`."""
    targets = [str(path) for path in FIGURES.values()]
    plots = json.loads(
        dvc(
            "plots", "diff", old, new, "--json", "-o", str(out / "figures"), "--targets", *targets
        ).stdout
    )
    return {
        (name, rev): Path(item["url"]).relative_to(out.resolve())
        for name, items in plots["data"].items()
        for item in items
        if item.get("type") == "image"
        for rev in item["revisions"]
    }


def render(old: str, new: str, out: Path) -> str:
    params = dvc("params", "diff", old, new, "--md").stdout.strip() or "No params changed."
    metrics = dvc("metrics", "diff", old, new, "--md", "--all").stdout.strip() or "No metrics."
    figures = figure_paths(old, new, out)
    dvc("plots", "diff", old, new, "-o", str(out / "charts"))
    lines = [
        f"# Review: `{old}` → `{new}`",
        "",
        "## Params",
        "",
        params,
        "",
        "## Metrics",
        "",
        "The `Change` column is new minus old; `-` marks a value that did not change.",
        "",
        metrics,
        "",
        "## Fit",
        "",
    ]
    lines += [f"- `{rev}`: {fit_at(rev)}" for rev in (old, new)]
    lines += ["", "## Figures", "", f"| | `{old}` | `{new}` |", "| --- | --- | --- |"]
    for title, path in FIGURES.items():
        cells = [
            f"![{title}, {rev}]({figures[(str(path), rev)]})"
            if (str(path), rev) in figures
            else "missing"
            for rev in (old, new)
        ]
        lines.append(f"| {title} | {cells[0]} | {cells[1]} |")
    lines += [
        "",
        "Every chart, interactive (learning curves, learning rate, confusion matrices, F1 per "
        "class): [charts/index.html](charts/index.html).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "old", nargs="?", default="main", help="Git revision or experiment (default: main)"
    )
    parser.add_argument(
        "new",
        nargs="?",
        default="workspace",
        help="Git revision or experiment (default: workspace)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("review"), help="folder for the report (default: review)"
    )
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    report = args.out / "report.md"
    write_text(report, render(args.old, args.new, args.out))
    print(f"wrote {report}: {args.old} -> {args.new}")


if __name__ == "__main__":
    run_main(main)
