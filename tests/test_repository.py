"""What the repository must never hold: secrets, tokens, or absolute paths of one machine."""

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

# Built from pieces so that this file does not match itself.
SECRETS = re.compile(
    "|".join(
        [
            "AKIA" + r"[0-9A-Z]{16}",  # AWS access key id
            "gh" + r"[pousr]_[A-Za-z0-9]{36}",  # GitHub token
            "-----BEGIN [A-Z ]*" + "PRIVATE KEY-----",
            r"(?i:token|password|secret|api_key)\s*[:=]\s*['\"]?[A-Za-z0-9/+_-]{16,}",
        ]
    )
)
ABSOLUTE_PATHS = re.compile(
    r"(?<![\w.])(/home/\w|/Users/\w|/root/|/tmp/|/work/|/mnt/|[A-Z]:\\{1,2}Users)"
)


def tracked_files() -> list:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    )
    return [REPO / name for name in listed.stdout.split("\0") if name and (REPO / name).is_file()]


@pytest.mark.e2e
def test_tracked_files_hold_no_secrets_or_absolute_paths():
    found = []
    for path in tracked_files():
        if path == Path(__file__):  # the patterns themselves
            continue
        text = path.read_bytes().decode("utf-8", errors="ignore")
        found += [
            f"{path.relative_to(REPO)}: {match.group(0)}"
            for pattern in (SECRETS, ABSOLUTE_PATHS)
            for match in pattern.finditer(text)
        ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("cached", ["models/model.pt", "data/prepared/test.npz"])
def test_dvc_cached_outputs_hold_no_absolute_paths(cached):
    path = REPO / cached
    if not path.exists():
        pytest.skip(f"{cached} is not here (run `make pipeline`)")
    text = path.read_bytes().decode("latin-1")
    assert not ABSOLUTE_PATHS.search(text) and not SECRETS.search(text)


def test_the_patterns_catch_what_they_are_for():
    assert SECRETS.search("aws_key = " + "AKIA" + "ABCDEFGHIJKLMNOP")
    assert SECRETS.search("token: " + "x" * 20)
    assert ABSOLUTE_PATHS.search("cwd: /home/alice/project") and ABSOLUTE_PATHS.search(
        "C:\\Users\\bob"
    )
    assert not ABSOLUTE_PATHS.search("see ../shared/dvc-storage and data/raw/cifar10.tar")
