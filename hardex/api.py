"""DPLS for your own training loop: track difficulty, then train toward DPLS targets.

Example (runs as is; ``tests/test_api.py`` executes exactly this block)::

    import torch
    from hardex.api import DifficultyTracker, DPLS

    torch.manual_seed(0)
    n, C = 512, 10
    x, y = torch.randn(n, 32), torch.randint(0, C, (n,))
    idx = torch.arange(n)  # a stable per-example index
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, C))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    tracker = DifficultyTracker(num_examples=n, num_classes=C)
    dpls = None
    for epoch in range(1, 7):
        if epoch == 4:  # T = 3: difficulty from epochs 1-3, DPLS from epoch 4 on
            dpls = DPLS(tracker.scores("zero_one"), lam=0.5, num_classes=C)
        for b in torch.randperm(n).split(64):
            if dpls is None:
                tracker.measure(model, x[b], y[b], idx[b])  # clean, eval mode, no grad
            x_adv = x[b] + 0.03 * torch.randn_like(x[b])  # your attack (e.g. PGD) here
            logits = model(x_adv)
            loss = dpls.loss(logits, y[b], idx[b]) if dpls else torch.nn.functional.cross_entropy(logits, y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    print(f"average smoothing factor {dpls.average_factor:.3f}")

``tracker.update(idx, clean_logits, y)`` is the lower-level call if you already have
clean logits that did not come from a train-mode forward (batch-norm statistics).
Difficulty is "higher = harder"; for C-scores (low = hard) use
``hardex.difficulty.load_external_scores``. ``DPR`` is the loss-reweighting variant of
Table 18 with the same interface.
"""

from __future__ import annotations

import numpy as np
import torch

from hardex import difficulty as _d
from hardex import targets as _t
from hardex.difficulty import load_external_scores, minmax  # noqa: F401  (public re-exports)
from hardex.targets import ls_targets, soft_cross_entropy  # noqa: F401

__all__ = ["DifficultyTracker", "DPLS", "DPR", "ls_targets", "soft_cross_entropy",
           "load_external_scores", "minmax"]


class DifficultyTracker(_d.Accumulator):
    """Per-example 0-1 / CE / EL2N of clean examples, accumulated by stable index.

    ``scores(kind)`` is the mean over the updates each example received (NaN if none).
    """

    def __init__(self, num_examples: int, num_classes: int,
                 measures=_d.MEASURES, track_predictions: bool = True):
        super().__init__(num_examples, num_classes, measures, track_predictions)

    def measure(self, model: torch.nn.Module, x: torch.Tensor, labels: torch.Tensor,
                index) -> torch.Tensor:
        """Eval-mode, no-grad forward of clean ``x`` (BN statistics untouched; each
        module's mode is restored), recorded for ``index``; returns the logits."""
        logits = _d.clean_logits(model, x)
        self.update(index, logits, labels)
        return logits


class DPLS:
    """Difficulty-proportional label smoothing (Algorithm 2).

    ``scores``: difficulty by index, higher = harder (NaN = no score -> one-hot).
    Example i trains toward ``LS(y_i, 1 - (1 - lam) * minmax(S)[i], C)``: the easiest
    example keeps its one-hot label, the hardest gets ``lam`` on its class.
    """

    def __init__(self, scores, lam: float, num_classes: int):
        self.lam = _t.check_lam(lam, num_classes)
        self.num_classes = int(num_classes)
        self.factors = _t.dpls_factors(scores, lam, num_classes)
        self.scored = np.flatnonzero(np.isfinite(np.asarray(scores, dtype=np.float64)))

    @property
    def average_factor(self) -> float:
        """Mean smoothing factor over the examples with a score (Tables 9, 16, 17)."""
        return _t.average_factor(self.factors, self.scored)

    def factors_for(self, index, device=None) -> torch.Tensor:
        idx = index.cpu().numpy() if isinstance(index, torch.Tensor) else np.asarray(index)
        return torch.as_tensor(self.factors[idx], dtype=torch.float32, device=device)

    def targets(self, labels: torch.Tensor, index) -> torch.Tensor:
        """Soft target rows (each sums to 1) for a batch."""
        return _t.ls_targets(labels, self.factors_for(index, labels.device), self.num_classes)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, index) -> torch.Tensor:
        """Soft-label cross-entropy of the batch toward its DPLS targets (batch mean)."""
        return _t.soft_cross_entropy(logits, self.targets(labels, index))


class DPR:
    """Difficulty-proportional loss reweighting (Table 18): CE of example i times
    ``1 - (1 - lam) * minmax(S)[i]``, summed and divided by the batch size."""

    def __init__(self, scores, lam: float):
        self.lam = float(lam)
        self.weights = _t.dpr_weights(scores, lam)

    def weights_for(self, index, device=None) -> torch.Tensor:
        idx = index.cpu().numpy() if isinstance(index, torch.Tensor) else np.asarray(index)
        return torch.as_tensor(self.weights[idx], dtype=torch.float32, device=device)

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, index) -> torch.Tensor:
        return _t.soft_cross_entropy(logits, labels, self.weights_for(index, labels.device))
