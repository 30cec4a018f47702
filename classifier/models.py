"""The CNNs, built from params, and the checkpoint that carries one between stages."""

from pathlib import Path
from typing import BinaryIO

import torch
from torch import nn

from classifier.errors import UserError
from classifier.files import save_torch

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU}


def conv3x3(in_channels: int, out_channels: int, dirac_init: bool) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
    # the first in_channels filters pass their input through: the net starts near the identity
    if dirac_init:
        nn.init.dirac_(conv.weight.data[:in_channels])
    return conv


def batch_norm(channels: int, momentum: float, train_weight: bool) -> nn.BatchNorm2d:
    """Batch norm whose scale can be frozen at 1: only the bias then trains (with its own, larger
    lr)."""
    norm = nn.BatchNorm2d(channels, eps=1e-12, momentum=momentum)
    norm.weight.requires_grad_(train_weight)
    return norm


def conv_block(
    in_channels: int,
    out_channels: int,
    activation: type,
    batchnorm_momentum: float,
    batchnorm_weight: bool,
    dirac_init: bool,
) -> nn.Sequential:
    """conv - pool - BN - act - conv - BN - act: pooling right after the first conv leaves a quarter
    of the pixels to the rest of the block."""
    return nn.Sequential(
        conv3x3(in_channels, out_channels, dirac_init),
        nn.MaxPool2d(2),
        batch_norm(out_channels, batchnorm_momentum, batchnorm_weight),
        activation(),
        conv3x3(out_channels, out_channels, dirac_init),
        batch_norm(out_channels, batchnorm_momentum, batchnorm_weight),
        activation(),
    )


class FastCNN(nn.Module):
    """The default model, after airbench94: a fixed 2x2 whitening conv, three conv blocks, max pool,
    dropout, dense."""

    def __init__(
        self,
        num_classes: int,
        widths: list[int],
        activation: str,
        dropout: float,
        batchnorm_momentum: float,
        batchnorm_weight: bool,
        dirac_init: bool,
        output_scale: float,
    ):
        super().__init__()
        self.whiten = nn.Conv2d(3, 24, kernel_size=2)
        # set from the data by init_whitening, then kept fixed
        self.whiten.weight.requires_grad_(False)
        act = ACTIVATIONS[activation]
        block_settings = (act, batchnorm_momentum, batchnorm_weight, dirac_init)
        self.features = nn.Sequential(
            act(),
            conv_block(24, widths[0], *block_settings),
            conv_block(widths[0], widths[1], *block_settings),
            conv_block(widths[1], widths[2], *block_settings),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(widths[2], num_classes, bias=False)
        )
        self.output_scale = output_scale  # small logits at the start: a calmer first epoch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.whiten(x))) * self.output_scale


@torch.no_grad()
def init_whitening(layer: nn.Conv2d, images: torch.Tensor, eps: float = 5e-4) -> None:
    """Set a 2x2 conv to whiten the image patches (their eigenvectors, scaled to unit variance).

    Half the filters are the negatives of the other half, so the ReLU after it loses nothing.
    Whitened inputs make the first epochs far more effective, which matters on a short budget.

    Patches that span fewer than 12 directions (8 of 12 have no variance when the three channels are
    equal, as in a grayscale image) get the directions they do span repeated, largest first: a
    filter along a direction without variance makes a constant channel, whose bias reaches the loss
    only through the next conv's zero padding. There it drifted to tens within an epoch, faster than
    batch norm's running statistics follow, and evaluation saw other activations than training
    (chance-level validation while training accuracy climbed).
    """
    patches = images.unfold(2, 2, 1).unfold(3, 2, 1).transpose(1, 3).reshape(-1, 3 * 2 * 2).double()
    patches = patches - patches.mean(0)
    eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))
    # largest first
    filters = (eigenvectors.T / torch.sqrt(eigenvalues.clamp(min=0) + eps)[:, None]).flip(0)
    varies = eigenvalues.flip(0) >= eps / 100  # a variance under a hundredth of eps: none
    spanned = filters[varies] if varies.any() else filters
    filters = spanned[torch.arange(12) % len(spanned)].reshape(12, 3, 2, 2)
    layer.weight.copy_(torch.cat([filters, -filters]).to(layer.weight.dtype))
    layer.bias.zero_()


class SeedCNN(nn.Sequential):
    """The seed project's Keras-style CNN: two conv-conv-pool-dropout stages, then
    dense-dropout-dense."""

    def __init__(
        self, num_classes: int, widths: list[int], dense: int, dropout: float, image_size: int = 32
    ):
        layers, in_channels = [], 3
        for width in widths:
            layers += [
                nn.Conv2d(in_channels, width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
                nn.Dropout(dropout),
            ]
            in_channels = width
        side = image_size // 2 ** len(widths)
        layers += [
            nn.Flatten(),
            nn.Linear(in_channels * side * side, dense),
            nn.ReLU(inplace=True),
            nn.Dropout(2 * dropout),
            nn.Linear(dense, num_classes),
        ]
        super().__init__(*layers)


def build_model(model_params: dict, num_classes: int, image_size: int) -> nn.Module:
    """The architecture that model_params['arch'] names, with the settings of its own section."""
    arch = model_params["arch"]
    settings = model_params[arch]
    if arch == "fast_cnn":
        return FastCNN(num_classes, **settings)
    return SeedCNN(num_classes, **settings, image_size=image_size)


# ------------------------------------------------------------ checkpoint


def save_checkpoint(
    path: Path,
    model: nn.Module,
    model_params: dict,
    class_names: list[str],
    mean: list[float],
    std: list[float],
    image_size: int,
) -> None:
    """Everything needed to rebuild the model and feed it: weights, architecture, classes,
    normalisation."""
    save_torch(
        path,
        {
            "state_dict": model.state_dict(),
            "model_params": model_params,
            "class_names": class_names,
            "mean": mean,
            "std": std,
            "image_size": image_size,
        },
    )


CHECKPOINT_KEYS = {"state_dict", "model_params", "class_names", "mean", "std", "image_size"}


def load_checkpoint(path: Path | str, source: BinaryIO | None = None) -> tuple[nn.Module, dict]:
    """The model saved by save_checkpoint, from path or from source (an open file, then path only
    names it).

    weights_only: loading never runs code from the file.
    """
    retrain = "retrain it with `dvc repro train` (or fetch the committed one with `dvc pull`)"
    if source is None and not Path(path).exists():
        raise UserError(f"{path} not found; {retrain}")
    try:
        checkpoint = torch.load(source or path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - truncated, not a torch file, or holding objects we refuse
        raise UserError(
            f"{path} is not a readable checkpoint ({type(error).__name__}); {retrain}"
        ) from None
    if not isinstance(checkpoint, dict) or not CHECKPOINT_KEYS <= set(checkpoint):
        raise UserError(f"{path} is not a checkpoint of this project; {retrain}")
    try:
        model = build_model(
            checkpoint["model_params"], len(checkpoint["class_names"]), checkpoint["image_size"]
        )
        model.load_state_dict(checkpoint["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError):
        raise UserError(
            f"{path}: its weights do not fit the architecture it names; {retrain}"
        ) from None
    return model, checkpoint
