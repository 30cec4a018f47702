"""Stage evaluate: test loss and accuracy, confusion matrix and classification report on the test
split.

Outputs: metrics/evaluate.json (the headline numbers), plots/evaluate/classes.csv (precision,
recall, F1 and support per class), plots/evaluate/confusion.csv (one row per test image).
"""

import torch
from sklearn.metrics import classification_report, confusion_matrix

from classifier.data import load_split
from classifier.errors import UserError, run_main
from classifier.evaluation import class_report, loss_and_accuracy, predictor
from classifier.files import (
    CLASSES_CSV,
    CONFUSION_CSV,
    EVALUATE_METRICS,
    MODEL_FILE,
    confusion_rows,
    write_csv,
    write_json,
)
from classifier.models import load_checkpoint
from classifier.params import check_eval, load_params


def main() -> None:
    params = load_params()
    check_eval(params)
    model, checkpoint = load_checkpoint(MODEL_FILE)
    test_images, test_labels, class_names = load_split("test")
    if class_names != checkpoint["class_names"] or test_images.shape[1] != checkpoint["image_size"]:
        raise UserError(
            f"{MODEL_FILE} was trained on {checkpoint['image_size']}-pixel images of classes "
            f"{checkpoint['class_names']}; the test split has {test_images.shape[1]}-pixel "
            f"images of {class_names}; retrain it with `dvc repro train`"
        )

    logits = predictor(model, checkpoint, params).logits(
        torch.from_numpy(test_images), params["evaluate"]["tta"]
    )
    loss, accuracy = loss_and_accuracy(logits, torch.from_numpy(test_labels))
    predictions = logits.argmax(1).numpy()
    per_class, macro_f1 = class_report(test_labels, predictions, class_names)
    write_json(
        EVALUATE_METRICS,
        {
            "test_acc": round(accuracy, 5),
            "test_loss": round(loss, 5),
            "macro_f1": round(macro_f1, 5),
        },
    )
    write_csv(CLASSES_CSV, per_class)
    write_csv(
        CONFUSION_CSV, confusion_rows(test_labels.tolist(), predictions.tolist(), class_names)
    )

    print(f"test accuracy {accuracy:.4f}, loss {loss:.4f} on {len(test_labels)} images")
    print(confusion_matrix(test_labels, predictions))
    print(
        classification_report(
            test_labels,
            predictions,
            labels=range(len(class_names)),
            target_names=class_names,
            digits=4,
            zero_division=0,
        )
    )


if __name__ == "__main__":
    run_main(main)
