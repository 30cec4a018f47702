"""uint8 images to the normalised float batches the model takes: what training and inference share."""

import numpy as np
import torch


def scale_pixels(images: np.ndarray | torch.Tensor):
    """uint8 pixels in [0, 255] to floats in [0, 1]."""
    return images / 255.0


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 (N, H, W, C) images, in [0, 1] units."""
    pixels = scale_pixels(images.reshape(-1, images.shape[-1]).astype(np.float32))
    return pixels.mean(0).tolist(), pixels.std(0).tolist()


def stats_tensors(mean: list[float], std: list[float], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.tensor(mean, device=device).view(1, -1, 1, 1), torch.tensor(std, device=device).view(1, -1, 1, 1))


def to_input(images_u8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, C) to a normalised float (N, C, H, W) batch in channels-last memory order.

    NHWC uint8 is already channels-last, so permute() gives the layout oneDNN and cuDNN are fastest with.
    """
    x = scale_pixels(images_u8.to(device, non_blocking=True).permute(0, 3, 1, 2).float())
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)
