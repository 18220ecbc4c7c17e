"""A run as stored: :class:`RunRecord` (spec, metrics rows, final evaluation, provenance),
read and validated by :func:`load_record`; "done" means a valid ``final.json``.

Only the compact files (:data:`_RECORD_FILES` and cached evaluations under ``eval/``) travel
when records are exported or imported (e.g. from a GPU machine into ``results/``); checkpoints
stay where they were trained.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hardex.runs.files import CorruptRunError, _fsync_dir, atomic_write_bytes, read_metrics
from hardex.runs.spec import RunSpec


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

