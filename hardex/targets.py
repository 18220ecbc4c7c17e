"""What the outer loss trains toward: one-hot, LS, DPLS (Algorithm 2) and DPR weights.

Conventions
-----------
* ``lam`` is the probability on the TRUE class, as in the paper's Algorithm 2:
  ``LS(y, lam, C)`` puts ``lam`` on the true class and ``(1 - lam) / (C - 1)`` on each
  other class. ``lam = 1`` is one-hot; ``lam = 1/C`` is uniform. Values outside
  ``[1/C, 1]`` are rejected (they would put more mass on a wrong class than on the
  true one, or a negative mass).
* DPLS (Algorithm 2): ``S`` = difficulty (higher = harder) is min-max normalised and
  example i gets ``LS(y_i, 1 - (1 - lam) * S_norm[i], C)``: the easiest example keeps
  its one-hot label (factor 1), the hardest gets factor ``lam``.
* The "average smoothing factor" that Tables 9, 16 and 17 report is the mean of the
  per-example factors over the training set (``average_factor``).
* DPR (Table 18, Appendix D "Ablation study on the regularization of DPLS"): the paper
  "applied the difficulty of each example to the loss to reweight the loss of each
  example, which is the same difficulty with DPLS" and compares it with pruning, which
  "corresponds to assigning zero values to the loss of hard examples". Our reading:
  the per-example WEIGHT is the very factor DPLS would use, ``w_i = 1 - (1 - lam) *
  S_norm[i]`` (easiest 1, hardest ``lam``; ``lam = 0`` would be pruning the hardest),
  applied to the one-hot CE loss, and the batch loss is ``sum_i w_i * l_i / n``
  (divided by the batch size, not by ``sum w``, so that down-weighting really removes
  loss, as pruning does). For TRADES the paper says the difference between DPLS and
  DPR "is the difference of application of the method to the loss for clean
  examples": DPR reweights the clean CE term and leaves the KL term as DPLS does
  (unchanged). ``lam`` for DPR may be any value in ``[0, 1]``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from hardex.difficulty import minmax


def check_lam(lam: float, num_classes: int) -> float:
    """``lam`` must lie in ``[1/C, 1]``; raise ValueError naming the value and the range."""
    lo = 1.0 / num_classes
    lam = float(lam)
    if not (lo - 1e-12 <= lam <= 1.0) or np.isnan(lam):
        raise ValueError(f"label-smoothing factor lam={lam} is outside [1/C, 1] = "
                         f"[{lo:.6g}, 1] for C={num_classes} classes")
    return lam


def one_hot(labels: torch.Tensor, num_classes: int, dtype=torch.float32) -> torch.Tensor:
    return F.one_hot(labels.long(), num_classes).to(dtype)


def ls_targets(labels: torch.Tensor, lam, num_classes: int, dtype=torch.float32) -> torch.Tensor:
    """Algorithm 2's ``LS``: ``lam`` on the true class, ``(1-lam)/(C-1)`` elsewhere.

    ``lam`` is a number or a tensor with one factor per label (DPLS). Each row sums to 1.
    """
    if num_classes < 2:
        raise ValueError("label smoothing needs at least 2 classes")
    labels = labels.long()
    lam_t = torch.as_tensor(lam, dtype=dtype, device=labels.device)
    if lam_t.ndim == 0:
        check_lam(float(lam_t), num_classes)
        lam_t = lam_t.expand(labels.shape[0])
    elif lam_t.shape != labels.shape:
        raise ValueError(f"lam has shape {tuple(lam_t.shape)}, labels {tuple(labels.shape)}")
    else:
        bad = (lam_t < 1.0 / num_classes - 1e-6) | (lam_t > 1.0 + 1e-6)
        if bool(bad.any()):
            check_lam(float(lam_t[bad][0]), num_classes)
    lam_t = lam_t.unsqueeze(1)
    off = (1.0 - lam_t) / (num_classes - 1)
    hot = F.one_hot(labels, num_classes).to(dtype)
    return hot * lam_t + (1.0 - hot) * off


def dpls_factors(scores, lam: float, num_classes: int | None = None) -> np.ndarray:
    """Per-example smoothing factors ``1 - (1 - lam) * minmax(S)`` (float64, by index).

    ``scores``: difficulty, higher = harder. Easiest -> 1, hardest -> ``lam``.
    Examples without a score (NaN: never seen, e.g. not in the training subset) get 1.
    """
    if num_classes is not None:
        check_lam(lam, num_classes)
    s = minmax(scores)
    f = 1.0 - (1.0 - float(lam)) * s
    return np.where(np.isfinite(f), f, 1.0)


def dpls_targets(labels: torch.Tensor, factors, num_classes: int,
                 dtype=torch.float32) -> torch.Tensor:
    """Soft targets for a batch from its per-example factors (``dpls_factors(...)[index]``)."""
    f = torch.as_tensor(np.asarray(factors) if not isinstance(factors, torch.Tensor) else factors,
                        dtype=dtype, device=labels.device)
    return ls_targets(labels, f, num_classes, dtype=dtype)


def average_factor(factors, index=None) -> float:
    """Mean per-example smoothing factor over the training set (Tables 9, 16, 17).

    ``index``: the dataset indices of the training set (default: all entries).
    """
    f = np.asarray(factors, dtype=np.float64)
    if index is not None:
        f = f[np.asarray(index, dtype=np.int64)]
    return float(f.mean())


def dpr_weights(scores, lam: float) -> np.ndarray:
    """Difficulty-proportional loss weights (DPR, Table 18): ``1 - (1 - lam) * minmax(S)``.

    Same numbers as ``dpls_factors``; here they scale each example's loss instead of
    smoothing its label. ``lam`` in ``[0, 1]``; examples without a score get weight 1.
    """
    lam = float(lam)
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"DPR weight of the hardest example lam={lam} is outside [0, 1]")
    f = 1.0 - (1.0 - lam) * minmax(scores)
    return np.where(np.isfinite(f), f, 1.0)


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                       weights: torch.Tensor | None = None,
                       reduction: str = "mean") -> torch.Tensor:
    """``-sum_c t_c log softmax(z)_c`` per example, optionally times ``weights``.

    ``targets`` may be class ids (int) or probability rows. With ``reduction="mean"``
    the weighted sum is divided by the batch size (see DPR in the module docstring).
    Computed in float32 whatever the logits' dtype.
    """
    logp = torch.log_softmax(logits.float(), dim=1)
    if targets.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):
        loss = -logp.gather(1, targets.long().unsqueeze(1)).squeeze(1)
    else:
        loss = -(targets.to(logp.dtype) * logp).sum(dim=1)
    if weights is not None:
        loss = loss * weights.to(loss.dtype)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / max(loss.shape[0], 1)
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
