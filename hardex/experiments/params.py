"""A profile's parameters, each written once: the shared blocks and one block per experiment.

    params/<profile>/profile.yaml     the shared blocks: ``baseline`` (the paper's 110-epoch
                                      baseline run as this profile trains it), ``setup200``
                                      (its 200-epoch setup), ``cost`` (stated per-epoch times)
    params/<profile>/<chapter>.yaml   that chapter's own blocks (``table3``, ``fig9``, ...) and,
                                      only where the chapter departs from them, keys of the
                                      shared blocks (e.g. ``baseline: {epochs: 4}``)

A chapter's parameters are the shared blocks it declares, each updated key by key from its
own file, plus its own blocks, then any overrides (a papermill run's ``-y``), validated by
the chapter's pydantic model (:class:`ChapterParams` subclasses in :mod:`hardex.experiments`):
an unknown key, a missing key or a value of the wrong type (strict: ``5`` is no string, ``1``
no bool) is one :class:`ParamsError` line naming the file and the dotted key. A chapter file
holding only ``not_run: <reason>`` marks a chapter its profile does not run.

Nothing here trains; the experiments turn parameters into run specs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from hardex.paths import repo_root

PROFILES = ("smoke", "quick", "fast", "paper")
PROFILE_FILE = "profile.yaml"
SHARED_BLOCKS = ("baseline", "setup200", "cost")
NOT_RUN_KEY = "not_run"


class ParamsError(ValueError):
    """A parameter file (or override) that does not fit its chapter: one line naming file and key."""


class Block(BaseModel):
    """A block of parameters: every key required, none unknown, types strict."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Baseline(Block):
    """The paper's baseline run as a profile trains it (PGD-AT unless a chapter says otherwise);
    every chapter that asks for "the baseline" gets this one run."""

    seed: int
    device: str  # "" = cuda if available
    precision: Literal["fp32", "bf16"]  # training autocast; evaluation is always fp32
    channels_last: bool
    dataset: str
    train_subset: int  # 0 = the whole training split; else a class-balanced sample
    model: str
    epochs: int
    milestones: list[int]  # lr x0.1 after these epochs
    T: int  # difficulty accumulated over epochs 1..T
    eps: float
    attack_steps: int
    lr: float
    weight_decay: float
    batch_size: int
    eval_subset: int  # per-epoch test sample; 0 = all
    eval_pgd_steps: int
    final_pgd_steps: list[int]
    final_subset: int  # final.json's test sample; 0 = the whole test split


class Schedule(Block):
    """A training schedule: epochs, lr decays, and the epoch T up to which difficulty is tracked."""

    epochs: int
    milestones: list[int]
    T: int


class Cost(Block):
    """Stated, NOT measured: what one H100-class GPU takes, until a bench report of the device
    replaces it (:mod:`hardex.experiments.cost`)."""

    minutes_per_epoch: dict[str, float]  # algorithm (pgd, trades, std) -> minutes per epoch, baseline model, 50k images
    model_scale: dict[str, float]  # another model -> its epoch time relative to the baseline model's
    eval_passes_per_s: float  # forward+backward passes per second of the fp32 evaluation
    passes_per_example: dict[str, float]  # evaluate_run attacks other than PGD/CW-K (K + 1 each): a3, autoattack, ...


class ChapterParams(Block):
    """A chapter's parameters: subclasses declare the shared blocks they use and their own."""

    profile: str


P = TypeVar("P", bound=ChapterParams)


