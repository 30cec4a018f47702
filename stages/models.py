"""The CNNs, built from params, and the checkpoint that carries one between stages."""

from pathlib import Path

import torch
from torch import nn


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """conv - pool - BN - ReLU - conv - BN - ReLU: pooling right after the first conv halves the cost of the rest."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class FastCNN(nn.Module):
    """The default model, after airbench: a fixed 2x2 whitening stem, three conv blocks, dropout, dense."""

    def __init__(self, num_classes: int, widths: list[int], dropout: float):
        super().__init__()
        self.whiten = nn.Conv2d(3, 24, kernel_size=2)
        self.whiten.weight.requires_grad_(False)  # set from the data by init_whitening, then kept fixed
        self.features = nn.Sequential(
            nn.ReLU(),
            conv_block(24, widths[0]),
            conv_block(widths[0], widths[1]),
            conv_block(widths[1], widths[2]),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(widths[2], num_classes, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.whiten(x)))


@torch.no_grad()
def init_whitening(layer: nn.Conv2d, images: torch.Tensor, eps: float = 5e-4) -> None:
    """Set a 2x2 conv to whiten the image patches (their eigenvectors, scaled to unit variance).

    Half the filters are the negatives of the other half, so the ReLU after it loses nothing.
    Whitened inputs make the first epochs far more effective, which matters on a short budget.
    """
    patches = images.unfold(2, 2, 1).unfold(3, 2, 1).transpose(1, 3).reshape(-1, 3 * 2 * 2).double()
    patches = patches - patches.mean(0)
    eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))
    filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).reshape(12, 3, 2, 2)
    filters = filters.flip(0)  # largest eigenvalue first
    layer.weight.copy_(torch.cat([filters, -filters]).to(layer.weight.dtype))
    layer.bias.zero_()


class SeedCNN(nn.Sequential):
    """The seed project's Keras-style CNN: two conv-conv-pool-dropout stages, then dense-dropout-dense."""

    def __init__(self, num_classes: int, widths: list[int], dense: int, dropout: float, image_size: int = 32):
        layers, in_channels = [], 3
        for width in widths:
            layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True),
                       nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2), nn.Dropout(dropout)]
            in_channels = width
        side = image_size // 2 ** len(widths)
        layers += [nn.Flatten(), nn.Linear(in_channels * side * side, dense), nn.ReLU(inplace=True),
                   nn.Dropout(2 * dropout), nn.Linear(dense, num_classes)]
        super().__init__(*layers)


def build_model(model_params: dict, num_classes: int, image_size: int) -> nn.Module:
    """The architecture that model_params['arch'] names, with the settings of its own section."""
    arch = model_params["arch"]
    settings = model_params[arch]
    if arch == "fast_cnn":
        return FastCNN(num_classes, **settings)
    return SeedCNN(num_classes, **settings, image_size=image_size)


# ----------------------------------------------------------------------------- checkpoint

def save_checkpoint(path: Path, model: nn.Module, model_params: dict, class_names: list[str],
                    mean: list[float], std: list[float], image_size: int) -> None:
    """Everything needed to rebuild the model and feed it: weights, architecture, classes, normalisation."""
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {"state_dict": model.state_dict(), "model_params": model_params, "class_names": class_names,
                  "mean": mean, "std": std, "image_size": image_size}
    tmp_path = path.with_suffix(".tmp")
    torch.save(checkpoint, tmp_path)
    tmp_path.replace(path)


def load_checkpoint(path: Path) -> tuple[nn.Module, dict]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(checkpoint["model_params"], len(checkpoint["class_names"]), checkpoint["image_size"])
    model.load_state_dict(checkpoint["state_dict"])
    return model, checkpoint
