"""README.md and docs/: a front page within its limits, links that resolve, and no measured figure
typed by hand.

A measured figure (an accuracy, a loss, seconds, PFLOP, a rate) is shown only inside a generated
block, `<!-- generated: NAME -->` ... `<!-- end: NAME -->`, which tools/readme.py writes from the
files that hold it (tests/test_readme.py), or in a report under reports/ that the measuring command
writes whole (tests/test_report.py). Prose describes, and says which file holds the number.
"""

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tools.readme import BLOCK, render

README = REPO / "README.md"
DOCS = sorted((REPO / "docs").glob("*.md"))
PAGES = [README, *DOCS]
LINKED = [*PAGES, REPO / "CHANGELOG.md"]
MAX_LINES, MAX_BYTES, MAX_WIDTH = 150, 12_000, 120

NUMBER = r"(?<![\w.])\d+(?:[.,]\d+)*"
# What a measurement looks like in prose. Each pattern needs a number, so settings spelled as keys
# (`train.epochs: 12`) and counts (40,000 images, 3 seeds) pass.
MEASURED = {
    "a percentage": rf"{NUMBER}\s?%",
    "a duration": rf"{NUMBER}\s?(?:ms|s|sec|seconds?|min|mins|minutes?|h|hours?)\b",
    "a duration in words": r"\b(?:one|two|three|four|five|six|seven|eight|nine|ten|twenty|thirty|"
    r"forty|fifty|sixty|ninety|a few|several|half an?)(?:\s+and\s+a\s+half)?\s+"
    r"(?:seconds|minutes?|hours?)\b",
    "a FLOP count or rate": rf"{NUMBER}\s?(?:[KMGTP]FLOPS?\b|[KMGTP]FLOP/s)",
    "a throughput": rf"{NUMBER}\s?(?:images?|img|it|steps?)(?:/s\b|\s+(?:a|per)\s+second)",
    "a memory size": rf"{NUMBER}\s?[KMGT]i?B\b",
    "points of accuracy": rf"{NUMBER}\s?(?:percentage\s)?points\b",
    "a speed-up": r"(?<![\w.])\d+\.\d+\s?[x×](?!\w)",
    "a metric with three or more decimals": r"(?<![\w.])0\.\d{3,}",
    "an accuracy, loss or F1 with its value": r"\b(?:acc|accuracy|loss|F1)\b\W{0,3}"
    r"(?:of\s|=\s?|:\s?|is\s)?\d+\.\d+",
    "a date (history belongs in CHANGELOG.md)": r"\b20\d\d-\d\d-\d\d\b",
}
# Settings, not measurements, that look like one: each must be a value params.yaml sets, which
# test_the_allowed_figures_are_settings_params_yaml_holds checks.
ALLOWED = {
    "0.1111": "model.fast_cnn.output_scale (1/9)",
    "0.00133": "optimizers.nesterov.weight_decay and optimizers.muon.others.weight_decay",
    "0.0005": "the weight decay of optimizers.sgd, adam and rmsprop",
    "0.625": "train.low_res_scale",
}


def outside_blocks(text: str) -> str:
    """The text with every generated block's contents blanked out, line numbers kept."""
    return BLOCK.sub(lambda m: m.group(1) + "\n" * m.group(0).count("\n", len(m.group(1))), text)


def measured_figures(text: str) -> list[str]:
    """'line N: kind: the text' for every measured figure outside the generated blocks."""
    found = []
    for number, line in enumerate(outside_blocks(text).splitlines(), start=1):
        for kind, pattern in MEASURED.items():
            for match in re.finditer(pattern, line, re.I):
                if match.group(0).strip() not in ALLOWED:
                    found.append(f"line {number}: {kind}: {match.group(0)!r} in {line.strip()!r}")
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda path: path.relative_to(REPO).as_posix())
def test_no_measured_figure_is_typed_by_hand(page):
    found = measured_figures(page.read_text())
    assert not found, (
        f"{page.relative_to(REPO)} holds measured figures outside a generated block; describe "
        "instead, point at the file or report that holds them, or generate them "
        "(tools/readme.py):\n" + "\n".join(found)
    )


