"""Stage plot: every figure for people, and the fit diagnosis.

Outputs: plots/data/samples.png (sample training images with their labels, and the shape of each
split), plots/train/curves.png, plots/evaluate/confusion.png, plots/evaluate/misclassified.png,
metrics/fit.json (the verdict alone: mismatch, overfit, underfit or good; the evidence is printed,
and classifier.fit gives it again for the README and the review report).
"""

import numpy as np

from classifier.data import load_split
from classifier.errors import UserError, run_main
from classifier.figures import (
    close,
    plot_confusion,
    plot_curves,
    plot_misclassified,
    plot_samples,
    split_shapes,
)
from classifier.files import (
    CONFUSION_CSV,
    CONFUSION_PNG,
    CURVES_PNG,
    FIT_METRICS,
    HISTORY_CSV,
    MISCLASSIFIED_PNG,
    SAMPLES_PNG,
    read_confusion,
    read_history,
    save_figure,
    write_json,
)
from classifier.fit import VERDICT_WORDS, diagnose_fit
from classifier.params import check_plot, load_params


def main() -> None:
    params = load_params()
    check_plot(params)
    for path in (HISTORY_CSV, CONFUSION_CSV):
        if not path.exists():
            raise UserError(
                f"{path} not found; run the train and evaluate stages first (dvc repro)"
            )
    history = read_history()
    splits = {name: load_split(name) for name in ("train", "val", "test")}
    test_images, test_labels, class_names = splits["test"]
    fit = diagnose_fit(
        history,
        len(class_names),
        params["plot"]["overfit_gap"],
        params["plot"]["underfit_accuracy"],
    )
    actual, predicted = map(np.array, read_confusion(class_names))
    if not np.array_equal(actual, test_labels):
        raise UserError(
            f"{CONFUSION_CSV} does not match the test split; re-run evaluate (dvc repro)"
        )

    seed = params["seed"]
    for figure, path in (
        (plot_samples(*splits["train"], seed, split_shapes(splits)), SAMPLES_PNG),
        (plot_curves(history, fit), CURVES_PNG),
        (plot_confusion(actual, predicted, class_names), CONFUSION_PNG),
        (plot_misclassified(test_images, actual, predicted, class_names, seed), MISCLASSIFIED_PNG),
    ):
        save_figure(figure, path)
        close(figure)
    # the gap is a training metric; the evidence is prose
    write_json(FIT_METRICS, {"verdict": fit["verdict"]})
    print(f"fit: {VERDICT_WORDS[fit['verdict']]}: {fit['evidence']}")


if __name__ == "__main__":
    run_main(main)
