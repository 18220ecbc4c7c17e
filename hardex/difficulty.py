"""Per-example difficulty along the training trajectory.

The paper (Section 4.3, Algorithm 1) measures the difficulty of a training example as
the loss of the *clean* example, accumulated over the training trajectory up to an epoch
T (0-1 loss by default; CE and EL2N are the ablations of Table 5). This module keeps
those accumulators, keyed by the stable per-example dataset index, and turns them into
scores, rankings and index sets.

Decisions (also stated where they act):

* Arrays are as long as the FULL train split (``num_examples``), indexed by the stable
  dataset index, so subsets, pruned sets and branched runs share one coordinate system.
  An example never seen has count 0 and score NaN.
* Each update adds the per-example loss to a float64 sum and 1 to a count; ``scores``
  is sum / count, i.e. the mean loss over the epochs the example was seen (each example
  is seen once per epoch, so this is the trajectory average the paper uses; it differs
  from the paper's sum only by a constant factor, which min-max normalisation removes).
* Which clean batch: the trainer measures on the same augmented clean batch the step
  trains on (the crop/flip the model actually sees), with a separate eval-mode forward
  under ``torch.no_grad`` *before* the step, so batch-norm running statistics are never
  touched by tracking (see ``hardex.train``). Algorithm 1 likewise measures before the
  adversarial step of the batch.
* "Higher = harder" everywhere. External scores where LOW means hard (C-scores) are
  converted by ``1 - c``; min-max normalisation makes this the same as any other
  order-reversing affine map.
* A per-example per-class count of clean predictions (int32, N x C) is kept so that the
  most frequent prediction of an example (Fig. 16) can be read off.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

MEASURES: tuple[str, ...] = ("zero_one", "ce", "el2n")
"""Measures accumulated during training; "external" names scores from elsewhere."""


def per_example_losses(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """0-1 loss, cross-entropy and EL2N of each row of ``logits`` (float32, no grad).

    EL2N = ||softmax(logits) - onehot(label)||_2 (Paul et al. 2021).
    """
    with torch.no_grad():
        z = logits.detach().float()
        y = labels.detach().long().to(z.device)
        probs = torch.softmax(z, dim=1)
        onehot = F.one_hot(y, z.shape[1]).to(probs.dtype)
        return {
            "zero_one": (z.argmax(dim=1) != y).float(),
            "ce": F.cross_entropy(z, y, reduction="none"),
            "el2n": torch.linalg.vector_norm(probs - onehot, dim=1),
        }


def clean_logits(model: torch.nn.Module, x: torch.Tensor, autocast_dtype=None) -> torch.Tensor:
    """Logits of ``x`` in eval mode under ``torch.no_grad``, for difficulty tracking.

    Eval mode means batch norm uses (and does not update) its running statistics and
    dropout is off; every module's own train/eval flag is restored afterwards, so the
    call leaves the model exactly as it found it.
    """
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            if autocast_dtype is not None:
                with torch.autocast(device_type=x.device.type, dtype=autocast_dtype):
                    out = model(x)
            else:
                out = model(x)
    finally:
        for m, t in flags:
            m.training = t
    return out.float()


def _as_numpy_index(index) -> np.ndarray:
    if isinstance(index, torch.Tensor):
        index = index.detach().cpu().numpy()
    return np.asarray(index, dtype=np.int64)


class Accumulator:
    """Running per-example sums of clean losses, by stable dataset index.

    >>> acc = Accumulator(num_examples=50_000, num_classes=10)
    >>> acc.update(index, logits, labels)          # once per batch, clean logits
    >>> s = acc.scores("zero_one")                 # mean 0-1 loss per example, NaN if unseen
    """

    def __init__(self, num_examples: int, num_classes: int,
                 measures: Sequence[str] = MEASURES, track_predictions: bool = True):
        unknown = [m for m in measures if m not in MEASURES]
        if unknown:
            raise ValueError(f"unknown difficulty measure(s) {unknown}; allowed: {list(MEASURES)}")
        self.num_examples = int(num_examples)
        self.num_classes = int(num_classes)
        self.measures = tuple(measures)
        self._sums = {m: np.zeros(self.num_examples, dtype=np.float64) for m in self.measures}
        self._counts = np.zeros(self.num_examples, dtype=np.int64)
        self.track_predictions = bool(track_predictions)
        self._pred_counts = (np.zeros((self.num_examples, self.num_classes), dtype=np.int32)
                             if self.track_predictions else None)
        # Accelerator batches accumulate in device buffers (no host synchronisation per
        # step); they are added to the host arrays when anything reads them.
        self._pending: dict[str, torch.Tensor] | None = None

    # Host views: reading them first folds in what is pending on the device.
    @property
    def sums(self) -> dict[str, np.ndarray]:
        self._flush()
        return self._sums

    @property
    def counts(self) -> np.ndarray:
        self._flush()
        return self._counts

    @property
    def pred_counts(self) -> np.ndarray | None:
        self._flush()
        return self._pred_counts

    def _flush(self) -> None:
        p, self._pending = self._pending, None
        if p is None:
            return
        for m in self.measures:
            self._sums[m] += p[m].cpu().numpy()
        self._counts += p["count"].cpu().numpy()
        if self._pred_counts is not None:
            self._pred_counts += p["pred"].cpu().numpy().astype(np.int32)

    def _update_device(self, index: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        dev = logits.device
        idx = index.to(dev, torch.long)
        if idx.ndim != 1 or idx.shape[0] != logits.shape[0]:
            raise ValueError(f"index has shape {tuple(idx.shape)}, logits {tuple(logits.shape)}")
        # checked on the device, without waiting for it
        torch._assert_async(((idx >= 0) & (idx < self.num_examples)).all())
        if self._pending is None or self._pending["count"].device != dev:
            self._flush()
            n = self.num_examples
            self._pending = {m: torch.zeros(n, dtype=torch.float64, device=dev) for m in self.measures}
            self._pending["count"] = torch.zeros(n, dtype=torch.int64, device=dev)
            if self._pred_counts is not None:
                self._pending["pred"] = torch.zeros(n, self.num_classes, dtype=torch.int64, device=dev)
        p = self._pending
        losses = per_example_losses(logits, labels)
        for m in self.measures:
            p[m].index_add_(0, idx, losses[m].double())
        p["count"].index_add_(0, idx, torch.ones_like(idx))
        if "pred" in p:
            pred = logits.detach().argmax(dim=1)
            p["pred"].index_put_((idx, pred), torch.ones_like(idx), accumulate=True)

    def update(self, index, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add the losses of one batch of clean ``logits`` to the examples ``index``.

        An index must not repeat within one call (a batch holds each example once).
        Logits on an accelerator, with a tensor index, accumulate on the device (see
        ``_flush``); on the CPU the host arrays are updated directly.
        """
        if logits.device.type != "cpu" and torch.is_tensor(index):
            self._update_device(index, logits, labels)
            return
        idx = _as_numpy_index(index)
        if idx.ndim != 1 or len(idx) != logits.shape[0]:
            raise ValueError(f"index has shape {idx.shape}, logits {tuple(logits.shape)}")
        if len(idx) and (idx.min() < 0 or idx.max() >= self.num_examples):
            raise IndexError(f"dataset index out of range [0, {self.num_examples})")
        losses = per_example_losses(logits, labels)
        for m in self.measures:
            self.sums[m][idx] += losses[m].cpu().double().numpy()
        self.counts[idx] += 1
        if self.pred_counts is not None:
            pred = logits.detach().argmax(dim=1).cpu().numpy()
            self._pred_counts[idx, pred] += 1

    def scores(self, kind: str = "zero_one") -> np.ndarray:
        """Mean loss per example (float64, length ``num_examples``; NaN where never seen)."""
        if kind not in self.sums:
            raise KeyError(f"measure {kind!r} is not tracked; tracked: {list(self.measures)}")
        out = np.full(self.num_examples, np.nan)
        seen = self.counts > 0
        out[seen] = self.sums[kind][seen] / self.counts[seen]
        return out

    def most_frequent_prediction(self) -> np.ndarray:
        """Most frequent clean prediction per example (int64; -1 where never seen).

        Ties go to the lowest class id.
        """
        if self.pred_counts is None:
            raise RuntimeError("predictions were not tracked (track_predictions=False)")
        out = self.pred_counts.argmax(axis=1).astype(np.int64)
        out[self.counts == 0] = -1
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything, as arrays by dataset index: ``sum_<m>``, ``<m>`` (mean), ``count``,
        ``pred_counts`` and ``most_frequent_prediction``."""
        out: dict[str, np.ndarray] = {"count": self.counts.copy()}
        for m in self.measures:
            out[f"sum_{m}"] = self.sums[m].copy()
            out[m] = self.scores(m)
        if self.pred_counts is not None:
            out["pred_counts"] = self.pred_counts.copy()
            out["most_frequent_prediction"] = self.most_frequent_prediction()
        return out

    def state_dict(self) -> dict:
        """The arrays as CPU tensors (copies), the rest plain Python: a checkpoint of it
        loads with ``torch.load(..., weights_only=True)``."""
        return {
            "num_examples": self.num_examples,
            "num_classes": self.num_classes,
            "measures": list(self.measures),
            "sums": {m: torch.from_numpy(v.copy()) for m, v in self.sums.items()},
            "counts": torch.from_numpy(self.counts.copy()),
            "pred_counts": None if self.pred_counts is None else torch.from_numpy(self.pred_counts.copy()),
        }

    def load_state_dict(self, sd: Mapping) -> None:
        """From ``state_dict()``, or the numpy arrays older checkpoints hold."""
        if int(sd["num_examples"]) != self.num_examples or int(sd["num_classes"]) != self.num_classes:
            raise ValueError(
                f"accumulator shape mismatch: state has {sd['num_examples']} examples x "
                f"{sd['num_classes']} classes, this one {self.num_examples} x {self.num_classes}")
        self.measures = tuple(sd["measures"])
        self._pending = None
        self._sums = {m: np.asarray(v, dtype=np.float64).copy() for m, v in sd["sums"].items()}
        self._counts = np.asarray(sd["counts"], dtype=np.int64).copy()
        pc = sd.get("pred_counts")
        self._pred_counts = None if pc is None else np.asarray(pc, dtype=np.int32).copy()
        self.track_predictions = self._pred_counts is not None

    @classmethod
    def from_state_dict(cls, sd: Mapping) -> "Accumulator":
        acc = cls(sd["num_examples"], sd["num_classes"], sd["measures"],
                  track_predictions=sd.get("pred_counts") is not None)
        acc.load_state_dict(sd)
        return acc


# ---------------------------------------------------------------------------- scores


def minmax(scores) -> np.ndarray:
    """(S - min S) / (max S - min S), Algorithm 2 line 3 (float64; NaNs ignored and kept).

    If all finite scores are equal the result is all zeros (every example "easiest"),
    so DPLS degenerates to one-hot targets instead of dividing by zero.
    """
    s = np.asarray(scores, dtype=np.float64)
    finite = np.isfinite(s)
    if not finite.any():
        raise ValueError("minmax of scores with no finite value")
    lo, hi = s[finite].min(), s[finite].max()
    if hi == lo:
        return np.where(finite, 0.0, np.nan)
    return (s - lo) / (hi - lo)


def load_external_scores(path: str | Path, num_examples: int, *, key: str = "scores",
                         index_key: str | None = None, labels=None, labels_key: str = "labels",
                         lower_is_harder: bool = True) -> np.ndarray:
    """Per-example scores from an .npz, as "higher = harder" by dataset index.

    ``key`` holds the scores; ``index_key`` (optional) the dataset index of each score,
    otherwise the file must be in dataset-index order with ``num_examples`` entries.
    If ``labels`` (by dataset index) is given and the file has ``labels_key``, they must
    agree: this catches files in a different example order (e.g. published C-scores vs
    the JPEG copy of CIFAR-10). ``lower_is_harder`` (C-scores: consistency, low = hard)
    converts by ``1 - c``. Examples without a score are NaN.
    """
    with np.load(path) as f:
        if key not in f:
            raise KeyError(f"{path}: no key {key!r}; keys: {sorted(f.keys())}")
        vals = np.asarray(f[key], dtype=np.float64).ravel()
        idx = (np.asarray(f[index_key], dtype=np.int64).ravel() if index_key
               else np.arange(len(vals), dtype=np.int64))
        file_labels = np.asarray(f[labels_key]).ravel() if labels_key in f else None
    if index_key is None and len(vals) != num_examples:
        raise ValueError(f"{path}: {len(vals)} scores for {num_examples} examples and no "
                         f"index key to place them")
    if len(idx) != len(vals) or (len(idx) and (idx.min() < 0 or idx.max() >= num_examples)):
        raise ValueError(f"{path}: index does not match scores or lies outside [0, {num_examples})")
    if labels is not None and file_labels is not None:
        lab = np.asarray(labels if not isinstance(labels, torch.Tensor) else labels.cpu().numpy())
        mismatch = int((lab[idx] != file_labels).sum())
        if mismatch:
            raise ValueError(f"{path}: {mismatch} of {len(idx)} labels differ from the dataset's; "
                             f"the file is in a different example order")
    out = np.full(num_examples, np.nan)
    out[idx] = 1.0 - vals if lower_is_harder else vals
    return out


# --------------------------------------------------------------------------- ranking


def _finite_positions(scores: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.isfinite(scores))


def hardest(scores, k: int, labels=None, balanced: bool = False) -> np.ndarray:
    """Dataset indices of the ``k`` hardest examples (highest score; NaN = unseen, skipped).

    ``balanced`` takes k / C per class (needs ``labels`` by dataset index), as Table 19.
    """
    return select(scores, k=k, which="hard", labels=labels, balanced=balanced)


def easiest(scores, k: int, labels=None, balanced: bool = False) -> np.ndarray:
    """Dataset indices of the ``k`` easiest examples (lowest score)."""
    return select(scores, k=k, which="easy", labels=labels, balanced=balanced)


def select(scores, *, k: int | None = None, fraction: float | None = None, which: str = "hard",
           labels=None, balanced: bool = False) -> np.ndarray:
    """Dataset indices chosen by a difficulty rule (sorted ascending).

    Exactly one of ``k`` / ``fraction`` (of the examples with a finite score). Selection
    itself is ``data.topk`` / ``data.class_balanced_topk`` on the examples with a score;
    ties are broken as those functions do (deterministically).
    """
    from hardex import data  # lazy: data is an independent module

    if which not in ("hard", "easy"):
        raise ValueError(f"which must be 'hard' or 'easy', got {which!r}")
    if (k is None) == (fraction is None):
        raise ValueError("give exactly one of k and fraction")
    s = np.asarray(scores, dtype=np.float64)
    pos = _finite_positions(s)
    if fraction is not None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
        k = int(round(fraction * len(pos)))
    if k < 0 or k > len(pos):
        raise ValueError(f"k={k} outside [0, {len(pos)}] (examples with a score)")
    sub = torch.from_numpy(s[pos])
    if balanced:
        if labels is None:
            raise ValueError("balanced selection needs labels")
        lab = labels.cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
        chosen = data.class_balanced_topk(sub, torch.from_numpy(np.asarray(lab)[pos]), k,
                                          hardest=which == "hard")
    else:
        chosen = data.topk(sub, k, hardest=which == "hard")
    chosen = chosen.cpu().numpy() if isinstance(chosen, torch.Tensor) else np.asarray(chosen)
    return np.sort(pos[chosen.astype(np.int64)])


def quantile_bins(scores, n_bins: int) -> list[np.ndarray]:
    """Dataset indices of each difficulty quantile bin, easiest bin first (Fig. 9: quintiles).

    Bins come from ``data.quantile_bins`` over the examples with a finite score.
    """
    from hardex import data

    s = np.asarray(scores, dtype=np.float64)
    pos = _finite_positions(s)
    bins = data.quantile_bins(torch.from_numpy(s[pos]), n_bins)
    out = []
    for b in bins:
        b = b.cpu().numpy() if isinstance(b, torch.Tensor) else np.asarray(b)
        out.append(np.sort(pos[b.astype(np.int64)]))
    return out