def _read(path: Path, root: Path) -> dict[str, Any]:
    where = _where(path, root)
    if not path.exists():
        raise ParamsError(f"{where}: missing parameter file")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ParamsError(f"{where}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(values, dict):
        raise ParamsError(f"{where}: expected a mapping of block names to blocks")
    return values


def _where(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def not_run_reason(profile: str, chapter: str, root: Path | None = None) -> str | None:
    """Why ``profile`` does not run ``chapter`` (its file holds only ``not_run: <reason>``), else None."""
    root = root or repo_root()
    path = root / "params" / profile / f"{chapter}.yaml"
    try:
        values = yaml.safe_load(path.read_text()) if path.exists() else None
    except yaml.YAMLError:
        return None  # load() reports it
    if isinstance(values, dict) and set(values) == {NOT_RUN_KEY}:
        return str(values[NOT_RUN_KEY])
    return None


def _merge(into: dict, update: Mapping, origin: dict, where: str, prefix: str) -> None:
    """``into`` updated key by key from ``update`` (nested mappings merge; anything else
    replaces), recording in ``origin`` where each dotted key was written."""
    for key, value in update.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(into.get(key), Mapping):
            _merge(into[key], value, origin, where, path + ".")
        else:
            into[key] = _copy(value)
        origin[path] = where


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _origin(origin: dict[str, str], path: str, fallback: str) -> str:
    """The file that wrote ``path`` or its nearest enclosing key."""
    while path:
        if path in origin:
            return origin[path]
        path = path.rpartition(".")[0]
    return fallback


def _dotted(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load(model: type[P], profile: str, chapter: str, root: Path | None = None,
         overrides: Mapping[str, Any] | None = None) -> P:
    """``chapter``'s parameters on ``profile`` (see the module docstring), validated by ``model``.
    ``overrides``: nested values that replace the files' (``{"table3": {"seeds": [0, 1]}}``)."""
    root = root or repo_root()
    if profile not in PROFILES:
        raise ParamsError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    folder = root / "params" / profile
    own_path = folder / f"{chapter}.yaml"
    own = _read(own_path, root) if own_path.exists() or _declares_own_blocks(model) else {}
    own_where = _where(own_path, root)
    if set(own) == {NOT_RUN_KEY}:
        raise ParamsError(f"{own_where}: chapter {chapter!r} is not run on profile {profile!r} ({own[NOT_RUN_KEY]})")
    shared_path = folder / PROFILE_FILE
    shared_where = _where(shared_path, root)
    fields = [f for f in model.model_fields if f != "profile"]
    uses_shared = [f for f in fields if f in SHARED_BLOCKS]
    shared = _read(shared_path, root) if uses_shared else {}
    for block in shared:
        if block not in SHARED_BLOCKS:
            raise ParamsError(f"{shared_where}: unknown block {block!r} (allowed: {', '.join(SHARED_BLOCKS)})")
    values: dict[str, Any] = {"profile": profile}
    origin: dict[str, str] = {}
    for block in uses_shared:
        if block not in shared:
            raise ParamsError(f"{shared_where}: missing block {block!r} (chapter {chapter!r} uses it)")
        values[block] = {}
        _merge(values[block], shared[block], origin, shared_where, block + ".")
    for block, value in own.items():
        if block not in fields:
            raise ParamsError(f"{own_where}: unknown block {block!r} (allowed: {', '.join(fields)})")
        if isinstance(value, Mapping) and isinstance(values.get(block), Mapping):
            _merge(values[block], value, origin, own_where, block + ".")
        else:
            values[block] = _copy(value)
            origin[block] = own_where
    if overrides:
        for block in overrides:
            if block not in fields:
                raise ParamsError(f"override: unknown block {block!r} (allowed: {', '.join(fields)})")
        _merge(values, overrides, origin, "override", "")
    try:
        return model.model_validate(values)
    except ValidationError as err:
        e = err.errors()[0]
        key = _dotted(e["loc"])
        where = _origin(origin, key, shared_where if key.split(".")[0] in SHARED_BLOCKS else own_where)
        if e["type"] == "missing":
            raise ParamsError(f"{where}: missing key {key!r}") from None
        if e["type"] == "extra_forbidden":
            raise ParamsError(f"{where}: unknown key {key!r}") from None
        got = e.get("input")
        raise ParamsError(f"{where}: key {key!r} has {type(got).__name__} {got!r}: {e['msg'].lower()}") from None


def _declares_own_blocks(model: type[ChapterParams]) -> bool:
    return any(f not in SHARED_BLOCKS and f != "profile" for f in model.model_fields)


def flat(params: BaseModel, skip: tuple[str, ...] = ("profile",)) -> dict[str, Any]:
    """``{"table3.seeds": [0, 1], ...}``: every leaf of the parameters by dotted key (for the
    profile box's list of every parameter)."""
    out: dict[str, Any] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:
                if not path and name in skip:
                    continue
                walk(getattr(value, name), f"{path}.{name}" if path else name)
        else:
            out[path] = value

    walk(params, "")
    return out
