"""The optimizer study's sweeps: each optimizer's lr, then its weight decay at that lr,
self-widening, chosen on validation accuracy; then the final runs, one per seed, at what the sweeps
chose.

`params` is params.yaml; `study` is experiments/study.yaml. Every run is a queued DVC experiment
(queue.run_queue).
"""

from experiments.queue import run_queue

SWEPT = ("lr", "weight_decay")  # the keys of optimizers.<name> that the study tunes, in this order


def value_name(value: float) -> str:
    """An lr or a weight decay as a word for an experiment name: 0.002 -> 0p002, 1e-05 -> 1em05,
    1000 -> 1000."""
    return f"{value:g}".replace(".", "p").replace("-", "m").replace("+", "")


def rounded(value: float) -> float:
    return float(f"{value:.3g}")


def sweep_run(study: dict, optimizer: str, values: dict[str, float]) -> tuple[str, dict]:
    """One sweep trial, at values (its lr, and for a weight-decay trial its weight decay): name and
    params."""
    name = f"sweep-{optimizer}-{value_name(values['lr'])}"
    if "weight_decay" in values:
        name += f"-wd{value_name(values['weight_decay'])}"
    settings = {f"optimizers.{optimizer}.{key}": value for key, value in values.items()}
    return name, {
        **study["changes"],
        **study["sweep"]["changes"],
        "optimizer": optimizer,
        **settings,
    }


def best_value(scores: dict[float, float | str]) -> float | None:
    """The value with the highest validation accuracy; a diverged or failed run scores lowest."""
    scored = {value: score for value, score in scores.items() if not isinstance(score, str)}
    return max(scored, key=scored.get) if scored else None


def next_value(scores: dict[float, float | str], widen: float) -> float | None:
    """The value to try next: one step beyond the edge where the best sits, or None when it sits
    inside."""
    best = best_value(scores)
    if best is None or best == min(scores):  # every value diverged: go lower
        return rounded(min(scores) / widen)
    if best == max(scores):
        return rounded(max(scores) * widen)
    return None


def first_values(params: dict, study: dict, key: str, optimizer: str, known: dict) -> list[float]:
    """The values of a sweep's first round: the optimizer's own value times each factor, but those
    known."""
    own = params["optimizers"][optimizer][key]
    values = [rounded(own * factor) for factor in study["sweep"]["factors"]]
    return [value for value in values if value not in known]


def score(result: dict) -> float | str:
    """A sweep run's validation accuracy, or why it has none (diverged, failed)."""
    return result["train"]["val_acc"] if result["status"] == "ok" else result["status"]


def sweep_key(
    params: dict, study: dict, key: str, fixed: dict[str, dict], known: dict[str, dict]
) -> dict:
    """One self-widening sweep of optimizers.<name>.<key>, per optimizer of fixed (name -> the
    values it keeps): the validation accuracy (or failure) of every value tried, the best value, and
    whether it sits at an edge.

    Starts at each optimizer's own value times sweep.factors; while the best value is the lowest or
    highest tried, tries one more a factor sweep.widen further out (sweep.max_widenings times at
    most), so that the chosen value has a worse one on each side. A value in known (name -> value ->
    score) is not run.
    """
    sweep = study["sweep"]
    scores = {optimizer: dict(known.get(optimizer, {})) for optimizer in fixed}
    to_try = {
        optimizer: first_values(params, study, key, optimizer, scores[optimizer])
        for optimizer in fixed
    }
    for widening in range(sweep["max_widenings"] + 1):
        # one batch of runs per round, every optimizer's together: each batch starts DVC's worker
        trials = {
            (optimizer, value): sweep_run(study, optimizer, {**fixed[optimizer], key: value})
            for optimizer, values in to_try.items()
            for value in values
        }
        results = run_queue(dict(trials.values())) if trials else {}
        for (optimizer, value), (name, _) in trials.items():
            scores[optimizer][value] = score(results[name])
        edges = {
            optimizer: next_value(tried, sweep["widen"]) for optimizer, tried in scores.items()
        }
        to_try = {optimizer: [value] for optimizer, value in edges.items() if value is not None}
        if not to_try or widening == sweep["max_widenings"]:
            break
        print(
            f"best {key.replace('_', ' ')} at the edge of the sweep for {', '.join(to_try)}: "
            "widening it",
            flush=True,
        )
    return {
        optimizer: {
            "chosen": best_value(tried),
            "at_edge": next_value(tried, sweep["widen"]) is not None,
            "tried": {str(value): tried[value] for value in sorted(tried)},
        }
        for optimizer, tried in scores.items()
    }


