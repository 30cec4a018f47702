"""Scoring a model: logits with test-time views, loss and accuracy, the per-class report, and the
set-up that evaluate, predict and the ablation share to run a trained model."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from classifier.batches import scale_down, stats_tensors, to_input
from classifier.device import autocast, resolve_precision, setup_torch


@torch.no_grad()
def predict_logits(
    model,
    images,
    mean,
    std,
    device: torch.device,
    batch_size: int,
    precision: str,
    tta: str = "none",
    scale: float = 1.0,
) -> torch.Tensor:
    """Float logits for uint8 (N, H, W, C) images, averaged over test-time views of each image.

    scale < 1: the images scaled down to that share of their side first, as in the small-image
    epochs. tta: none | mirror (the image and its mirror) | mirror_translate (also both mirrored,
    shifted one pixel up-left and down-right: six views, the unshifted pair weighted as much as the
    four shifted ones).
    """
    model.eval()

    def mirrored(x):
        with autocast(device, precision):
            return (model(x).float() + model(x.flip(-1)).float()) / 2

    outputs = []
    for start in range(0, len(images), batch_size):
        x = scale_down(to_input(images[start : start + batch_size], mean, std, device), scale)
        if tta == "none":
            with autocast(device, precision):
                logits = model(x).float()
        elif tta == "mirror":
            logits = mirrored(x)
        else:
            height, width = x.shape[-2:]
            padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
            shifted = [padded[..., :height, :width], padded[..., 2:, 2:]]
            logits = mirrored(x) / 2 + sum(mirrored(view) for view in shifted) / 4
        outputs.append(logits.cpu())
    return torch.cat(outputs)


def loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    loss = F.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    return loss, accuracy


def class_report(labels, predictions, class_names: list[str]) -> tuple[list[dict], float]:
    """scikit-learn's classification report, one rounded row per class, and its macro-averaged
    F1."""
    # imported here: scikit-learn costs every stage that imports this module a second or two
    from sklearn.metrics import classification_report

    full = classification_report(
        labels,
        predictions,
        labels=range(len(class_names)),
        target_names=class_names,
        output_dict=True,
        zero_division=0,
    )
    rows = [
        {
            "class": name,
            "precision": round(full[name]["precision"], 5),
            "recall": round(full[name]["recall"], 5),
            "f1": round(full[name]["f1-score"], 5),
            "support": int(full[name]["support"]),
        }
        for name in class_names
    ]
    return rows, full["macro avg"]["f1-score"]


@dataclass
class Predictor:
    """A trained model ready to score uint8 images: on its device, in its precision, with its
    normalisation."""

    model: torch.nn.Module
    device: torch.device
    precision: str
    mean: torch.Tensor
    std: torch.Tensor
    batch_size: int

    def logits(self, images: torch.Tensor, tta: str) -> torch.Tensor:
        return predict_logits(
            self.model,
            images,
            self.mean,
            self.std,
            self.device,
            self.batch_size,
            self.precision,
            tta,
        )


def predictor(model: torch.nn.Module, checkpoint: dict, params: dict) -> Predictor:
    """A checkpoint's model, set up as params say: seed, device, precision and batch size."""
    device = setup_torch(params["seed"], params["compute"]["device"])
    mean, std = stats_tensors(checkpoint["mean"], checkpoint["std"], device)
    return Predictor(
        model.to(device, memory_format=torch.channels_last),
        device,
        resolve_precision(params["compute"]["precision"], device),
        mean,
        std,
        params["evaluate"]["batch_size"],
    )
