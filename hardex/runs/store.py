"""The run store: one directory per RunSpec, its atomic files, locks, checkpoints and `train_run`.

Layout (DESIGN.md, "The run store")::

    <root>/<short hash>/spec.yaml          the full spec
                        metrics.jsonl      one JSON row per epoch (a child's file starts
                                           with its parent's rows 1..T)
                        difficulty.npz     Trainer.difficulty_arrays() at the end
                        ckpt/epoch-NNN.pt  {"trainer": Trainer.state_dict(), "metrics": rows, ...}
                        ckpt/epoch-NNN.pt.sha256   checksum sidecar; no sidecar = not a checkpoint
                        best.pt            Trainer.best_state() ({"epoch", "model"})
                        provenance.json    versions, git commit, lock file sha256, device, host, sessions, wall time
                        final.json         the final evaluation; written last: its presence
                                           (validated) is what "done" means
                        .lock              flock'ed while a process trains the run
                        failed.json        written when training raised (removed when it starts again)

Every file is written atomically (temporary file in the same directory, fsync, rename).
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
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import functools
import io
import json
import os
import platform
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm  # plain bars: tqdm.auto warns in notebooks without ipywidgets

import hardex
from hardex.tools.lockfile import lock_provenance
from hardex.paths import repo_root, runs_root
from hardex.runs.spec import SHORT_HASH_LEN, FileScores, RunScores, RunSpec, SpecError, sha256_file

CKPT_FORMAT = 1
TrainerFactory = Callable[[Any], Any]


class CorruptRunError(RuntimeError):
    """A file of a finished run does not parse; it is never silently read."""


class CorruptCheckpoint(RuntimeError):
    """A checkpoint whose checksum or torch.load fails."""


# --------------------------------------------------------------------------------------
# atomic writes


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _atomic_file(path: Path) -> Iterator[io.BufferedWriter]:
    """Yield a binary file in path's directory; on success fsync it and rename it to path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with _atomic_file(path) as f:
        f.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def save_checked(obj: Any, path: Path) -> None:
    """torch.save ``obj`` atomically, then its sha256 sidecar (path + '.sha256').

    A file without a matching sidecar is not a checkpoint: a kill between the two
    renames leaves an unverifiable file, which the loader ignores.
    """
    path = Path(path)
    with _atomic_file(path) as f:
        torch.save(obj, f)
    atomic_write_text(_sidecar(path), f"{sha256_file(path)}  {path.name}\n")


def load_checked(path: Path) -> Any:
    """Load a file written by ``save_checked``; raise CorruptCheckpoint when it does not verify."""
    path = Path(path)
    side = _sidecar(path)
    if not side.exists():
        raise CorruptCheckpoint(f"{path}: no checksum sidecar (the write did not complete)")
    want = side.read_text().split()[0] if side.read_text().strip() else ""
    got = sha256_file(path)
    if got != want:
        raise CorruptCheckpoint(f"{path}: sha256 {got[:12]}... does not match its sidecar {want[:12]}...")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling error means corrupt
        raise CorruptCheckpoint(f"{path}: torch.load failed: {err}") from err


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


# --------------------------------------------------------------------------------------
# metrics.jsonl


def write_metrics(path: Path, rows: list[dict]) -> None:
    text = "".join(json.dumps(r, default=_json_default) + "\n" for r in rows)
    atomic_write_text(path, text)


def read_metrics(path: Path, *, drop_partial_last: bool = False) -> list[dict]:
    """Rows of a metrics.jsonl. A line that does not parse raises CorruptRunError, except a
    last line without its newline (a half-written append) when ``drop_partial_last``."""
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_text()
    lines = data.split("\n")
    tail_complete = data.endswith("\n") or data == ""
    if tail_complete:
        lines = lines[:-1]
    rows = []
    for i, line in enumerate(lines):
        half_written = i == len(lines) - 1 and not tail_complete
        if half_written:
            if drop_partial_last:
                warnings.warn(f"{path}: dropping a half-written last line {i + 1}", stacklevel=2)
                break
            raise CorruptRunError(f"{path}: last line {i + 1} is half-written (no newline)")
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not an object")
        except ValueError as err:
            raise CorruptRunError(f"{path}: line {i + 1} is not a JSON row ({err})") from err
        rows.append(row)
    return rows


TIMING_KEYS = frozenset({"time", "seconds", "wall_s", "wall_time"})


def _is_timing(key: str) -> bool:
    return key in TIMING_KEYS or key.endswith(("_seconds", "_time"))


