"""Stage evaluate: test loss and accuracy, confusion matrix and classification report on the test split.

Outputs: metrics/evaluate.json (the headline numbers), plots/evaluate/classes.csv (precision, recall, F1 and
support per class), plots/evaluate/confusion.csv (one row per test image).
"""

import torch
from sklearn.metrics import classification_report, confusion_matrix

from stages.data import load_split
from stages.models import load_checkpoint
from stages.outputs import CLASSES_CSV, CONFUSION_CSV, EVALUATE_METRICS, MODEL_FILE, write_csv, write_json
from stages.params import StageError, check_eval, load_params, run_stage
from stages.training import loss_and_accuracy, predict, resolve_precision, setup_torch, stats_tensors


def class_report(labels, predictions, class_names: list[str]) -> tuple[list[dict], float]:
    """scikit-learn's classification report, one rounded row per class, and its macro-averaged F1."""
    full = classification_report(labels, predictions, labels=range(len(class_names)), target_names=class_names,
                                 output_dict=True, zero_division=0)
    rows = [{"class": name, "precision": round(full[name]["precision"], 5), "recall": round(full[name]["recall"], 5),
             "f1": round(full[name]["f1-score"], 5), "support": int(full[name]["support"])} for name in class_names]
    return rows, full["macro avg"]["f1-score"]


def main() -> None:
    params = load_params()
    check_eval(params)
    train_params = params["train"]
    device = setup_torch(params["seed"], train_params["device"])
    model, checkpoint = load_checkpoint(MODEL_FILE)
    model = model.to(device, memory_format=torch.channels_last)
    test_images, test_labels, class_names = load_split("test")
    if class_names != checkpoint["class_names"] or test_images.shape[1] != checkpoint["image_size"]:
        raise StageError(f"{MODEL_FILE} was trained on {checkpoint['image_size']}-pixel images of classes "
                         f"{checkpoint['class_names']}; the test split has {test_images.shape[1]}-pixel images of "
                         f"{class_names}; retrain it with `dvc repro train`")
    test_labels = torch.from_numpy(test_labels)

    mean, std = stats_tensors(checkpoint["mean"], checkpoint["std"], device)
    precision = resolve_precision(train_params["precision"], device)
    logits = predict(model, torch.from_numpy(test_images), mean, std, device, train_params["batch_size"], precision,
                     tta=params["evaluate"]["tta"])
    loss, accuracy = loss_and_accuracy(logits, test_labels)
    predictions = logits.argmax(1).numpy()
    per_class, macro_f1 = class_report(test_labels.numpy(), predictions, class_names)

    write_json(EVALUATE_METRICS, {"test_acc": round(accuracy, 5), "test_loss": round(loss, 5),
                                  "macro_f1": round(macro_f1, 5)})
    write_csv(CLASSES_CSV, per_class)
    write_csv(CONFUSION_CSV, [{"actual": class_names[a], "predicted": class_names[p]}
                              for a, p in zip(test_labels.tolist(), predictions.tolist())])

    print(f"test accuracy {accuracy:.4f}, loss {loss:.4f} on {len(test_labels)} images")
    print(confusion_matrix(test_labels.numpy(), predictions))
    print(classification_report(test_labels.numpy(), predictions, labels=range(len(class_names)),
                                target_names=class_names, digits=4, zero_division=0))


if __name__ == "__main__":
    run_stage(main)
