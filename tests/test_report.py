"""The reports of the optimizer study and the ablation: tables, figure, and the committed reports
agree with their JSON."""

import json

import matplotlib.pyplot as plt
import pytest

from classifier.params import parse_params
from experiments.report import (
    ABLATION_JSON,
    ABLATION_MD,
    STUDY_JSON,
    STUDY_MD,
    ablation_report,
    comparison_table,
    plot_optimizer_curves,
    results_table,
    study_report,
    sweep_table,
)
from experiments.statistics import compare, summary_row
from experiments.sweep import new_choices
from tests.conftest import REPO
from tests.test_statistics import finished


def test_the_tables_show_mean_and_spread_and_say_which_differences_are_clear():
    runs = {
        "adam": {0: finished(0.80, gap=-0.02), 1: finished(0.82, gap=0.0)},
        "sgd": {0: {"status": "diverged"}, 1: {"status": "diverged"}},
    }
    rows = [
        summary_row("adam", {"lr": 0.002, "weight_decay": 0.0}, runs["adam"]),
        summary_row("sgd", {"lr": 1000.0, "weight_decay": 0.0005}, runs["sgd"]),
    ]
    lines = results_table(rows, target_val_acc=0.7).splitlines()
    assert lines[0].startswith(
        "| optimizer | lr | weight decay | test acc % (mean ± sd) | test loss | epochs to 70%"
    )
    assert (
        lines[2]
        == "| adam | 0.002 | 0 | 81.00 ± 1.41 | 0.900 ± 0.000 | 2.0 ± 0.0 | -1.0 ± 1.4 | 2 of 2 | "
        "10 |"
    )
    assert lines[3] == "| sgd | 1000 | 0.0005 | 2 of 2 diverged |" + "  |" * 5
    assert all(line.count("|") == lines[0].count("|") for line in lines)
    assert compare(rows, runs) == []  # nothing to compare adam with
    pairs = [
        {
            "better": "a",
            "worse": "b",
            "seeds": 3,
            "difference": 0.0117,
            "ci95": [0.0045, 0.0188],
            "clear": True,
        }
    ]
    assert "| a - b | +1.17 | +0.45 to +1.88 | yes |" in comparison_table(pairs)
    sweep = {
        "adam": {
            "lr": {
                "chosen": 0.002,
                "at_edge": False,
                "tried": {"0.0006": 0.5, "0.002": 0.6, "0.006": "diverged"},
            },
            "weight_decay": {
                "chosen": 0.0,
                "at_edge": False,
                "tried": {},
                "not_swept": "weight decay 0",
            },
        },
        "sgd": {
            "lr": {"chosen": 0.6, "at_edge": True, "tried": {"0.2": 0.5, "0.6": 0.55}},
            "weight_decay": {
                "chosen": 0.0005,
                "at_edge": False,
                "tried": {"0.00015": 0.52, "0.0005": 0.55, "0.0015": 0.54},
            },
        },
    }
    lines = sweep_table(sweep).splitlines()
    assert (
        lines[2]
        == "| adam | 0.0006: 0.500, **0.002: 0.600**, 0.006: diverged | weight decay 0: not swept |"
    )
    assert lines[3] == (
        "| sgd | 0.2: 0.500, **0.6: 0.550** (best at the edge after the last widening) | "
        "0.00015: 0.520, **0.0005: 0.550**, 0.0015: 0.540 |"
    )


def test_the_figure_shows_each_optimizer_mean_curve_with_a_band_and_whole_epochs():
    def run(accuracies):
        curve = [
            {"epoch": epoch + 1, "val_acc": acc, "val_loss": 1 - acc}
            for epoch, acc in enumerate(accuracies)
        ]
        return {"status": "ok", "curve": curve}

    figure = plot_optimizer_curves(
        {
            "adam": {"0": run([0.5, 0.7, 0.8]), "1": run([0.6, 0.7, 0.9])},
            "sgd": {
                "0": run([0.4, 0.5, 0.6]),
                "1": run([0.4, 0.6, 0.6]),
                "2": {"status": "diverged"},
            },
        }
    )
    accuracy_axis = figure.axes[0]
    assert [text.get_text() for text in accuracy_axis.get_legend().get_texts()] == [
        "adam (2 seeds)",
        "sgd (2 seeds)",
    ]
    assert list(accuracy_axis.lines[0].get_ydata()) == pytest.approx([0.55, 0.7, 0.85])
    assert len(accuracy_axis.collections) == 2  # one band per optimizer
    band = accuracy_axis.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() == pytest.approx(0.5) and band.max() == pytest.approx(0.9)
    assert all(tick == int(tick) for tick in accuracy_axis.get_xticks())
    plt.close(figure)


def test_the_committed_reports_are_what_their_json_gives():
    assert (REPO / STUDY_MD).read_text() == study_report(
        json.loads((REPO / STUDY_JSON).read_text())
    )
    assert (REPO / ABLATION_MD).read_text() == ablation_report(
        json.loads((REPO / ABLATION_JSON).read_text())
    )


def test_params_carry_what_the_committed_study_chose():
    """`dvc exp run -S optimizer=X` trains X with the lr and weight decay the study chose for it."""
    sweep = json.loads((REPO / STUDY_JSON).read_text())["sweep"]
    changes = new_choices(parse_params((REPO / "params.yaml").read_text()), sweep)
    assert not changes, f"params.yaml lacks what {STUDY_JSON} chose: {'; '.join(changes)}"
