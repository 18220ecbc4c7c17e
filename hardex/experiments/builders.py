"""Spec builders shared by the experiments.

A profile's baseline parameters (:class:`hardex.experiments.params.Baseline`, or a plain
mapping with its keys) become RunSpecs here, so that every experiment asking for "the PGD
baseline of this profile" gets the same spec, and so the same run in the store. The keys:

    dataset, train_subset (0 = the whole split; else a class-balanced sample), model,
    epochs, milestones, T (difficulty tracked on epochs 1..T), eps, attack_steps,
    lr, weight_decay, batch_size, seed, device ("" = cuda if available),
    eval_subset, eval_pgd_steps, final_pgd_steps, final_subset (0 = whole test split),
    precision ("fp32" | "bf16": training autocast), channels_last (hardex.fastpath)

Every builder takes keyword overrides for what differs from the baseline.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from pydantic import BaseModel

from hardex.config import TrainConfig
from hardex.runs.spec import RunScores, RunSpec


def _none_if_zero(v: int | None) -> int | None:
    return None if not v else int(v)


def train_config(params: Mapping[str, Any] | BaseModel, **overrides: Any) -> TrainConfig:
    """The profile's baseline TrainConfig; ``overrides`` replace top-level TrainConfig
    fields (as dicts or values), plus the shortcuts ``eps`` (0 means standard training,
    evaluated against the profile's ``eps``),
    ``model`` (a name), ``milestones`` and ``T``."""
    params = params.model_dump() if isinstance(params, BaseModel) else params
    o = dict(overrides)
    eps = float(o.pop("eps", params["eps"]))
    algorithm = o.pop("algorithm", "std" if eps == 0 else "pgd")
    model = o.pop("model", params["model"])
    milestones = list(o.pop("milestones", params["milestones"]))
    T = o.pop("T", params["T"])
    n = _none_if_zero(params["train_subset"])
    cfg: dict[str, Any] = {
        "dataset": {"name": params["dataset"],
                    "subset": None if n is None else {"n": n, "balanced": True, "seed": params["seed"]}},
        "model": {"name": model},
        "algorithm": algorithm,
        # standard training keeps the profile's attack: it is unused in training but sets the
        # per-epoch and final robust evaluation of the STD model
        "attack": {"eps": eps if eps > 0 else float(params["eps"]), "steps": params["attack_steps"]},
        "optimizer": {"lr": params["lr"], "weight_decay": params["weight_decay"]},
        "schedule": {"milestones": milestones},
        "epochs": params["epochs"],
        "batch_size": params["batch_size"],
        "seed": params["seed"],
        "tracking": {"until_epoch": T},
        "eval": {"subset": _none_if_zero(params["eval_subset"]), "pgd_steps": params["eval_pgd_steps"],
                 "final_pgd_steps": list(params["final_pgd_steps"]),
                 "final_subset": _none_if_zero(params["final_subset"])},
        "device": params["device"] or None,
        "precision": params.get("precision", "fp32"),
        "channels_last": bool(params.get("channels_last", False)),
    }
    for key, value in o.items():
        if isinstance(value, Mapping) and isinstance(cfg.get(key), Mapping):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return TrainConfig.model_validate(cfg)


def baseline(params: Mapping[str, Any] | BaseModel, **overrides: Any) -> RunSpec:
    """The profile's baseline run (PGD-AT unless ``eps=0``), with ``overrides`` as in
    :func:`train_config`."""
    return RunSpec(train=train_config(params, **overrides))


def continuation(parent: RunSpec, epoch: int, *, edits: Iterable[Mapping] = (),
                 scores_from: Mapping[str, Any] | None = None,
                 teachers: Mapping[str, Any] | None = None, **changes: Any) -> RunSpec:
    """``parent`` continued from its checkpoint after ``epoch`` with ``edits`` appended
    and ``changes`` to its TrainConfig; the parent's ``scores_from`` and ``teachers`` are
    carried over (its rules and KD settings stay in the child's config), ``scores_from`` /
    ``teachers`` add to them. With nothing changed this is ``parent`` itself
    (an un-edited continuation trains exactly the parent's remaining epochs), so a
    table's "no change" row shares the parent's run."""
    edits = list(edits)
    if not edits and not changes and not scores_from and not teachers:
        return parent
    data = parent.train.model_dump()
    data["edits"] = [*data["edits"], *edits]
    data.update(changes)
    train = TrainConfig.model_validate(data)
    return RunSpec(train=train, start_from={"parent": parent, "epoch": epoch},
                   scores_from={**parent.scores_from, **(scores_from or {})},
                   teachers={**parent.teachers, **(teachers or {})})


def prune_from(parent: RunSpec, epoch: int, which: str, k: int, measure: str = "zero_one") -> RunSpec:
    """Continue ``parent`` after ``epoch`` without its top-``k`` ``which`` ("hard" /
    "easy") examples by its own ``measure`` accumulated up to its tracking epoch."""
    rule = {"measure": measure, "which": which, "k": k, "source": "self"}
    return continuation(parent, epoch, edits=[{"kind": "prune", "from_epoch": epoch + 1, "rule": rule}])


def keep_indices(params: Mapping[str, Any] | BaseModel, indices: Iterable[int], **overrides: Any) -> RunSpec:
    """A run trained only on the examples ``indices`` (stable dataset indices) from epoch 1."""
    idx = sorted(int(i) for i in indices)
    return baseline(params, edits=[{"kind": "keep", "indices": idx}], **overrides)


def scores_source(run: RunSpec, epoch: int | None = None) -> RunScores:
    return RunScores(run=run, epoch=epoch)


def _closure(spec: RunSpec, seen: dict[str, RunSpec]) -> None:
    if spec.hash in seen:
        return
    seen[spec.hash] = spec
    if spec.start_from is not None:
        _closure(spec.start_from.parent, seen)
    for src in spec.scores_from.values():
        if isinstance(src, RunScores):
            _closure(src.run, seen)


def distinct_runs(specs: Iterable[RunSpec]) -> list[RunSpec]:
    """Every run the specs need, once: themselves, their parents and score-source runs."""
    seen: dict[str, RunSpec] = {}
    for s in specs:
        _closure(s, seen)
    return list(seen.values())


def count_runs(cells: Mapping[str, RunSpec] | Iterable[RunSpec]) -> tuple[int, int]:
    """(distinct training runs, naive count). ``cells`` are the specs behind each table
    cell / figure curve (repeats allowed). The naive count trains every cell from scratch,
    with its own copy of each parent and score source it needs: the sum over cells of
    the size of that cell's own closure."""
    specs = list(cells.values()) if isinstance(cells, Mapping) else list(cells)
    naive = sum(len(distinct_runs([s])) for s in specs)
    return len(distinct_runs(specs)), naive


def by_difficulty(kind: str, which: str, *, k: int | None = None, fraction: float | None = None,
                  source: str = "source", from_epoch: int = 1, measure: str = "zero_one", seed: int = 0) -> dict:
    """An edit (``kind``: prune / keep / random_labels) of the top-``k`` (or ``fraction``)
    ``which`` examples by ``measure`` from score source ``source``, from ``from_epoch``."""
    rule = {"measure": measure, "which": which, "source": source,
            **({"k": k} if fraction is None else {"fraction": fraction})}
    edit = {"kind": kind, "from_epoch": from_epoch, "rule": rule}
    if kind == "random_labels":
        edit["seed"] = seed
    return edit


def from_source(params: Mapping[str, Any] | BaseModel, source: RunSpec, *, epoch: int | None = None, name: str = "source",
                **overrides: Any) -> RunSpec:
    """A run from epoch 1 (``overrides`` as in :func:`train_config`) whose edits and probes may
    rank by score source ``name``: ``source``'s difficulty (finished run, or its checkpoint at
    ``epoch``). Fixes the sets from the start, e.g. "random labels on the source's top-k hard"."""
    return RunSpec(train=train_config(params, **overrides), scores_from={name: scores_source(source, epoch)})


def prune_fraction_from(parent: RunSpec, epoch: int, which: str, fraction: float,
                        measure: str = "zero_one") -> RunSpec:
    """As :func:`prune_from` with the top ``fraction`` of the examples instead of a count;
    fraction 0 is ``parent`` itself."""
    if fraction == 0:
        return parent
    rule = {"measure": measure, "which": which, "fraction": float(fraction), "source": "self"}
    return continuation(parent, epoch, edits=[{"kind": "prune", "from_epoch": epoch + 1, "rule": rule}])


def difficulty_probes(eps: float, k: int, max_examples: int | None = None, source: str = "self",
                      sets: Iterable[str] = ("hard", "easy", "all")) -> list[dict]:
    """The analysis chapters' probe sets: the top-``k`` hard / easy examples by score source
    ``source`` and a sample of all examples (``sets``), each measured after every epoch
    (clean and adversarial accuracy and EL2N; clean only for standard training, ``eps`` 0),
    at most ``max_examples`` each (0 / None = all). Both chapters build their difficulty runs
    with this, so equal parameters give the same run."""
    metrics = ["clean_acc", "adv_acc", "el2n_clean", "el2n_adv"] if eps > 0 else ["clean_acc", "el2n_clean"]
    rules = {"hard": {"which": "hard", "k": int(k)}, "easy": {"which": "easy", "k": int(k)},
             "all": {"which": "hard", "fraction": 1.0}}
    out = []
    for name in sets:
        if name not in rules:
            raise ValueError(f"probe set {name!r}: allowed {', '.join(rules)}")
        out.append({"name": name, "rule": {**rules[name], "source": source}, "metrics": metrics,
                    "max_examples": max_examples or None})
    return out
