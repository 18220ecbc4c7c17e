"""Training one run in the store: train, resume, or regenerate a checkpoint (`train_run`).

The checkpoint is the truth for a partial run: on resume the newest checkpoint whose
checksum and torch.load both pass is loaded, metrics.jsonl is rewritten from the rows
stored in it (which drops rows of epochs after it and any half-written line), and
training continues. Loading restores the Trainer's RNG states, so on CPU the resumed run
ends with the same numbers as an uninterrupted one.

Checkpoint policy (spec.checkpoints, not part of the hash):
* a resume checkpoint every ``every`` epochs and always at the last epoch; only the
  newest resume checkpoint is kept;
* branch checkpoints at ``at`` epochs plus every epoch a child in the same ``ensure``
  call branches from (``ensure`` passes them down), kept for good;
* ``last``: keep the final epoch's checkpoint when the run is done; ``best``: best.pt.
A done run asked for a branch checkpoint it does not have (it was trained before that
child existed, or it was imported without checkpoints) regenerates it: it trains again
from its newest kept checkpoint before that epoch (or from the start, or from its own
parent) up to the epoch, saves the checkpoint and checks that the regenerated metrics
rows equal the recorded ones (bit-exact on CPU; a warning where the device is not
deterministic). Its metrics and final.json are not touched.

A run's ``provenance.json`` records versions, the code's commit, the locked environment
(:mod:`hardex.provenance`), the device and one session per (re)start with its wall time.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import platform
import socket
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm  # plain bars: tqdm.auto warns in notebooks without ipywidgets

import hardex
from hardex.provenance import git_commit, lock_provenance, sha256_file
from hardex.runs.files import (CorruptCheckpoint, _ckpt_epoch, _sidecar, _without_timing, atomic_write_bytes,
                               atomic_write_json, atomic_write_text, load_checked, now, read_metrics, save_checked,
                               write_metrics)
from hardex.runs.records import CorruptRunError, RunRecord, load_record
from hardex.runs.spec import FileScores, RunScores, RunSpec
from hardex.runs.store import RunStore


CKPT_FORMAT = 1


TrainerFactory = Callable[[Any], Any]


def default_trainer(cfg: Any, scores: dict | None = None, teachers: dict | None = None,
                    unlabeled: Any = None, device: str | None = None) -> Any:
    """``hardex.train.Trainer``; ``device`` overrides the config's (not part of the spec: e.g. a
    build told to train on the CPU, ``functools.partial(default_trainer, device="cpu")``)."""
    from hardex.train import Trainer

    return Trainer(cfg, scores=scores, teachers=teachers, unlabeled=unlabeled, device=device)


def build_trainer(store: RunStore, spec: RunSpec, factory: TrainerFactory | None = None,
                  progress: bool = False) -> Any:
    """``factory(spec.train)``, with ``scores=`` from ``spec.scores_from`` and
    ``teachers=`` from ``spec.teachers`` when it has any (a factory is only asked to take
    those for specs that use them)."""
    factory = factory or default_trainer
    kw: dict[str, Any] = {}
    if spec.scores_from:
        kw["scores"] = load_scores(store, spec, factory, progress)  # before the factory seeds the RNGs
    if spec.teachers:
        kw["teachers"] = load_teachers(store, spec, factory, progress)
    if spec.unlabeled is not None:
        u = spec.unlabeled
        if not Path(u.file).is_file():
            raise FileNotFoundError(f"run {spec.short_hash}: unlabelled data {u.file} not found")
        if sha256_file(u.file) != u.sha256:
            raise ValueError(f"run {spec.short_hash}: unlabelled data {u.file} has changed "
                             f"(sha256 differs from the spec's {u.sha256})")
        kw["unlabeled"] = u.file
    return factory(spec.train, **kw)


def load_teachers(store: RunStore, spec: RunSpec, factory: TrainerFactory | None = None,
                  progress: bool = False) -> dict[str, torch.nn.Module]:
    """``{name: model}`` for ``spec.teachers``: each teacher run's best.pt model or its
    final model (the SWA average if it used SWA; from its last checkpoint, regenerated
    if it was not kept), built with the teacher's own architecture, in eval mode, on CPU."""
    from hardex import data, methods, models

    out: dict[str, torch.nn.Module] = {}
    for name, t in spec.teachers.items():
        rec = store.open(t.run)
        if rec is None:
            raise RuntimeError(f"run {spec.short_hash}: teacher {name!r} (run {t.run.short_hash}) is not "
                               "done; ensure it first")
        if t.which == "best":
            f = rec.path / "best.pt"
            if not f.exists():
                raise CorruptRunError(f"{rec.path}: no best.pt for teacher {name!r} (which: best); "
                                      "the teacher run needs checkpoints.best and a per-epoch evaluation")
            state = load_checked(f)["model"]
        else:
            payload = branch_checkpoint(store, t.run, t.run.train.epochs, factory, progress)
            state = methods.exported_state(payload["trainer"])
        tc = t.run.train
        model = models.build_model(tc.model.name, tc.num_classes, data.DATASETS[tc.dataset.name].image_size,
                                   tc.model.normalize)
        model.load_state_dict(state)
        out[name] = model.eval()
    return out


