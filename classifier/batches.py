"""Batches: uint8 images to the normalised float batches the model takes (what training and
inference share), and the training batches' augmentation, on whole batches: alternating or random
flips, random shifts, cutout, and smaller images in the first epochs."""

import numpy as np
import torch


def scale_pixels(images: np.ndarray | torch.Tensor):
    """uint8 pixels in [0, 255] to floats in [0, 1]."""
    return images / 255.0


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 (N, H, W, C) images, in [0, 1] units."""
    pixels = scale_pixels(images.reshape(-1, images.shape[-1]).astype(np.float32))
    return pixels.mean(0).tolist(), pixels.std(0).tolist()


def stats_tensors(
    mean: list[float], std: list[float], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.tensor(mean, device=device).view(1, -1, 1, 1),
        torch.tensor(std, device=device).view(1, -1, 1, 1),
    )


def to_input(
    images_u8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, device: torch.device
) -> torch.Tensor:
    """uint8 (N, H, W, C) to a normalised float (N, C, H, W) batch in channels-last memory order.

    NHWC uint8 is already channels-last, so permute() gives the layout oneDNN and cuDNN are fastest
    with.
    """
    x = scale_pixels(images_u8.to(device, non_blocking=True).permute(0, 3, 1, 2).float())
    return ((x - mean) / std).contiguous(memory_format=torch.channels_last)


# ------------------------------------------------------------ augmentation


def flip_where(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror left-right the images of a (N, C, H, W) batch where mask (N,) is true."""
    return torch.where(mask.to(images.device)[:, None, None, None], images.flip(-1), images)


def translate(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Shift each image of a (N, C, H, W) batch by up to max_shift pixels, filling with reflection.

    Images are grouped by their shift, so this is (2 * max_shift + 1)^2 slicing operations per
    batch, not one per image.
    """
    if max_shift == 0:
        return images
    n, _, height, width = images.shape
    padded = torch.nn.functional.pad(images, (max_shift,) * 4, mode="reflect")
    shifts = torch.randint(0, 2 * max_shift + 1, (2, n), generator=generator)
    out = torch.empty_like(images)
    for dy in range(2 * max_shift + 1):
        for dx in range(2 * max_shift + 1):
            chosen = (
                torch.nonzero((shifts[0] == dy) & (shifts[1] == dx)).flatten().to(images.device)
            )
            out[chosen] = padded[chosen, :, dy : dy + height, dx : dx + width]
    return out


def cutout(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Each image of a normalised (N, C, H, W) batch with one random size x size square, inside the
    image, set to 0 (the mean colour)."""
    if size == 0:
        return images
    n, _, height, width = images.shape
    size = min(size, height, width)
    top = torch.randint(0, height - size + 1, (n, 1, 1), generator=generator)
    left = torch.randint(0, width - size + 1, (n, 1, 1), generator=generator)
    rows, cols = torch.arange(height)[None, :, None], torch.arange(width)[None, None, :]
    square = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return images.masked_fill(square[:, None].to(images.device), 0)


def scale_down(images: torch.Tensor, scale: float) -> torch.Tensor:
    """A (N, C, H, W) batch resized to `scale` of its height and width (bilinear, antialiased),
    channels-last."""
    if scale == 1:
        return images
    size = [round(side * scale) for side in images.shape[2:]]
    smaller = torch.nn.functional.interpolate(images, size=size, mode="bilinear", antialias=True)
    return smaller.contiguous(memory_format=torch.channels_last)


def training_batches(
    images,
    labels,
    mean,
    std,
    train_params: dict,
    device: torch.device,
    generator: torch.Generator,
    epoch: int,
    flip_bits: torch.Tensor,
    scale: float = 1.0,
):
    """Shuffled, augmented (x, y) batches of one epoch; the last partial batch is dropped (it upsets
    batch norm).

    Alternating flip: each image has a fixed random orientation (flip_bits) in even epochs and the
    mirror one in odd epochs, so every pair of epochs shows both, which beats an independent coin
    per epoch. scale < 1: the images scaled down to that share of their side.
    """
    batch_size = train_params["batch_size"]
    order = torch.randperm(len(images), generator=generator)
    for step in range(max(1, len(images) // batch_size)):
        batch = order[step * batch_size : (step + 1) * batch_size]
        x = to_input(images[batch.to(images.device)], mean, std, device)
        if train_params["flip"] == "alternating":
            x = flip_where(x, flip_bits[batch] ^ (epoch % 2 == 1))
        elif train_params["flip"] == "random":
            x = flip_where(x, torch.rand(len(batch), generator=generator) < 0.5)
        x = translate(x, train_params["translate"], generator)
        x = cutout(x, train_params["cutout"], generator)
        x = scale_down(x, scale)
        yield x, labels[batch.to(labels.device)].to(device, non_blocking=True)