def _without_timing(row: dict) -> dict:
    """A metrics row without wall-clock entries (those differ between identical runs)."""
    return {k: v for k, v in row.items() if not _is_timing(k)}


# --------------------------------------------------------------------------------------
# records


@dataclass
class RunRecord:
    """A run as stored: the spec, one metrics row per epoch, the final evaluation."""

    spec: RunSpec
    path: Path
    metrics: list[dict]
    final: dict | None
    provenance: dict = field(default_factory=dict)
    _difficulty: dict[str, np.ndarray] | None = field(default=None, repr=False)

    @property
    def hash(self) -> str:
        return self.spec.hash

    @property
    def done(self) -> bool:
        return self.final is not None

    @property
    def difficulty(self) -> dict[str, np.ndarray]:
        """Per-example arrays from difficulty.npz, loaded on first use."""
        if self._difficulty is None:
            f = self.path / "difficulty.npz"
            if not f.exists():
                self._difficulty = {}
            else:
                with np.load(f) as z:
                    self._difficulty = {k: z[k] for k in z.files}
        return self._difficulty

    def summary(self) -> str:
        lines = [f"run {self.spec.short_hash}  ({self.path})"]
        lines.append(f"  epochs: {len(self.metrics)}/{self.spec.train.epochs}")
        if self.spec.start_from is not None:
            sf = self.spec.start_from
            lines.append(f"  starts from {sf.parent.short_hash} at epoch {sf.epoch}")
        if self.metrics:
            last = {k: v for k, v in self.metrics[-1].items() if isinstance(v, (int, float))}
            lines.append("  last epoch: " + ", ".join(f"{k}={_fmt(v)}" for k, v in last.items()))
        if self.final is not None:
            for which in ("final", "best"):
                if isinstance(self.final.get(which), dict):
                    vals = self.final[which]
                    lines.append(f"  {which}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in vals.items()))
        else:
            lines.append("  not finished")
        return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# --------------------------------------------------------------------------------------
# the store


class RunStore:
    """Run directories under ``root`` (writable) and read-only ``extra_roots``.

    ``extra_roots`` defaults to the checkout's results/ folder (records made elsewhere,
    e.g. on a GPU cluster, exported and committed); pass ``()`` for none.
    """

    def __init__(self, root: str | os.PathLike | None = None, extra_roots: Iterable[str | os.PathLike] | None = None):
        self.root = runs_root(root)
        if extra_roots is None:
            default = repo_root() / "results"
            extra_roots = [default] if default.is_dir() else []
        self.extra_roots = tuple(Path(r) for r in extra_roots if Path(r).resolve() != self.root.resolve())

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r}, extra_roots={[str(r) for r in self.extra_roots]})"

    # -- paths ----------------------------------------------------------------------

    def run_dir(self, spec: RunSpec | str) -> Path:
        """The writable directory of a spec (or a short/full hash)."""
        name = spec.short_hash if isinstance(spec, RunSpec) else spec[:SHORT_HASH_LEN]
        return self.root / name

    def ckpt_path(self, spec: RunSpec, epoch: int) -> Path:
        return self.run_dir(spec) / "ckpt" / f"epoch-{epoch:03d}.pt"

    def all_roots(self) -> tuple[Path, ...]:
        return (self.root, *self.extra_roots)

    # -- reading --------------------------------------------------------------------

    def open(self, spec: RunSpec) -> RunRecord | None:
        """The finished record of ``spec`` from the store, else from an extra root, else None."""
        for root in self.all_roots():
            d = root / spec.short_hash
            if is_done(d):
                return load_record(d, expect=spec)
        return None

    def load(self, ref: str | os.PathLike | RunSpec) -> RunRecord:
        """Any record, finished or not: by spec, hash prefix, or directory."""
        return load_record(self.resolve(ref))

    def resolve(self, ref: str | os.PathLike | RunSpec) -> Path:
        """The directory of a spec, a run directory, or a hash prefix (store first)."""
        if isinstance(ref, RunSpec):
            for root in self.all_roots():
                if (root / ref.short_hash / "spec.yaml").exists():
                    return root / ref.short_hash
            raise KeyError(f"no run {ref.short_hash} in {self}")
        p = Path(ref)
        if (p / "spec.yaml").exists():
            return p
        prefix = str(ref)
        hits = [d for root in self.all_roots() if root.is_dir() for d in sorted(root.iterdir())
                if d.is_dir() and d.name.startswith(prefix) and (d / "spec.yaml").exists()]
        if not hits:
            raise KeyError(f"no run matching {prefix!r} in {self}")
        names = {d.name for d in hits}
        if len(names) > 1:
            raise KeyError(f"{prefix!r} is ambiguous: {sorted(names)}")
        return hits[0]

    def run_dirs(self, include_extra: bool = True) -> list[Path]:
        roots = self.all_roots() if include_extra else (self.root,)
        out = []
        for root in roots:
            if root.is_dir():
                out += [d for d in sorted(root.iterdir()) if d.is_dir() and (d / "spec.yaml").exists()]
        return out

    def status(self, d: Path) -> str:
        if is_done(d):
            return "done"
        if is_locked(d):
            return "running"
        return "partial"

    # -- locking --------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, spec: RunSpec, *, progress: bool = True) -> Iterator[None]:
        """Hold runs/<hash>/.lock (flock, exclusive); wait for another holder to finish."""
        d = self.run_dir(spec)
        d.mkdir(parents=True, exist_ok=True)
        fd = os.open(d / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
                if progress:
                    tqdm.write(f"run {spec.short_hash} is being trained by {holder}; waiting for it")
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                      "since": _now()}).encode(), 0)
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    # -- maintenance ----------------------------------------------------------------

    def remove(self, ref: str | RunSpec) -> Path:
        d = self.resolve(ref)
        if not _is_under(d, self.root):
            raise PermissionError(f"{d} is in a read-only root; remove it by hand")
        if is_locked(d):
            raise RuntimeError(f"{d} is being trained (locked)")
        shutil.rmtree(d)
        return d

    def branch_points(self) -> dict[str, set[int]]:
        """Short hash -> epochs some stored spec branches from (or lists in checkpoints.at)."""
        need: dict[str, set[int]] = {}
        for d in self.run_dirs():
            try:
                spec = RunSpec.from_yaml(d / "spec.yaml")
            except SpecError:
                continue
            need.setdefault(spec.short_hash, set()).update(spec.checkpoints.at)
            for s in spec.lineage()[1:]:
                sf = s.start_from
                need.setdefault(sf.parent.short_hash, set()).add(sf.epoch)
            for s in spec.lineage():
                for src in s.scores_from.values():
                    if isinstance(src, RunScores) and src.epoch is not None:
                        need.setdefault(src.run.short_hash, set()).add(src.epoch)
        return need

    def gc(self, *, dry_run: bool = False) -> list[Path]:
        """Remove partial runs nobody is training, and checkpoints of done runs that are
        neither branch points (of any stored spec) nor the kept last one. Returns what went."""
        removed: list[Path] = []
        need = self.branch_points()
        for d in self.run_dirs(include_extra=False):
            if is_locked(d):
                continue
            if not is_done(d):
                removed.append(d)
                if not dry_run:
                    shutil.rmtree(d)
                continue
            spec = RunSpec.from_yaml(d / "spec.yaml")
            keep = set(need.get(d.name, ()))
            if spec.checkpoints.last:
                keep.add(spec.train.epochs)
            for f in sorted((d / "ckpt").glob("*")):
                epoch = _ckpt_epoch(f)
                if epoch is None or epoch not in keep or f.name.endswith(".corrupt"):
                    removed.append(f)
                    if not dry_run:
                        f.unlink()
            for f in d.glob(".*.tmp"):
                removed.append(f)
                if not dry_run:
                    f.unlink()
        return removed

    def export(self, refs: Iterable[str | RunSpec], to: str | os.PathLike) -> list[Path]:
        """Copy compact records (no checkpoints) of finished runs to ``to/<hash>/``."""
        out = []
        for ref in refs:
            src = self.resolve(ref)
            if not is_done(src):
                raise RuntimeError(f"{src} is not finished; only finished runs are exported")
            out.append(_copy_record(src, Path(to) / src.name))
        return out

    def import_(self, src: str | os.PathLike) -> list[Path]:
        """Copy compact records from ``src`` (a record directory, or a folder of them) into
        the store; records already present are left as they are."""
        src = Path(src)
        dirs = [src] if (src / "spec.yaml").exists() else [d for d in sorted(src.iterdir()) if (d / "spec.yaml").exists()]
        out = []
        for d in dirs:
            rec = load_record(d)  # validates: spec, hash vs directory name, final.json, metrics
            if not rec.done:
                raise RuntimeError(f"{d} is not a finished record")
            dest = self.root / rec.spec.short_hash
            if is_done(dest):
                continue
            if dest.exists():
                if is_locked(dest):
                    raise RuntimeError(f"{dest} is being trained; not importing over it")
                shutil.rmtree(dest)
            out.append(_copy_record(d, dest))
        return out


