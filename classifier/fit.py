"""The fit diagnosis: over-fitting, under-fitting or a good fit, from the training history and params."""

from pathlib import Path

from classifier.outputs import HISTORY_CSV, read_csv


def diagnose_fit(history: list[dict], overfit_gap: float, underfit_accuracy: float) -> dict:
    """overfit, underfit or good, the numbers behind the verdict, and the evidence in words."""
    final = history[-1]
    best = min(history, key=lambda row: row["val_loss"])
    gap = final["train_acc"] - final["val_acc"]
    val_loss_rise = final["val_loss"] - best["val_loss"]
    gap_text = (f"train accuracy {final['train_acc']:.3f} against validation {final['val_acc']:.3f} at the last "
                f"epoch, a gap of {gap:+.3f} (threshold {overfit_gap})")
    if val_loss_rise > 0:
        loss_text = f"validation loss was lowest at epoch {best['epoch']} and rose {val_loss_rise:.3f} after it"
    else:
        loss_text = "validation loss was still falling at the last epoch"
    if gap > overfit_gap or val_loss_rise > 0.05 * best["val_loss"]:
        verdict = "overfit"
        advice = ("stop earlier or regularise more" if val_loss_rise > 0
                  else "the model still improves on unseen data, so regularise more rather than stop earlier")
    elif final["train_acc"] < underfit_accuracy:
        verdict = "underfit"
        advice = f"train accuracy is below {underfit_accuracy}: train longer or use a bigger model"
    else:
        verdict = "good"
        advice = "train and validation agree"
    return {"verdict": verdict, "train_val_gap": round(gap, 5), "val_loss_rise": round(val_loss_rise, 5),
            "best_val_loss_epoch": best["epoch"], "evidence": f"{gap_text}; {loss_text}; {advice}"}


VERDICT_WORDS = {"overfit": "over-fitting", "underfit": "under-fitting", "good": "a good fit"}


def fit_text(history: list[dict], params: dict) -> str:
    """The fit diagnosis as one line of Markdown: the verdict in bold, then its evidence."""
    fit = diagnose_fit(history, params["plot"]["overfit_gap"], params["plot"]["underfit_accuracy"])
    return f"**{VERDICT_WORDS[fit['verdict']]}**: {fit['evidence']}"


def read_history(path: Path = HISTORY_CSV) -> list[dict]:
    return parse_history(read_csv(path))


def parse_history(rows: list[dict]) -> list[dict]:
    """history.csv's rows with numbers for values, the epoch an integer."""
    return [{key: int(value) if key == "epoch" else float(value) for key, value in row.items()} for row in rows]
