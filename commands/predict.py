"""Classify your own images with the trained model: one line per image, the top three classes.

    python -m commands.predict PATH... [--model FILE | --rev REV] [--out FILE.csv|FILE.json]
    make predict IMAGES="PATH..."

Each PATH is an image file, a folder (searched recursively) or a tar archive (every image in it).
The preprocessing is evaluate's: pixels scaled and normalised with the training statistics, batches
of evaluate.batch_size in compute.precision, the test-time views of evaluate.tta. An image of
another size is resized to the model's (the aspect ratio is not kept) and any mode is converted to
8-bit RGB; a file that cannot be decoded is skipped with a warning. `--rev` reads the model of a Git
revision or a DVC experiment through DVC's API, without checking it out. Not a pipeline stage:
nothing in dvc.yaml depends on it.
"""

import argparse
import csv
import io
import json
import sys
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torchvision.transforms.v2.functional import resize
from tqdm import tqdm

from classifier.data import (
    IMAGE_SUFFIXES,
    decode_rgb,
    examples,
    is_archive,
    is_image_name,
    quiet_stderr,
    read_entries,
)
from classifier.errors import UserError, run_main
from classifier.evaluation import predictor
from classifier.files import MODEL_FILE, write_text
from classifier.models import load_checkpoint
from classifier.params import check_eval, load_params

CHUNK_BATCHES = 8  # batches per progress-bar step


def read_inputs(paths: list[str]) -> Iterator[tuple[str, bytes]]:
    """(name, contents) of every image the paths hold, in path order, one at a time (a folder of
    large photos need not fit in memory); what cannot be read is skipped with a warning."""
    for arg in paths:
        path = Path(arg)
        try:
            if path.is_dir() or (is_archive(path) and not is_image_name(arg)):
                yield from images_in(path, arg)
            elif path.is_file():
                yield arg, path.read_bytes()
            else:
                reason = "not a regular file" if path.exists() else "no such file or folder"
                print(f"warning: skipped {arg}: {reason}", file=sys.stderr)
        except (OSError, tarfile.TarError, EOFError) as error:
            print(f"warning: skipped the rest of {arg}: {error}", file=sys.stderr)


def images_in(path: Path, arg: str) -> Iterator[tuple[str, bytes]]:
    """The image files of a folder or tar archive, hidden ones left out; an entry that cannot be
    read is warned of."""
    for entry in read_entries(path):
        name = (path / entry.path).as_posix() if path.is_dir() else f"{arg}:{entry.path}"
        hidden = any(part.startswith(".") for part in entry.path.split("/"))
        if entry.problem:
            print(f"warning: skipped {name}: {entry.problem}", file=sys.stderr)
        elif entry.contents is not None and not hidden and is_image_name(entry.path):
            yield name, entry.contents


def decode(files: Iterable[tuple[str, bytes]], size: int) -> tuple[list[str], torch.Tensor]:
    """The names and uint8 (N, size, size, 3) pixels of the files that decode; the others are
    skipped with a warning.

    Images of another size are resized, other modes (grayscale, palette, alpha, 16-bit) converted to
    8-bit RGB, with one note saying how many.
    """
    names, images, resized, converted, changed = [], [], 0, 0, 0
    for name, contents in files:
        with quiet_stderr():
            image, other_mode = decode_rgb(contents)
        if image is None:
            print(
                f"warning: skipped {name}: not a readable image (empty, corrupt, truncated or "
                "another format)",
                file=sys.stderr,
            )
            continue
        other_size = image.shape[:2] != (size, size)
        if other_size:
            image = resize(image.permute(2, 0, 1), [size, size], antialias=True).permute(1, 2, 0)
        converted, resized, changed = (
            converted + other_mode,
            resized + other_size,
            changed + (other_mode or other_size),
        )
        names.append(name)
        images.append(image)
    if changed:
        print(
            f"note: converted {changed} images the model was not trained on as they are: "
            f"{resized} resized to {size}x{size}, {converted} converted to 8-bit RGB",
            file=sys.stderr,
        )
    return names, torch.stack(images) if images else torch.empty(
        0, size, size, 3, dtype=torch.uint8
    )