def load_scores(store: RunStore, spec: RunSpec, factory: TrainerFactory | None = None,
                progress: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """``{name: {measure: array}}`` for ``spec.scores_from``: a source run's difficulty.npz
    (epoch None; the run must be done), the arrays of its checkpoint at ``epoch`` (kept or
    regenerated like a branch checkpoint), or an external file as ``{"external": array}``."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, src in spec.scores_from.items():
        if isinstance(src, RunScores):
            if src.epoch is None:
                rec = store.open(src.run)
                if rec is None:
                    raise RuntimeError(f"run {spec.short_hash}: score source {name!r} (run "
                                       f"{src.run.short_hash}) is not done; ensure it first")
                if not rec.difficulty:
                    raise CorruptRunError(f"{rec.path}: no difficulty.npz for score source {name!r}")
                out[name] = dict(rec.difficulty)
            else:
                payload = branch_checkpoint(store, src.run, src.epoch, factory, progress)
                t = build_trainer(store, src.run, factory, progress)
                t.load_state_dict(payload["trainer"])
                out[name] = {k: np.asarray(v) for k, v in t.difficulty_arrays().items()}
        else:
            out[name] = {"external": _file_scores(spec, name, src)}
    return out


def _file_scores(spec: RunSpec, name: str, src: FileScores) -> np.ndarray:
    from hardex import data
    from hardex.difficulty import load_external_scores

    got = sha256_file(src.file)
    if got != src.sha256:
        raise RuntimeError(f"run {spec.short_hash}: score file {src.file} ({name!r}) has sha256 "
                           f"{got[:12]}..., the spec was made with {src.sha256[:12]}...")
    full = data.load_dataset(spec.train.dataset.name, "train")
    return load_external_scores(src.file, len(full), key=src.key, index_key=src.index_key,
                                labels=full.labels, labels_key=src.labels_key,
                                lower_is_harder=src.lower_is_harder)


def _device_name(trainer: Any) -> str:
    dev = getattr(trainer, "device", None)
    dev = torch.device(dev) if dev is not None else torch.device("cpu")
    if dev.type == "cuda" and torch.cuda.is_available():
        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    return f"{dev} ({platform.processor() or platform.machine()})"


class _Run:
    """Training (or checkpoint regeneration) of one spec, holding its lock."""

    def __init__(self, store: RunStore, spec: RunSpec, trainer: TrainerFactory | None, progress: bool):
        self.store, self.spec, self.progress = store, spec, progress
        self.factory = trainer or default_trainer
        self.dir = store.run_dir(spec)

    # -- checkpoints -----------------------------------------------------------------

    def ckpts(self) -> list[tuple[int, Path]]:
        d = self.dir / "ckpt"
        if not d.is_dir():
            return []
        out = [(e, f) for f in d.glob("epoch-*.pt") if (e := _ckpt_epoch(f)) is not None]
        return sorted(out)

    def load_newest(self, at_most: int | None = None) -> dict | None:
        """The newest checkpoint that verifies (epoch <= at_most); bad ones are set aside."""
        for epoch, f in reversed(self.ckpts()):
            if at_most is not None and epoch > at_most:
                continue
            try:
                payload = load_checked(f)
                _check_payload(payload, self.spec, epoch, f)
                return payload
            except CorruptCheckpoint as err:
                warnings.warn(f"ignoring a bad checkpoint: {err}", stacklevel=2)
                os.replace(f, f.with_name(f.name + ".corrupt"))
        return None

    def save(self, trainer: Any, rows: list[dict]) -> None:
        epoch = trainer.epoch
        payload = {"format": CKPT_FORMAT, "spec_hash": self.spec.hash, "epoch": epoch,
                   "trainer": trainer.state_dict(), "metrics": list(rows)}
        save_checked(payload, self.store.ckpt_path(self.spec, epoch))

    def prune(self, keep: set[int], newest: int) -> None:
        for epoch, f in self.ckpts():
            if epoch != newest and epoch not in keep:
                f.unlink(missing_ok=True)
                _sidecar(f).unlink(missing_ok=True)

    def has_ckpt(self, epoch: int) -> bool:
        f = self.store.ckpt_path(self.spec, epoch)
        return f.exists() and _sidecar(f).exists()

    # -- starting point --------------------------------------------------------------

    def start(self, at_most: int | None = None) -> tuple[Any, list[dict]]:
        """A trainer at the newest usable state: own checkpoint, else parent's branch
        checkpoint, else fresh."""
        trainer = build_trainer(self.store, self.spec, self.factory, self.progress)
        payload = self.load_newest(at_most)
        sf = self.spec.start_from
        if payload is None and sf is not None:
            payload = branch_checkpoint(self.store, sf.parent, sf.epoch, self.factory, self.progress)
        if payload is not None:
            trainer.load_state_dict(payload["trainer"])
            rows = list(payload["metrics"])
        else:
            rows = []
        if trainer.epoch != len(rows):
            raise RuntimeError(f"{self.dir}: trainer is at epoch {trainer.epoch} with {len(rows)} metrics rows")
        return trainer, rows

    def epochs(self, trainer: Any, rows: list[dict], until: int, keep: set[int], every: int,
               on_epoch: Callable[[], None] | None = None) -> None:
        first = trainer.epoch + 1
        bar = tqdm(range(first, until + 1), desc=f"run {self.spec.short_hash}", unit="epoch",
                   disable=not self.progress, leave=False, initial=first - 1, total=until)
        for e in bar:
            row = trainer.run_epoch()
            if row.get("epoch") != e or trainer.epoch != e:
                raise RuntimeError(f"trainer returned epoch {row.get('epoch')} (at {trainer.epoch}), expected {e}")
            rows.append(row)
            if on_epoch is not None:
                on_epoch()
            if e == until or e in keep or e % every == 0:
                self.save(trainer, rows)
                self.prune(keep, newest=e)
        bar.close()


def _check_payload(payload: Any, spec: RunSpec, epoch: int, f: Path) -> None:
    if not isinstance(payload, dict) or payload.get("format") != CKPT_FORMAT:
        raise CorruptCheckpoint(f"{f}: not a hardex checkpoint")
    if payload.get("spec_hash") != spec.hash or payload.get("epoch") != epoch:
        raise CorruptCheckpoint(f"{f}: belongs to run {str(payload.get('spec_hash'))[:16]} epoch {payload.get('epoch')}")


def train_run(store: RunStore, spec: RunSpec, keep: Iterable[int] = (), *,
              trainer: TrainerFactory | None = None, progress: bool = True) -> RunRecord:
    """Make ``spec`` done in ``store`` (train, resume, or nothing) and make sure its
    checkpoints at ``keep`` exist (regenerating them if the run is already done)."""
    keep = set(keep)
    rec = store.open(spec)
    if rec is not None and all(_Run(store, spec, trainer, progress).has_ckpt(e) for e in keep):
        return rec
    with store.lock(spec, progress=progress):
        rec = store.open(spec)  # another process may have finished it while we waited
        if rec is not None:
            for e in sorted(keep):
                branch_checkpoint(store, spec, e, trainer, progress, locked=True)
            return rec
        failed = store.run_dir(spec) / "failed.json"
        failed.unlink(missing_ok=True)
        try:
            return _train_locked(store, spec, keep, trainer, progress)
        except Exception as err:
            # `hardex status` shows it as failed (an interrupt is not a failure: it resumes)
            rows = read_metrics(store.run_dir(spec) / "metrics.jsonl", drop_partial_last=True) \
                if (store.run_dir(spec) / "metrics.jsonl").exists() else []
            atomic_write_json(failed, {"error": f"{type(err).__name__}: {err}"[:2000], "at": now(),
                                       "pid": os.getpid(), "host": socket.gethostname(), "epochs_recorded": len(rows)})
            raise


def _train_locked(store: RunStore, spec: RunSpec, keep: set[int], trainer_factory: TrainerFactory | None,
                  progress: bool) -> RunRecord:
    run = _Run(store, spec, trainer_factory, progress)
    d = run.dir
    (d / "ckpt").mkdir(parents=True, exist_ok=True)
    if not (d / "spec.yaml").exists():
        atomic_write_text(d / "spec.yaml", spec.to_yaml())
    keep = keep | set(spec.checkpoints.at)
    n = spec.train.epochs

    trainer, rows = run.start()
    old = read_metrics(d / "metrics.jsonl", drop_partial_last=True) if (d / "metrics.jsonl").exists() else []
    if [_without_timing(r) for r in old[: len(rows)]] != [_without_timing(r) for r in rows[: len(old)]]:
        warnings.warn(f"{d}/metrics.jsonl disagrees with the checkpoint; rewriting it from the checkpoint",
                      stacklevel=2)
    write_metrics(d / "metrics.jsonl", rows)

    prov = _start_session(d, trainer, from_epoch=trainer.epoch)
    t0 = time.time()
    if trainer.epoch == 0 and 0 in keep and not run.has_ckpt(0):
        run.save(trainer, rows)
    run.epochs(trainer, rows, n, keep, spec.checkpoints.every,
               on_epoch=lambda: write_metrics(d / "metrics.jsonl", rows))
    if not run.has_ckpt(n):  # resumed at n: the last checkpoint already exists
        run.save(trainer, rows)

    diff = trainer.difficulty_arrays()
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in diff.items()})  # a subset's unused rows: zeros
    atomic_write_bytes(d / "difficulty.npz", buf.getvalue())

    best = trainer.best_state()
    if spec.checkpoints.best and best is not None:
        save_checked(best, d / "best.pt")
    final = {"epochs": n, **_final_evaluation(spec, trainer, best)}
    _end_session(d, prov, trainer, t0)
    atomic_write_json(d / "final.json", final)  # the commit point: the run is done

    if not spec.checkpoints.last:
        run.prune(keep, newest=-1)
    return load_record(d, expect=spec)


def _final_evaluation(spec: RunSpec, trainer: Any, best: dict | None) -> dict:
    out: dict[str, Any] = {}
    which = spec.evaluation.which
    if "final" in which:
        out["final"] = trainer.final_evaluation()
    if "best" in which:
        if best is None:
            out["best"] = None
        elif "final" in out and best["epoch"] == out["final"].get("epoch"):
            # the best epoch is the last one: the same weights, attacks and seeds as "final"
            out["best"] = {**out["final"], "epoch": best["epoch"]}
        else:
            sd = trainer.state_dict()
            if "model" not in sd:
                raise RuntimeError("Trainer.state_dict() has no 'model' entry; cannot evaluate the best model")
            if hasattr(trainer, "evaluate_state"):  # the best model may be an SWA average
                out["best"] = {**trainer.evaluate_state(best["model"]), "epoch": best["epoch"]}
            else:
                trainer.load_state_dict({**sd, "model": best["model"]})
                out["best"] = {**trainer.final_evaluation(), "epoch": best["epoch"]}
    return out


def branch_checkpoint(store: RunStore, spec: RunSpec, epoch: int, trainer: TrainerFactory | None = None,
                      progress: bool = True, *, locked: bool = False) -> dict:
    """The verified checkpoint of ``spec`` at ``epoch``; regenerated when missing (see module doc)."""
    sf = spec.start_from
    if sf is not None and epoch < sf.epoch:
        raise ValueError(f"run {spec.short_hash} starts at epoch {sf.epoch} of its parent; "
                         f"branch from the parent ({sf.parent.short_hash}) to start at epoch {epoch}")
    if epoch > spec.train.epochs:
        raise ValueError(f"run {spec.short_hash} has {spec.train.epochs} epochs; no checkpoint at {epoch}")
    run = _Run(store, spec, trainer, progress)
    f = store.ckpt_path(spec, epoch)
    if f.exists():
        try:
            payload = load_checked(f)
            _check_payload(payload, spec, epoch, f)
            return payload
        except CorruptCheckpoint as err:
            warnings.warn(f"branch checkpoint unusable, regenerating: {err}", stacklevel=2)
    ctx = contextlib.nullcontext() if locked else store.lock(spec, progress=progress)
    with ctx:
        if f.exists():
            with contextlib.suppress(CorruptCheckpoint):
                payload = load_checked(f)
                _check_payload(payload, spec, epoch, f)
                return payload
            os.replace(f, f.with_name(f.name + ".corrupt"))
        if progress:
            tqdm.write(f"run {spec.short_hash}: regenerating the checkpoint at epoch {epoch}")
        if not (run.dir / "spec.yaml").exists():
            atomic_write_text(run.dir / "spec.yaml", spec.to_yaml())
        trainer_obj, rows = run.start(at_most=epoch)
        keep = {e for e, _ in run.ckpts()} | {epoch}
        if trainer_obj.epoch == epoch:  # e.g. epoch 0, or the branch epoch of the parent
            run.save(trainer_obj, rows)
        run.epochs(trainer_obj, rows, epoch, keep, every=10**9)
        recorded = store.open(spec)
        if recorded is not None:
            a = [_without_timing(r) for r in recorded.metrics[:epoch]]
            b = [_without_timing(r) for r in rows]
            if a != b:
                warnings.warn(f"run {spec.short_hash}: the regenerated epochs 1..{epoch} differ from the recorded "
                              "metrics (non-deterministic device?); the checkpoint is the regenerated state",
                              stacklevel=2)
        payload = load_checked(f)
        return payload


@functools.lru_cache(maxsize=1)
def _lock_provenance() -> dict | None:
    """The locked environment (hardex.tools.lockfile); one look per process: it does not change."""
    return lock_provenance()


def _provenance_base(trainer: Any) -> dict:
    return {
        "hardex_version": getattr(hardex, "__version__", None),
        "git_commit": git_commit(),
        "lock": _lock_provenance(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device": _device_name(trainer),
        "hostname": socket.gethostname(),
    }


def _start_session(d: Path, trainer: Any, from_epoch: int) -> dict:
    f = d / "provenance.json"
    prev = {}
    if f.exists():
        with contextlib.suppress(ValueError):
            prev = json.loads(f.read_text())
    sessions = list(prev.get("sessions", []))
    sessions.append({"start": now(), "host": socket.gethostname(), "pid": os.getpid(),
                     "device": _device_name(trainer), "from_epoch": from_epoch})
    prov = {**_provenance_base(trainer), "start": prev.get("start", sessions[0]["start"]),
            "end": None, "wall_s": prev.get("wall_s", 0.0), "sessions": sessions}
    atomic_write_json(f, prov)
    return prov


def _end_session(d: Path, prov: dict, trainer: Any, t0: float) -> None:
    wall = time.time() - t0
    prov["sessions"][-1].update(end=now(), to_epoch=trainer.epoch, wall_s=round(wall, 3))
    prov.update(end=now(), wall_s=round(sum(s.get("wall_s", 0.0) for s in prov["sessions"]), 3))
    atomic_write_json(d / "provenance.json", prov)

