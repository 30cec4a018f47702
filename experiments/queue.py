"""Runs as DVC experiments on DVC's queue, for the optimizer study and the ablation: queue, wait,
collect.

Every run is an ordinary queued experiment (`dvc exp run --queue -n NAME -S key=value ...`), so `dvc
exp show` lists it and `dvc exp diff` compares any two. Runs are queued without --force, so DVC's
run cache restores every stage that already ran with the same code, params and data, in this
workspace or in the queue: after a commit that leaves the stages' dependencies alone, running a
driver again trains nothing.
"""

import argparse
import contextlib
import copy
import csv
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from classifier.device import alive
from classifier.errors import UserError
from classifier.files import (
    EVALUATE_METRICS,
    HISTORY_CSV,
    TIMING_METRICS,
    TRAIN_METRICS,
    parse_history,
)
from classifier.params import PARAMS_FILE, get, load_params, parse_params
from experiments.gitdvc import dvc, git, read_at

# Private files of DVC's queue, read by the workarounds for its dying worker (DVC issues #10562,
# #8702) and to see whether anything runs without asking celery
WORKER_LOGS = (
    ".dvc/tmp/exps/celery/*.out"  # where `dvc queue logs` itself points when a worker failed
)
WORKER_PIDS = ".dvc/tmp/exps/celery/*.pid"  # each queue worker's process
RUN_PIDS = ".dvc/tmp/exps/run/*/*.pid"  # each queued run's own process
# how often the queue is looked at; the tests, whose runs take seconds, look more often
POLL_SECONDS = float(os.environ.get("EXPERIMENTS_POLL_SECONDS", "5"))
# how long the queue may show no live process before its worker counts as gone (one being started
# shows none yet)
WORKER_GRACE_SECONDS = 15.0
WAITING = ("Queued", "Running")
# of one name's several tasks, the liveliest counts
RANK = {
    "Failed": 0,
    "Success": 1,
    "Queued": 2,
    "Running": 3,
}


def load_settings(path: Path, check) -> dict:
    """A driver's settings (experiments/study.yaml or ablation.yaml), read as params.yaml is (one
    YAML loader), then check(params, settings, path)."""
    if not path.exists():
        raise UserError(f"{path} not found; run this from the repository root")
    settings = parse_params(path.read_text())
    check(load_params(), settings, path)
    return settings


def with_changes(params: dict, changes: dict) -> dict:
    """A copy of params with each dotted key of changes set; a key that params lacks is an error."""
    changed = copy.deepcopy(params)
    for key, value in changes.items():
        get(params, key)
        *parents, last = key.split(".")
        section = changed
        for part in parents:
            section = section[part]
        section[last] = value
    return changed


# ------------------------------------------------------------ what DVC says of the queue


def queue_status() -> tuple[list[list[str]], bool]:
    """`dvc queue status` as rows (the task id first, the name second, the state last), and whether
    a queue worker is alive, active or idle (the output ends with their count)."""
    lines = dvc("queue", "status").stdout.splitlines()
    rows = [
        row for row in (line.split() for line in lines[1:]) if len(row) >= 4 and row[-1] in RANK
    ]
    workers = [line for line in lines if line.startswith("Worker status:")]
    return rows, bool(workers) and workers[-1] != "Worker status: 0 active, 0 idle"


def queue_states(rows: list[list[str]]) -> dict[str, str]:
    """Experiment name -> its state in DVC's queue (rows from queue_status): Queued, Running,
    Success or Failed. A name queued more than once keeps its liveliest state."""
    states: dict[str, str] = {}
    for _, name, *_, state in rows:
        if RANK[state] >= RANK[states.get(name, "Failed")]:
            states[name] = state
    return states


def newest_task(name: str, rows: list[list[str]] | None = None) -> str:
    """The id of the newest queue task of that name (in rows from queue_status, or asked now): `dvc
    queue logs NAME` may show an older one's log, and `dvc queue status` lists tasks in the order of
    its broker's file names, not by age. A task's id is the commit DVC made when it was queued, so
    the commit's time says which is newest."""
    rows = queue_status()[0] if rows is None else rows
    tasks = [task for task, task_name, *_ in rows if task_name == name]
    return max(tasks, key=lambda task: int(git("show", "-s", "--format=%ct", task).stdout))


def experiments_of(base: str) -> dict[str, tuple[str, str]]:
    """Experiment name -> (state, revision) for the experiments queued or run from commit base: the
    state is Queued, Running, Success or Failed (Success too for a run in the workspace), the
    revision the experiment's commit once it succeeded. Read through DVC's API, which also looks
    into running experiments' temporary workspaces and fails when one disappears while it looks:
    tried again then."""
    import dvc.api  # here, not at the top: it takes a second to import

    for _ in range(4):
        # a queued run's workspace came or went while DVC read it
        with contextlib.suppress(Exception):
            return liveliest(dvc.api.exp_show(".", revs=base))
        time.sleep(POLL_SECONDS)
    return liveliest(dvc.api.exp_show(".", revs=base))