def load_model(model_path: str, rev: str | None) -> tuple[torch.nn.Module, dict]:
    if rev is None:
        return load_checkpoint(Path(model_path))
    import dvc.api  # here, not at the top: it takes a second to import and only --rev needs it

    name = f"{model_path} of revision {rev}"
    try:
        with dvc.api.open(model_path, rev=rev, mode="rb") as file:
            contents = file.read()
    except Exception as error:  # noqa: BLE001 - unknown revision, file not tracked there, not in the cache
        raise UserError(
            f"cannot read {name} ({type(error).__name__}: {str(error).splitlines()[0][:200]}); "
            "check the name with `dvc exp show` or `git log`, and fetch it with `dvc pull`"
        ) from None
    return load_checkpoint(name, io.BytesIO(contents))


def classify(model, checkpoint: dict, images: torch.Tensor, params: dict) -> torch.Tensor:
    """Class probabilities (N, classes), in batches as evaluate makes them, with a progress bar for
    many images."""
    scorer = predictor(model, checkpoint, params)
    chunk = scorer.batch_size * CHUNK_BATCHES
    logits = []
    with tqdm(
        total=len(images), unit="img", desc="classifying", disable=len(images) <= chunk
    ) as progress:
        for start in range(0, len(images), chunk):
            logits.append(scorer.logits(images[start : start + chunk], params["evaluate"]["tta"]))
            progress.update(len(logits[-1]))
    return torch.cat(logits).softmax(1)


def table_rows(names: list[str], probabilities: torch.Tensor, class_names: list[str]) -> list[dict]:
    top = probabilities.topk(min(3, len(class_names)), dim=1)
    rows = []
    for name, values, indices in zip(names, top.values.tolist(), top.indices.tolist()):
        row = {"file": name}
        for rank, (value, index) in enumerate(zip(values, indices)):
            prefix = ("", "second_", "third_")[rank]
            row[f"{prefix}class"], row[f"{prefix}probability"] = class_names[index], round(value, 4)
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """The rows as aligned text: file, then each of the top classes with its probability."""
    ranks = [key.removesuffix("class") for key in rows[0] if key.endswith("class")]
    file_width = max(len("file"), *(len(row["file"]) for row in rows))
    class_width = max(len("second"), *(len(row[rank + "class"]) for row in rows for rank in ranks))
    header = "".join(
        f"  {(rank.rstrip('_') or 'class'):<{class_width}} {'prob':>6}" for rank in ranks
    )
    lines = [f"{'file':<{file_width}}{header}"]
    for row in rows:
        cells = "".join(
            f"  {row[rank + 'class']:<{class_width}} {row[rank + 'probability']:>6.1%}"
            for rank in ranks
        )
        lines.append(f"{row['file']:<{file_width}}{cells}")
    return "\n".join(lines) + "\n"


def write_rows(rows: list[dict], out: Path) -> None:
    if out.suffix == ".json":
        write_text(out, json.dumps(rows, indent=1) + "\n")
        return
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(out, text.getvalue())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m commands.predict", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "paths", nargs="+", metavar="PATH", help="image files, folders or tar archives"
    )
    parser.add_argument(
        "--model", default=str(MODEL_FILE), help=f"the checkpoint (default {MODEL_FILE})"
    )
    parser.add_argument(
        "--rev",
        help="read --model from this Git revision or DVC experiment instead of the workspace",
    )
    parser.add_argument("--out", type=Path, help="also write the table to this .csv or .json file")
    args = parser.parse_args(argv)
    if args.out and args.out.suffix not in (".csv", ".json"):
        parser.error(f"--out {args.out}: the file name must end in .csv or .json")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    params = load_params()
    check_eval(params)
    model, checkpoint = load_model(args.model, args.rev)
    files = read_inputs(args.paths)
    names, images = decode(files, checkpoint["image_size"])
    if not names:
        raise UserError(
            f"no readable images in {examples(args.paths)}; give image files "
            f"({', '.join(sorted(IMAGE_SUFFIXES))}), folders of them or tar archives"
        )
    rows = table_rows(names, classify(model, checkpoint, images, params), checkpoint["class_names"])
    if args.out:
        write_rows(rows, args.out)
        print(f"wrote {len(rows)} rows to {args.out}", file=sys.stderr)
    print(format_table(rows), end="")


if __name__ == "__main__":
    run_main(main)