_RECORD_FILES = ("spec.yaml", "metrics.jsonl", "difficulty.npz", "provenance.json", "final.json")


def _copy_record(src: Path, dest: Path) -> Path:
    """Copy the compact files into a temporary sibling directory, then rename it into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        for name in _RECORD_FILES:
            if (src / name).exists():
                atomic_write_bytes(tmp / name, (src / name).read_bytes())
        # cached evaluations (hardex.evaluation.suite: eval/<key>.json) travel with the record
        for f in sorted((src / "eval").glob("*.json")) if (src / "eval").is_dir() else []:
            atomic_write_bytes(tmp / "eval" / f.name, f.read_bytes())
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(dest.parent)
    return dest


def _is_under(p: Path, root: Path) -> bool:
    try:
        p.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _ckpt_epoch(f: Path) -> int | None:
    name = f.name
    if not name.startswith("epoch-"):
        return None
    try:
        return int(name[len("epoch-"):].split(".")[0])
    except ValueError:
        return None


def is_locked(d: Path) -> bool:
    lock = Path(d) / ".lock"
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases a lock we may have taken
    return False


def _read_final(d: Path) -> dict | None:
    f = Path(d) / "final.json"
    if not f.exists():
        return None
    try:
        final = json.loads(f.read_text())
    except ValueError as err:
        raise CorruptRunError(f"{f}: not valid JSON ({err})") from err
    if not isinstance(final, dict) or "epochs" not in final:
        raise CorruptRunError(f"{f}: not a final-evaluation record")
    return final


def is_done(d: Path) -> bool:
    """final.json exists and validates (a final.json that does not parse raises)."""
    return _read_final(d) is not None


def load_record(d: Path, expect: RunSpec | None = None) -> RunRecord:
    d = Path(d)
    spec = RunSpec.from_yaml(d / "spec.yaml")
    if spec.short_hash != d.name:
        raise CorruptRunError(f"{d}: spec.yaml hashes to {spec.short_hash}, not the directory name")
    if expect is not None and spec.hash != expect.hash:
        raise CorruptRunError(f"{d}: hash collision between stored spec and the one asked for")
    final = _read_final(d)
    metrics = read_metrics(d / "metrics.jsonl", drop_partial_last=final is None)
    if final is not None and len(metrics) != spec.train.epochs:
        raise CorruptRunError(f"{d}/metrics.jsonl: {len(metrics)} rows for a finished {spec.train.epochs}-epoch run")
    prov_f = d / "provenance.json"
    try:
        prov = json.loads(prov_f.read_text()) if prov_f.exists() else {}
    except ValueError as err:
        raise CorruptRunError(f"{prov_f}: not valid JSON ({err})") from err
    return RunRecord(spec=spec, path=d, metrics=metrics, final=final, provenance=prov)


# --------------------------------------------------------------------------------------
# training one run


def default_trainer(cfg: Any, scores: dict | None = None, teachers: dict | None = None,
                    unlabeled: Any = None) -> Any:
    from hardex.train import Trainer

    return Trainer(cfg, scores=scores, teachers=teachers, unlabeled=unlabeled)


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


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _git_commit() -> str | None:
    root = repo_root()
    if not (root / ".git").exists():  # a copy without git (a GPU session's tree): the commit it was sent from
        return os.environ.get("HARDEX_GIT_COMMIT") or None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


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
            atomic_write_json(failed, {"error": f"{type(err).__name__}: {err}"[:2000], "at": _now(),
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
        "git_commit": _git_commit(),
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
    sessions.append({"start": _now(), "host": socket.gethostname(), "pid": os.getpid(),
                     "device": _device_name(trainer), "from_epoch": from_epoch})
    prov = {**_provenance_base(trainer), "start": prev.get("start", sessions[0]["start"]),
            "end": None, "wall_s": prev.get("wall_s", 0.0), "sessions": sessions}
    atomic_write_json(f, prov)
    return prov


def _end_session(d: Path, prov: dict, trainer: Any, t0: float) -> None:
    wall = time.time() - t0
    prov["sessions"][-1].update(end=_now(), to_epoch=trainer.epoch, wall_s=round(wall, 3))
    prov.update(end=_now(), wall_s=round(sum(s.get("wall_s", 0.0) for s in prov["sessions"]), 3))
    atomic_write_json(d / "provenance.json", prov)
