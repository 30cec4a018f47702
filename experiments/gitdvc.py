"""Running git and dvc from Python, for the experiment drivers, the review, the benchmark and the
tests."""

import subprocess
import sys
from pathlib import Path

from classifier.errors import UserError


def run_command(
    args: list[str], cwd: Path | str | None = None, env: dict | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """Run a command, its output captured; a failure, when check, is a UserError that ends with its
    stderr."""
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise UserError(
            f"`{' '.join(args)}` failed: {(result.stderr or result.stdout).strip()[-1000:]}"
        )
    return result


def dvc(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """dvc from this interpreter's environment, whatever is first on PATH."""
    return run_command([sys.executable, "-m", "dvc", *args], **kwargs)


def git(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return run_command(["git", *args], **kwargs)


def read_at(rev: str, path: Path | str) -> str:
    """A Git-tracked file as it is in the workspace (rev "workspace"), a Git revision or a DVC
    experiment; "" where it does not exist."""
    if rev == "workspace":
        return Path(path).read_text() if Path(path).exists() else ""
    shown = git("show", f"{rev}:{path}", check=False)
    if shown.returncode == 0:
        return shown.stdout
    from dvc.repo import Repo  # an experiment's name: DVC resolves it to its commit
    from dvc.scm import resolve_rev

    with Repo() as repo:
        sha = resolve_rev(repo.scm, rev)
    return git("show", f"{sha}:{path}", check=False).stdout
