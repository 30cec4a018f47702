"""The README's generated blocks, written from the committed results, so that every measured figure
it shows is one a file holds.

    python -m tools.readme       rewrite the generated blocks of README.md in place

A generated block sits between `<!-- generated: NAME -->` and `<!-- end: NAME -->`; everything
outside the blocks is prose, and holds no measured figure (tests/test_docs.py). tests/test_readme.py
fails when README.md differs from what this writes.
"""

import json
import re
from pathlib import Path

import yaml

from classifier.files import read_csv, read_history
from classifier.fit import fit_text
from classifier.params import load_params
from experiments.report import markdown_table, percent

README = Path("README.md")
BLOCK = re.compile(r"(<!-- generated: (\w+) -->\n).*?(<!-- end: \2 -->)", re.S)
TTA_NAMES = {"mirror_translate": "6-view TTA", "mirror": "mirror TTA", "none": "no TTA"}
# machine rates (GFLOP/s) at which the compute block says how long the train stage would take
EXAMPLE_RATES = (30, 100)


def read_json(root: Path, path: str) -> dict:
    return json.loads((root / path).read_text())


def duration(seconds: float) -> str:
    """Seconds as a person plans by: seconds, minutes, or hours and minutes."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60:02d} min"


def train_rate(trained: dict, timing: dict) -> float:
    """GFLOP/s of the committed train stage: its counted FLOPs over its seconds (validation in)."""
    return trained["train_pflop"] * 1e6 / timing["train_seconds"]


def flat(node, prefix: str = "") -> dict:
    """A nested mapping as {dotted key: value}."""
    if not isinstance(node, dict):
        return {prefix: node}
    return {
        key: value
        for name, child in node.items()
        for key, value in flat(child, f"{prefix}.{name}" if prefix else str(name)).items()
    }


def params_since_run(root: Path) -> list[str]:
    """The params keys the stages read whose value in params.yaml is not the one the committed run
    had (dvc.lock): changed, added or renamed since."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    locked = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    current = flat(load_params(root / "params.yaml"))
    ran = {}
    for stage in locked.values():
        ran.update(flat(stage.get("params", {}).get("params.yaml", {})))
    read = {section for stage in stages.values() for section in stage.get("params", [])}
    now = {key: value for key, value in current.items() if key.split(".")[0] in read}
    return sorted(key for key in ran.keys() | now.keys() if ran.get(key) != now.get(key))


# ------------------------------------------------------------ one function per block


def compute_block(root: Path) -> str:
    """What the train stage costs, and how long it takes at the committed run's rate and others."""
    trained = read_json(root, "metrics/train/metrics.json")
    timing = read_json(root, "metrics/timing.json")
    rate, pflop = train_rate(trained, timing), trained["train_pflop"]
    elsewhere = "; at ".join(
        f"{other} GFLOP/s, {duration(pflop * 1e6 / other)}" for other in EXAMPLE_RATES
    )
    return (
        f"The committed run's train stage computed **{pflop:.3f} PFLOP** ({trained['step']} "
        f"epochs) in {duration(timing['train_seconds'])}: **{rate:,.0f} GFLOP/s** "
        f"({timing['precision']} on {timing['device']}, validation included; "
        f"`metrics/train/metrics.json`, `metrics/timing.json`). At {elsewhere}.\n"
    )


def results_block(root: Path) -> str:
    evaluated = read_json(root, "metrics/evaluate.json")
    trained = read_json(root, "metrics/train/metrics.json")
    timing = read_json(root, "metrics/timing.json")
    history = read_history(root / "plots/train/history.csv")
    best_epoch = max(history, key=lambda row: row["val_acc"])["epoch"]
    params = load_params(root / "params.yaml")
    tta = TTA_NAMES[params["evaluate"]["tta"]]
    epochs = trained["step"]
    num_classes = len(read_csv(root / "plots/evaluate/classes.csv"))
    since = params_since_run(root)
    params_row = (
        "those of `params.yaml`"
        if not since
        else "not quite today's `params.yaml`, which has changed since in "
        + ", ".join(f"`{key}`" for key in since)
        + ": `dvc repro` trains today's"
    )
    return markdown_table(
        ["what", "value", "file"],
        [
            ["the run's params", params_row, "`dvc.lock`"],
            [
                f"test accuracy (the official test images, {tta})",
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
                f"training time and rate ({epochs} epochs, validation included, "
                f"{timing['precision']} on {timing['device']})",
                f"{timing['train_seconds']:,.0f} s, {train_rate(trained, timing):,.0f} GFLOP/s",
                "`metrics/timing.json`",
            ],
            [
                "fit",
                fit_text(history, num_classes, params),
                "`plots/train/history.csv`, `metrics/fit.json`",
            ],
        ],
    )


BLOCKS = {"compute": compute_block, "results": results_block}


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