@pytest.mark.parametrize(
    "text",
    [
        "test accuracy 89.82% on the test images",
        "the train stage took 541 s",
        "about 9 minutes on this machine",
        "about two and a half minutes",
        "0.164 PFLOP of training",
        "the loop ran at 303 GFLOP/s",
        "1,921 images/s",
        "164 MFLOP per image",
        "a test loss of 0.4983",
        "accuracy 0.89 at the last epoch",
        "peak memory 2.21 GB",
        "0.56x the reference's seconds",
        "Muon wins by 0.96 points",
        "measured on 2026-12-02",
        "```\nmain    0.8935   0.51506\n```",
    ],
)
def test_the_check_finds_a_figure_typed_by_hand(text):
    assert measured_figures(text)


def test_the_check_leaves_settings_counts_and_generated_blocks_alone():
    text = (
        "`train.epochs: 12`, batches of `train.batch_size: 512`, 40,000 training images, 3 seeds,\n"
        "2x2 patches, 3x3 convs, 32×32 pixels, Python 3.11, `output_scale: 0.1111`, 5 steps\n"
        "<!-- generated: results -->\n| test accuracy | **89.82%** | 541 s |\n"
        "<!-- end: results -->\n"
    )
    assert measured_figures(text) == []


def test_the_allowed_figures_are_settings_params_yaml_holds():
    def values(node):
        if isinstance(node, dict):
            for value in node.values():
                yield from values(value)
        elif isinstance(node, list):
            for value in node:
                yield from values(value)
        else:
            yield node

    settings = {str(value) for value in values(yaml.safe_load((REPO / "params.yaml").read_text()))}
    assert set(ALLOWED) <= settings


def test_the_readme_is_a_front_page():
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_LINES, f"README.md: more than {MAX_LINES} lines"
    assert len(text.encode()) <= MAX_BYTES, f"README.md: more than {MAX_BYTES} bytes"
    prose = [line for line in outside_blocks(text).splitlines() if not line.startswith("|")]
    assert all(len(line) <= MAX_WIDTH for line in prose), (
        f"README.md: lines over {MAX_WIDTH} characters outside the tables"
    )


def test_the_first_screen_shows_the_commands_the_results_and_an_experiment():
    first_screen = "\n".join(README.read_text().splitlines()[:60])
    for shown in (
        "make pipeline",
        "make test",
        "<!-- end: results -->",
        "dvc exp run -S",
        "dvc exp show",
        "dvc metrics diff",
        "dvc plots diff",
        "make review",
    ):
        assert shown in first_screen, f"the first 60 lines of README.md lack {shown!r}"


def anchors(page: Path) -> set[str]:
    """The anchors GitHub makes of a Markdown page's headings."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", page.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def links(page: Path) -> list[str]:
    """The relative link targets of a Markdown page (web addresses left out)."""
    targets = re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", page.read_text())
    return [target for target in targets if not re.match(r"[a-z][a-z+.-]*:", target)]


@pytest.mark.parametrize("page", LINKED, ids=lambda path: path.relative_to(REPO).as_posix())
def test_every_relative_link_resolves(page):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        name = resolved.relative_to(REPO).as_posix() if resolved.is_relative_to(REPO) else path
        if not resolved.exists():
            broken.append(f"{name}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target}: no heading makes the anchor #{anchor}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


@pytest.mark.parametrize("page", DOCS, ids=lambda path: path.relative_to(REPO).as_posix())
def test_generated_blocks_in_docs_match_their_files(page):
    text = page.read_text()
    assert render(text, REPO) == text, f"{page.relative_to(REPO)}: run `python -m tools.readme`"
