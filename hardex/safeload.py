"""Reading tensor files without running code (issue 24).

A ``torch.save`` file is a pickle, and unpickling can call any importable function: a
checkpoint or state dict received from a colleague or downloaded could run code the moment
it is loaded with ``torch.load(weights_only=False)``. hardex loads every such file with
``torch.load(weights_only=True)``, torch's restricted unpickler, which builds tensors,
numbers, strings and the plain containers (dict, list, tuple, OrderedDict, ...) and refuses
any other global. :func:`load_tensors` turns that refusal into one line naming the file,
what its pickle asked for and what to do.

``trusted`` widens the allowlist for files whose origin is known. The run store passes
:data:`NUMPY_TYPES` for its own checkpoints (written by :mod:`hardex.runs.files`), which hold
numpy arrays and numpy's RNG state: numpy's array and scalar reconstruction and its dtypes,
functions that only build arrays from bytes, never anything that can call arbitrary code.
Files of any other origin get no extra types.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["UnsafeFileError", "load_tensors", "NUMPY_TYPES"]


class UnsafeFileError(ValueError):
    """A file whose pickle needs more than tensors and plain containers; nothing of it ran."""


def _numpy_types() -> list[Any]:
    core = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
    multiarray = core.multiarray
    types: list[Any] = [np.ndarray, np.dtype, multiarray._reconstruct, multiarray.scalar,
                        # the same two functions as pickled by numpy 1.x (module numpy.core)
                        (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
                        (multiarray.scalar, "numpy.core.multiarray.scalar")]
    # numpy >= 1.25 may name a dtype by its class (numpy.dtypes.Float64DType, ...)
    for code in ("?", "b", "B", "h", "H", "i", "I", "l", "L", "q", "Q", "e", "f", "d"):
        types.append(type(np.dtype(code)))
    return types


#: numpy's array / scalar reconstruction and dtypes: what the run store's own checkpoints
#: hold besides tensors (numpy arrays, ``np.random.get_state()``).
NUMPY_TYPES: tuple[Any, ...] = tuple(_numpy_types())

_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def _refused_globals(path: Any, message: str) -> list[str]:
    """The globals a refused pickle names (from torch's message, else by scanning it)."""
    found = list(dict.fromkeys(_GLOBAL_RE.findall(message)))
    if found:
        return found
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:  # noqa: BLE001 - a non-zip (legacy) file: the message is all we have
        return []


def load_tensors(path: str | os.PathLike, *, what: str = "file", trusted: Sequence[Any] = (),
                 map_location: Any = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``, with ``trusted`` types allowed as well.

    A file whose pickle needs anything else raises :class:`UnsafeFileError` with one line:
    which file (``what`` names its role, e.g. "state dict"), what it asked for, and what to
    do. Nothing of the refused file is executed.
    """
    try:
        with torch.serialization.safe_globals(list(trusted)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        msg = str(err)
        if "weights_only" not in msg and "Weights only" not in msg:
            raise
        names = _refused_globals(path, msg)
        where = os.fspath(path) if isinstance(path, (str, os.PathLike)) else "(an in-memory file)"
        asked = ", ".join(names) if names else "a construct torch's safe unpickler does not allow"
        raise UnsafeFileError(
            f"refused to load {what} {where}: its pickle needs {asked}, which is not a tensor, number, "
            "string or plain container, and loading it could run code; nothing of it was run. If you trust where "
            "it comes from, load it yourself and re-save only its tensors (torch.save(model.state_dict(), f))"
        ) from None
