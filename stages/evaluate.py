"""Stage evaluate: test loss and accuracy, confusion matrix and classification report on the test split.

Outputs: metrics/evaluate.json, metrics/classes.json, plots/evaluate/confusion.csv.
"""

import torch
from sklearn.metrics import classification_report, confusion_matrix

from stages.data import load_split
from stages.models import load_checkpoint
from stages.outputs import (CLASS_METRICS, CONFUSION_CSV, EVALUATE_METRICS, MODEL_FILE, write_csv,
                            write_json)
from stages.params import StageError, check_eval, load_params, run_stage
from stages.training import loss_and_accuracy, predict, resolve_precision, setup_torch, stats_tensors


def report(labels, predictions, class_names: list[str]) -> dict:
    """scikit-learn's classification report, rounded, keyed by class name and by average."""
    full = classification_report(labels, predictions, labels=range(len(class_names)), target_names=class_names,
                                 output_dict=True, zero_division=0)
    return {name: {key: round(value, 5) for key, value in row.items()} for name, row in full.items()
            if isinstance(row, dict)}


def main() -> None:
    params = load_params()
    check_eval(params)
    train_params = params["train"]
    device = setup_torch(params["seed"], train_params["device"])
    if not MODEL_FILE.exists():
        raise StageError(f"{MODEL_FILE} not found; run the train stage first (dvc repro train)")
    model, checkpoint = load_checkpoint(MODEL_FILE)
    model = model.to(device, memory_format=torch.channels_last)
    test_images, test_labels, class_names = load_split("test")
    if class_names != checkpoint["class_names"]:
        raise StageError(f"{MODEL_FILE} was trained on classes {checkpoint['class_names']}, the test split has "
                         f"{class_names}; re-run the pipeline (dvc repro)")
    test_labels = torch.from_numpy(test_labels)

    mean, std = stats_tensors(checkpoint["mean"], checkpoint["std"], device)
    precision = resolve_precision(train_params["precision"], device)
    logits = predict(model, torch.from_numpy(test_images), mean, std, device, train_params["batch_size"], precision,
                     tta=params["evaluate"]["tta"])
    loss, accuracy = loss_and_accuracy(logits, test_labels)
    predictions = logits.argmax(1).numpy()
    per_class = report(test_labels.numpy(), predictions, class_names)

    metrics = {"accuracy": round(accuracy, 5), "loss": round(loss, 5), "test_images": len(test_labels)}
    for average in ("macro avg", "weighted avg"):
        for key in ("precision", "recall", "f1-score"):
            metrics[f"{average.split()[0]}_{key.replace('-score', '')}"] = per_class[average][key]
    write_json(EVALUATE_METRICS, metrics)
    write_json(CLASS_METRICS, {name: per_class[name] for name in class_names})
    write_csv(CONFUSION_CSV, [{"actual": class_names[a], "predicted": class_names[p]}
                              for a, p in zip(test_labels.tolist(), predictions.tolist())])

    print(f"test accuracy {accuracy:.4f}, loss {loss:.4f} on {len(test_labels)} images")
    print(confusion_matrix(test_labels.numpy(), predictions))
    print(classification_report(test_labels.numpy(), predictions, labels=range(len(class_names)),
                                target_names=class_names, digits=4, zero_division=0))


if __name__ == "__main__":
    run_stage(main)
