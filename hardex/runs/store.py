"""The run store: one directory per RunSpec, found by its hash.

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

The store reads records (:mod:`hardex.runs.records`), locks a run while one process trains
it, and keeps the folders tidy (``gc``, ``remove``, ``export`` / ``import_``); how a run
trains and resumes is :mod:`hardex.runs.training`, how files are written
:mod:`hardex.runs.files`. ``extra_roots`` (default: the checkout's ``results/``) are
read-only roots of records made elsewhere.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path

from tqdm import tqdm  # plain bars: tqdm.auto warns in notebooks without ipywidgets

from hardex.paths import repo_root, runs_root
from hardex.runs.files import _ckpt_epoch, is_locked, now
from hardex.runs.records import RunRecord, _copy_record, is_done, load_record
from hardex.runs.spec import SHORT_HASH_LEN, RunScores, RunSpec, SpecError


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
                                      "since": now()}).encode(), 0)
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


def _is_under(p: Path, root: Path) -> bool:
    try:
        p.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False