def not_swept(own: float | None, lr: dict) -> dict:
    """The weight-decay entry of an optimizer whose weight decay is not swept: it keeps its own."""
    if lr["chosen"] is None:
        reason = "every lr diverged"
    else:
        reason = "no weight decay" if own is None else "weight decay 0"
    return {"chosen": own, "at_edge": False, "tried": {}, "not_swept": reason}


def sweep_optimizers(params: dict, study: dict) -> dict[str, dict]:
    """Per optimizer: the lr sweep at its own weight decay, then the weight-decay sweep at the best
    lr.

    The weight-decay sweep's run at the optimizer's own weight decay is the lr sweep's best run: its
    score is reused, not trained again. Zero weight decay cannot be scaled, so an optimizer with
    none keeps it.
    """
    optimizers = study["optimizers"]
    lr = sweep_key(params, study, "lr", {optimizer: {} for optimizer in optimizers}, {})
    own = {
        optimizer: params["optimizers"][optimizer].get("weight_decay") for optimizer in optimizers
    }
    decaying = [
        optimizer
        for optimizer in optimizers
        if own[optimizer] and lr[optimizer]["chosen"] is not None
    ]
    fixed, best_runs = {}, {}
    for optimizer in decaying:
        best_lr = lr[optimizer]["chosen"]
        fixed[optimizer] = {"lr": best_lr}
        best_runs[optimizer] = {rounded(own[optimizer]): lr[optimizer]["tried"][str(best_lr)]}
    weight_decay = sweep_key(params, study, "weight_decay", fixed, best_runs)
    return {
        optimizer: {
            "lr": lr[optimizer],
            "weight_decay": weight_decay.get(optimizer) or not_swept(own[optimizer], lr[optimizer]),
        }
        for optimizer in optimizers
    }


def chosen(optimizer: str, sweep: dict) -> dict:
    """The params keys the sweeps chose for the optimizer; a weight decay its section lacks stays
    unset."""
    return {
        f"optimizers.{optimizer}.{key}": sweep[key]["chosen"]
        for key in SWEPT
        if sweep[key]["chosen"] is not None
    }


def final_runs(study: dict, sweep: dict[str, dict]) -> dict[str, dict]:
    """name -> params: each optimizer once per seed, at its lr and weight decay from the sweeps;
    none for an optimizer whose every lr diverged."""
    runs = {}
    for optimizer in study["optimizers"]:
        if sweep[optimizer]["lr"]["chosen"] is None:
            continue
        settings = {
            **study["changes"],
            "optimizer": optimizer,
            **chosen(optimizer, sweep[optimizer]),
        }
        for seed in study["seeds"]:
            runs[f"study-{optimizer}-seed{seed}"] = {**settings, "seed": seed}
    return runs


def new_choices(params: dict, sweep: dict[str, dict]) -> list[str]:
    """The sweep's choices that params.yaml's optimizers: sections do not hold yet, as "key: old ->
    new"."""
    changes = []
    for optimizer, keys in sweep.items():
        for key, result in keys.items():
            own = params["optimizers"][optimizer].get(key)
            if result["chosen"] is not None and own != result["chosen"]:
                changes.append(f"optimizers.{optimizer}.{key}: {own} -> {result['chosen']}")
    return changes
