"""How the run store writes: atomic files, checksummed checkpoints, metrics.jsonl.

Every file is written atomically (a temporary file in the same directory, fsync, rename), so
a kill leaves either the old file or the new one. A checkpoint (``save_checked``) is a
``torch.save`` file plus a ``.sha256`` sidecar written after it: a file without a matching
sidecar is not a checkpoint, and ``load_checked`` refuses it. ``metrics.jsonl`` holds one
JSON row per epoch; a half-written last line (a kill during an append) is detected.

Checkpoints are read with ``torch.load(weights_only=True)`` (:func:`hardex.safeload.load_tensors`),
allowing beyond tensors and plain containers only numpy's arrays, scalars and dtypes
(:data:`~hardex.safeload.NUMPY_TYPES`, which checkpoints written by ``Trainer.state_dict()`` hold):
a run store received from elsewhere cannot run code when it is loaded; a file that asks for
more is refused with one line (:class:`hardex.safeload.UnsafeFileError`).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import io
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hardex.provenance import sha256_file
from hardex.safeload import NUMPY_TYPES, UnsafeFileError, load_tensors


class CorruptRunError(RuntimeError):
    """A file of a finished run does not parse; it is never silently read."""


def now() -> str:
    """The UTC time the store's files record (ISO 8601, seconds)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class CorruptCheckpoint(RuntimeError):
    """A checkpoint whose checksum or torch.load fails."""


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
        return load_store_file(path)
    except UnsafeFileError:
        raise  # not corrupt: a file that asks for more than the store writes; one line, nothing ran
    except Exception as err:  # noqa: BLE001 - any other unpickling error means corrupt
        raise CorruptCheckpoint(f"{path}: torch.load failed: {err}") from err


def load_store_file(f: Any) -> Any:
    """``torch.load(f, weights_only=True)`` allowing the numpy types the store's checkpoints
    hold (a path or a file object; no checksum check: :func:`load_checked` for checkpoints)."""
    return load_tensors(f, what="run-store checkpoint", trusted=NUMPY_TYPES)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


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

