"""The fit diagnosis: evaluation disagreeing with training, over-fitting, under-fitting or a good
fit, from the training history and params."""

# Fewer validation images than this in an epoch tell nothing either way: on 6 images of 3 classes,
# a model right half the time scores 2 or fewer (near chance) in one epoch of three.
MIN_VAL_IMAGES = 100


def disagreement(history: list[dict], num_classes: int) -> str | None:
    """Why evaluation seems to disagree with training, or None: validation accuracy near chance
    while training accuracy is well above it, or a validation loss far above every training loss,
    in an epoch that validated on at least MIN_VAL_IMAGES images.

    Over-fitting does not look like this; a model that computes something else in evaluation mode
    (batch norm's running statistics, say) or validation images prepared otherwise than the training
    images do.
    """
    chance = 1 / num_classes

    def lift(accuracy: float) -> float:  # the share of the way from chance to every image right
        return (accuracy - chance) / (1 - chance)

    highest_train_loss = max(row["train_loss"] for row in history)
    for row in history:
        if row.get("val_images", MIN_VAL_IMAGES) < MIN_VAL_IMAGES:
            continue
        if lift(row["train_acc"]) >= 0.3 and lift(row["val_acc"]) < 0.1:
            return (
                f"at epoch {row['epoch']} validation accuracy was {row['val_acc']:.3f}, near "
                f"chance ({chance:.3f}), while training accuracy was {row['train_acc']:.3f}"
            )
        if row["val_loss"] > 3 * highest_train_loss:
            return (
                f"at epoch {row['epoch']} validation loss was {row['val_loss']:.4g}, over 3 "
                f"times the highest training loss ({highest_train_loss:.4g})"
            )
    return None


DISAGREEMENT_ADVICE = (
    "unless the training images are few enough to be learned by heart, check what differs "
    "between training and evaluation: batch norm's running statistics (model.eval()), how the "
    "validation images are read and normalised, and the split's labels"
)


def diagnose_fit(
    history: list[dict], num_classes: int, overfit_gap: float, underfit_accuracy: float
) -> dict:
    """mismatch, overfit, underfit or good, the numbers behind the verdict, and the evidence in
    words."""
    final = history[-1]
    best = min(history, key=lambda row: row["val_loss"])
    gap = final["train_acc"] - final["val_acc"]
    val_loss_rise = final["val_loss"] - best["val_loss"]
    numbers = {
        "train_val_gap": round(gap, 5),
        "val_loss_rise": round(val_loss_rise, 5),
        "best_val_loss_epoch": best["epoch"],
    }
    disagrees = disagreement(history, num_classes)
    if disagrees:
        return {"verdict": "mismatch", **numbers, "evidence": f"{disagrees}; {DISAGREEMENT_ADVICE}"}
    gap_text = (
        f"train accuracy {final['train_acc']:.3f} against validation {final['val_acc']:.3f} at "
        f"the last epoch, a gap of {gap:+.3f} (threshold {overfit_gap})"
    )
    if val_loss_rise > 0:
        loss_text = (
            f"validation loss was lowest at epoch {best['epoch']} and rose {val_loss_rise:.3f} "
            "after it"
        )
    else:
        loss_text = "validation loss was still falling at the last epoch"
    if gap > overfit_gap or val_loss_rise > 0.05 * best["val_loss"]:
        verdict = "overfit"
        advice = (
            "stop earlier or regularise more"
            if val_loss_rise > 0
            else "the model still improves on unseen data, so regularise more rather than stop "
            "earlier"
        )
    elif final["train_acc"] < underfit_accuracy:
        verdict = "underfit"
        advice = f"train accuracy is below {underfit_accuracy}: train longer or use a bigger model"
    else:
        verdict = "good"
        advice = "train and validation agree"
    return {"verdict": verdict, **numbers, "evidence": f"{gap_text}; {loss_text}; {advice}"}


VERDICT_WORDS = {
    "mismatch": "evaluation disagrees with training",
    "overfit": "over-fitting",
    "underfit": "under-fitting",
    "good": "a good fit",
}


def fit_text(history: list[dict], num_classes: int, params: dict) -> str:
    """The fit diagnosis as one line of Markdown: the verdict in bold, then its evidence."""
    fit = diagnose_fit(
        history, num_classes, params["plot"]["overfit_gap"], params["plot"]["underfit_accuracy"]
    )
    return f"**{VERDICT_WORDS[fit['verdict']]}**: {fit['evidence']}"