def liveliest(rows: list[dict]) -> dict[str, tuple[str, str]]:
    """A name queued more than once keeps its liveliest state."""
    states: dict[str, tuple[str, str]] = {}
    for row in rows:
        name, state = row["Experiment"], row["State"] or "Success"
        if (
            row["typ"] != "baseline"
            and name
            and RANK[state] >= RANK[states.get(name, ("Failed", ""))[0]]
        ):
            states[name] = (state, row["rev"])
    return states


def any_alive(pid_files: str) -> bool:
    """Whether a process of these pid files (a glob pattern) is alive: read in microseconds, where
    `dvc queue status` takes seconds of a core to ask celery."""
    for pid_file in Path().glob(pid_files):
        with contextlib.suppress(OSError):  # removed since the glob
            if alive(pid_file.read_text()):
                return True
    return False


def start_worker() -> None:
    """One worker: one experiment at a time, or one per GPU where there are several (each
    experiment's stages then claim the least busy GPU: classifier.device). Its output goes nowhere:
    a worker holding our pipes open would make this wait for the whole queue (and hang with it)."""
    import torch  # here, not at the top: only the worker's count needs it

    jobs = max(1, torch.cuda.device_count())
    subprocess.run(
        [sys.executable, "-m", "dvc", "queue", "start", "--jobs", str(jobs)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )


def wait_until_no_worker(limit: float = 60.0) -> None:
    """Let the last batch's worker go first: a worker whose queue just emptied shuts down (after 10
    s idle), but can still take a task queued in that moment and exit with it half run, left
    'Running' with no worker (seen in the study's test, between its sweep and its final runs)."""
    deadline = time.monotonic() + limit
    while any_alive(WORKER_PIDS) and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)


def wait_for(names: list[str]) -> None:
    """Wait until none of the experiments is queued or running.

    While a queued run's process is alive, only its pid file is read; otherwise `dvc queue status`
    says what waits (DVC's API would also look into running experiments' workspaces, and has hung
    when one vanished). A worker that died with experiments still waiting (DVC issues #10562 and
    #8702) is restarted once; if the queue stalls again, one error names the experiment and the
    worker's log. (A worker whose queue has emptied drops out of `dvc queue status` while it still
    runs its last experiment, DVC issue #10562: its run's process counts as alive.)
    """
    restarted, last_alive = False, time.monotonic()
    while True:
        time.sleep(POLL_SECONDS)
        if any_alive(RUN_PIDS):
            last_alive = time.monotonic()
            continue
        rows, worker_alive = queue_status()
        # a task that the worker is taking shows in neither list for a moment (`dvc queue status`
        # reads the running tasks, then the queued ones): one not shown counts as queued
        states = {name: "Queued" for name in names} | queue_states(rows)
        waiting = [name for name in names if states[name] in WAITING]
        if not waiting:
            return
        if worker_alive or any_alive(WORKER_PIDS):
            last_alive = time.monotonic()
        elif time.monotonic() - last_alive > WORKER_GRACE_SECONDS and not restarted:
            print(
                f"the DVC queue's worker stopped with {len(waiting)} experiments waiting; "
                "starting it again",
                flush=True,
            )
            start_worker()
            restarted, last_alive = True, time.monotonic()
        elif time.monotonic() - last_alive > WORKER_GRACE_SECONDS:
            logs = " ".join(str(path) for path in sorted(Path().glob(WORKER_LOGS))) or "none found"
            raise UserError(
                f"the DVC queue's worker stopped while experiment '{waiting[0]}' was "
                f"{states[waiting[0]].lower()} (worker log: {logs}); see `dvc queue status`, "
                f"stop it with `dvc queue kill {waiting[0]}`, then run this again: finished runs "
                "are kept"
            )


# ------------------------------------------------------------ running the queue


def run_queue(runs: dict[str, dict]) -> dict[str, dict]:
    """Run one queued experiment per run (name -> params to set), one at a time; name -> its results
    (collect)."""
    outcomes = queue_and_wait(runs)
    return {name: collect(name, outcomes) for name in runs}


def queue_and_wait(runs: dict[str, dict]) -> dict[str, str]:
    """Queue the runs and wait for them: name -> the experiment's commit, or "diverged" / "failed"
    for a run that left no experiment.

    An experiment of the same name from this commit is kept when it ran with the same params (here,
    or on another machine that pushed it), and replaced otherwise: the run cache restores it in
    seconds when nothing it depends on changed. A run already queued or running from this commit (by
    an interrupted run of this command) is waited for, not queued twice: DVC would keep only one of
    the two results.
    """
    if not runs:
        return {}
    base = git("rev-parse", "HEAD").stdout.strip()
    params, mine = load_params(), experiments_of(base)
    state = {name: mine.get(name, ("Failed", ""))[0] for name in runs}
    kept = [
        name
        for name in runs
        if state[name] == "Success" and ran_with(mine[name][1], params, runs[name])
    ]
    if kept:
        print(
            f"kept {len(kept)} runs that finished from this commit with the same params: "
            f"{', '.join(kept)}"
        )
    to_queue = [name for name in runs if name not in kept and state[name] not in WAITING]
    replaced = [name for name in to_queue if state[name] == "Success"]
    if replaced:
        dvc("exp", "remove", *replaced)
    if to_queue:
        wait_until_no_worker()
    for name in to_queue:
        dvc(
            "exp",
            "run",
            "--queue",
            "-n",
            name,
            *[
                arg
                for key, value in runs[name].items()
                for arg in ("-S", f"{key}={json.dumps(value)}")
            ],
        )
    waiting = [name for name in runs if name not in kept]
    if waiting:
        plural = "s" if len(waiting) > 1 else ""
        print(
            f"running {len(waiting)} queued experiment{plural} (the run cache restores those "
            f"that ran before): {', '.join(waiting)}",
            flush=True,
        )
        start_worker()
        wait_for(waiting)
    finished = {
        name: rev for name, (state, rev) in experiments_of(base).items() if state == "Success"
    }
    return {name: finished.get(name) or failure_kind(name) for name in runs}


def ran_with(rev: str, params: dict, changes: dict) -> bool:
    """Whether the experiment at rev ran with params and these changes (its params.yaml, as `-S`
    left it)."""
    return parse_params(read_at(rev, PARAMS_FILE)) == with_changes(params, changes)


def failure_kind(name: str) -> str:
    log = dvc("queue", "logs", newest_task(name), check=False).stdout
    return "diverged" if "training diverged" in log else "failed"


def collect(name: str, outcomes: dict[str, str]) -> dict:
    """One experiment's results, or why there are none (diverged, failed)."""
    if outcomes[name] in ("diverged", "failed"):
        return {"status": outcomes[name]}
    sha = outcomes[name]
    history = parse_history(list(csv.DictReader(io.StringIO(read_at(sha, HISTORY_CSV)))))
    trained = {
        **json.loads(read_at(sha, TRAIN_METRICS)),
        **json.loads(read_at(sha, TIMING_METRICS)),
    }
    return {
        "status": "ok",
        "train": trained,
        "test": json.loads(read_at(sha, EVALUATE_METRICS)),
        "history": history,
    }


# ------------------------------------------------------------ several machines


def drive(doc: str, run_share, write_report, command: str) -> None:
    """The study's and the ablation's main: with --shard K/N, run_share(shard) runs this machine's
    share of the runs (and names them), which are pushed; without it, pull what the shards pushed
    and write_report(), which runs whatever is left (the run cache restores what ran here) and
    writes the report."""
    shard, git_remote = machine_args(doc)
    if shard is None:
        pull_runs(git_remote)
        write_report()
        return
    ran = run_share(shard)
    if ran:
        push_runs(git_remote)
    print(
        f"shard {shard[0]}/{shard[1]} ran {', '.join(ran) or 'nothing (more shards than runs)'}; "
        f"once every shard has finished, `{command}` on any machine pulls their runs and writes "
        "the report"
    )


def machine_args(doc: str) -> tuple[tuple[int, int] | None, str]:
    """The command line of the study and the ablation: this machine's shard, if any, and the Git
    remote."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--shard",
        metavar="K/N",
        help="run only the K-th of N shares of the runs and push them "
        "(make ... SHARD=K/N); without it, pull what the shards pushed and write the report",
    )
    parser.add_argument(
        "--git-remote", default="origin", help="the Git remote that experiments go through"
    )
    args = parser.parse_args()
    return parse_shard(args.shard), args.git_remote


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """SHARD=K/N: this machine runs the K-th of N shares of the runs (K from 1); None runs all of
    them."""
    if text is None:
        return None
    match = re.fullmatch(r"(\d+)/(\d+)", text)
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise UserError(
            f"SHARD={text}: give K/N with 1 <= K <= N, e.g. SHARD=2/3 on the second of three "
            "machines"
        )
    return int(match[1]), int(match[2])


def my_share(items: list, shard: tuple[int, int] | None) -> list:
    """Every N-th item from the K-th: the N shares together hold each item once."""
    return items if shard is None else items[shard[0] - 1 :: shard[1]]


def push_runs(git_remote: str) -> None:
    """Share this commit's experiments: their Git refs to git_remote, their outputs and the run
    cache to the default DVC remote (which must be writable)."""
    print(
        f"pushing this commit's experiments to '{git_remote}' and their outputs to the DVC remote",
        flush=True,
    )
    dvc("exp", "push", "--run-cache", "--rev", "HEAD", git_remote)


def pull_runs(git_remote: str) -> None:
    """The experiments that other machines pushed from this commit, with their outputs and run
    cache; a warning, not an error, when the remote cannot be reached (their runs then run here
    again)."""
    if git_remote not in git("remote").stdout.split():
        return
    print(
        f"pulling the experiments that other machines pushed from this commit to '{git_remote}'",
        flush=True,
    )
    pulled = dvc("exp", "pull", "--run-cache", "--rev", "HEAD", git_remote, check=False)
    if pulled.returncode != 0:
        reason = (pulled.stderr or pulled.stdout).strip().splitlines()[-1:]
        print(
            f"warning: could not pull experiments from '{git_remote}' ({' '.join(reason)}); the "
            "runs that other machines pushed will run here again",
            flush=True,
        )
