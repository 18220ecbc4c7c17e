"""Other training methods the paper compares DPLS with or combines it with (Tables 4, 6,
11-13), each a small unit the Trainer calls at fixed points of a step.

The formulas (pure functions, unit-tested against hand computations):

* MART (Wang et al., 2020; YisenWang/MART): ``BCE(f(x'), y) + beta * mean_i KL(p(x_i) ||
  p(x'_i)) (1 - p_y(x_i))`` where ``BCE = CE(f(x'), y) - log(1 - max_{k != y} p_k(x'))``.
  With DPLS the CE part trains toward the soft targets; the boosted part keeps y.
* AWP (Wu et al., 2020; csdongxian/AWP): a proxy copy of the model takes one SGD step
  (``proxy_lr``) that INCREASES the outer loss; per weight tensor with ndim > 1 the
  difference ``d`` becomes ``gamma * ||w|| * d / ||d||``; it is added before the outer
  forward / backward / optimiser step and removed after the step.
* SWA (Izmailov et al., 2018): ``torch.optim.swa_utils.AveragedModel`` updated at the end
  of every epoch from ``swa.from_epoch``; before the SWA model is evaluated its batch-norm
  statistics are recomputed (``update_bn``) on the un-augmented training set.
* SAT (Huang et al., 2020; LayneH/self-adaptive-training ``TRADES_SAT``): per-example
  soft target ``t_i`` starts one-hot; from ``sat.from_epoch`` each step sets ``t_i <- m t_i
  + (1 - m) softmax(f(x_i))`` from clean predictions and trains toward ``t_i`` with
  per-example weights ``max_j t_ij`` normalised to mean 1 in the batch (for TRADES the
  clean CE term, the KL term unchanged). The reference takes the predictions from the
  train-mode clean forward of its loss; here they come from an eval-mode, no-grad clean
  forward (the difficulty tracker's when it runs), so that AWP's proxy loss and the
  outer loss see the same targets; PGD-AT has no clean train-mode forward at all.
* TE (Dong et al., 2022; dongyp13/memorization-AT ``PGD_TE``): ``s_i`` starts at zero; from
  ``te.from_epoch`` ``s_i <- m s_i + (1 - m) softmax(f(x_i))`` (clean, eval mode) and
  ``s_hat = s_i / sum(s_i)``; loss ``+ w(e) * mean_{i,c} (softmax(z_i)_c - s_hat_ic)^2``
  on the logits the CE term trains (x' for PGD-AT, x for TRADES) and, for PGD-AT, the same
  term inside the attack objective; ``w(e) = weight * exp(-5 (1 - (e - from)/(until -
  from))^2)`` for ``from <= e <= until`` and ``weight`` after (the sigmoid ramp-up of
  Laine & Aila, 2017, with the reference's 1-based epochs).
* KD (Chen et al., 2021, "properly learned smoothening"; VITA-Group/Alleviate-Robust-
  Overfitting): ``(1 - sum_k a_k) CE(f(x'), t) + sum_k a_k T^2 KL(softmax(g_k(x')/T) ||
  softmax(f(x')/T))`` with teachers ``g_k`` (eval mode) seeing the student's x'.
* Liu et al. (2022, IVRL/RobustOverfit-HardInstance ``train_fast.py``): adaptive target
  ``t_i = b onehot(y_i) + (1 - b) m_i`` with ``m_i`` an EMA (momentum ``rho``, from
  one-hot) of predictions (here clean eval-mode ones, as SAT); reweight: each example's
  loss times ``w_i`` (e.g. ``nat_prob`` = ``p_y(x_i)``), the batch loss ``sum w l / sum w``.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, update_bn


# ------------------------------------------------------------------ formulas


def mart_loss(logits_nat: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor, beta: float,
              targets: torch.Tensor | None = None, weights: torch.Tensor | None = None,
              reduction: str = "mean") -> torch.Tensor:
    """MART's outer loss per example (``reduction="none"``) or its batch mean.

    ``targets``: soft rows (DPLS) for the CE part (default: y); ``weights`` scale the
    boosted CE part (DPR)."""
    from hardex.targets import soft_cross_entropy

    za, zn = logits_adv.float(), logits_nat.float()
    p_adv = za.softmax(1)
    top2 = p_adv.topk(2, dim=1).indices
    wrong = torch.where(top2[:, 0] == y, top2[:, 1], top2[:, 0])
    ce = soft_cross_entropy(za, y if targets is None else targets, reduction="none")
    boost = -torch.log(1.0001 - p_adv.gather(1, wrong[:, None]).squeeze(1) + 1e-12)
    bce = ce + boost
    if weights is not None:
        bce = bce * weights.to(bce.dtype)
    p_nat = zn.softmax(1)
    kl = (p_nat * (torch.log(p_nat + 1e-12) - torch.log(p_adv + 1e-12))).sum(1)
    per = bce + beta * kl * (1.0 - p_nat.gather(1, y[:, None]).squeeze(1))
    return per if reduction == "none" else per.mean()


def kd_terms(student_logits: torch.Tensor, teacher_logits: dict[str, torch.Tensor],
             temperature: float) -> dict[str, torch.Tensor]:
    """Per-example ``T^2 KL(softmax(g/T) || softmax(f/T))`` for each teacher."""
    T = float(temperature)
    logq = F.log_softmax(student_logits.float() / T, dim=1)
    out = {}
    for name, g in teacher_logits.items():
        logp = F.log_softmax(g.float() / T, dim=1)
        out[name] = T * T * (logp.exp() * (logp - logq)).sum(1)
    return out


def te_rampup(epoch: int, start: int, until: int) -> float:
    """The ramp-up factor in [0, 1] of TE's consistency weight at (1-based) ``epoch``."""
    if epoch < start:
        return 0.0
    if epoch >= until:
        return 1.0
    phase = 1.0 - (epoch - start) / (until - start)
    return math.exp(-5.0 * phase * phase)


def te_consistency(logits: torch.Tensor, soft: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``(softmax(z) - s)^2`` averaged over classes and examples (``"mean"``) or summed."""
    sq = (logits.float().softmax(1) - soft) ** 2
    return sq.mean() if reduction == "mean" else sq.sum()


def sat_weights(soft: torch.Tensor) -> torch.Tensor:
    """SAT's sample weights: ``max_j t_ij``, normalised to mean 1 over the batch."""
    w = soft.max(dim=1).values
    return w * (w.shape[0] / w.sum())


def reweight_weights(mode: str, y: torch.Tensor, logits_adv: torch.Tensor | None,
                     clean_logits: torch.Tensor | None) -> torch.Tensor:
    """Liu et al.'s per-example loss weights (detached)."""
    src = clean_logits if mode.startswith(("nat_", "comp_nat_")) else logits_adv
    p = src.detach().float().softmax(1)
    v = p.max(1).values if "max_prob" in mode else p.gather(1, y[:, None]).squeeze(1)
    return 1.0 - v if mode.startswith("comp_") else v


def awp_diffs(model: torch.nn.Module, proxy: torch.nn.Module, loss_fn: Callable[[torch.nn.Module], torch.Tensor],
              gamma: float, lr: float) -> dict[str, torch.Tensor]:
    """AWP's weight perturbation: ``{name: gamma * ||w|| * d / ||d||}`` for every parameter
    with ndim > 1, where ``d`` is one SGD step (``lr``) of ``proxy`` (a copy of ``model``)
    that increases ``loss_fn``. ``model`` is not changed."""
    proxy.load_state_dict(model.state_dict())
    proxy.train()
    opt = torch.optim.SGD(proxy.parameters(), lr=lr)
    opt.zero_grad(set_to_none=True)
    (-loss_fn(proxy)).backward()
    opt.step()
    out = {}
    with torch.no_grad():
        theirs = dict(proxy.named_parameters())
        for name, w in model.named_parameters():
            if w.ndim <= 1:
                continue
            d = theirs[name] - w
            out[name] = gamma * w.norm() * d / (d.norm() + 1e-20)
    return out


def add_to_weights(model: torch.nn.Module, diffs: dict[str, torch.Tensor], sign: float) -> None:
    with torch.no_grad():
        for name, w in model.named_parameters():
            if name in diffs:
                w.add_(diffs[name], alpha=sign)


# ------------------------------------------------------------------ per-example EMA


class EMATargets:
    """Per-example running average of predicted distributions, by dataset index.

    ``init="onehot"``: a row starts at one-hot(y) when first touched (SAT, Liu et al.);
    ``"zeros"``: at zero (TE, which renormalises)."""

    def __init__(self, num_examples: int, num_classes: int, momentum: float, init: str, device):
        self.momentum = float(momentum)
        self.init = init
        self.rows = torch.zeros(num_examples, num_classes, device=device)
        self.seen = torch.zeros(num_examples, dtype=torch.bool, device=device)

    def update(self, index: torch.Tensor, y: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        index = index.to(self.rows.device)
        cur = self.rows[index]
        if self.init == "onehot":
            fresh = ~self.seen[index]
            cur[fresh] = F.one_hot(y[fresh].long().to(cur.device), cur.shape[1]).to(cur.dtype)
        new = self.momentum * cur + (1.0 - self.momentum) * probs.detach().float().to(cur.device)
        self.rows[index] = new
        self.seen[index] = True
        return new

    def state_dict(self) -> dict:
        return {"rows": self.rows.detach().cpu().clone(), "seen": self.seen.cpu().clone()}

    def load_state_dict(self, sd: dict) -> None:
        self.rows.copy_(sd["rows"])
        self.seen.copy_(sd["seen"])


# ------------------------------------------------------------------ hooks


@dataclass
class Batch:
    """One training step's data as the hooks see it. ``targets``/``weights`` start as the
    Trainer's (labels or LS/DPLS rows; DPR weights) and hooks may replace them."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    epoch: int
    targets: torch.Tensor
    weights: torch.Tensor | None
    clean: torch.Tensor | None = None  # eval-mode no-grad clean logits, computed on demand
    x_adv: torch.Tensor | None = None  # the training attack's x' (None for STD)
    attack_terms: list = field(default_factory=list)  # callables logits -> scalar (summed objective)
    loss_terms: list = field(default_factory=list)    # callables (logits_trained) -> scalar
    loss_weights: torch.Tensor | None = None  # per-example factors of the batch-mean loss (RST)
    logs: dict[str, Any] = field(default_factory=dict)


class Method:
    """A hook set; every hook is optional. Order in a step: ``prepare`` (before the attack),
    ``before_update`` (after the attack, before the outer forward), ``after_update`` (after
    the optimiser step); ``end_epoch`` after the epoch's last step."""

    name = "method"

    def prepare(self, tr, b: Batch) -> None: ...
    def before_update(self, tr, b: Batch) -> None: ...
    def after_update(self, tr, b: Batch) -> None: ...
    def end_epoch(self, tr, epoch: int) -> None: ...
    def state_dict(self) -> dict: return {}
    def load_state_dict(self, sd: dict) -> None: ...


def _clean(tr, b: Batch) -> torch.Tensor:
    if b.clean is None:
        from hardex.difficulty import clean_logits
        b.clean = clean_logits(tr.model, b.x, tr.autocast_dtype)
    return b.clean


class _EMAPredictions(Method):
    """Shared by SAT and Liu et al.'s adaptive target: from ``cfg.from_epoch`` on, each
    example's running average of its clean predicted distribution (rows start at one-hot)."""

    def __init__(self, cfg, tr):
        self.cfg = cfg
        self.ema = EMATargets(tr.num_examples, tr.num_classes, cfg.momentum, "onehot", tr.device)

    def averaged(self, tr, b) -> torch.Tensor | None:
        """This batch's updated averages, or None before ``from_epoch``."""
        if b.epoch < self.cfg.from_epoch:
            return None
        return self.ema.update(b.index, b.y, _clean(tr, b).float().softmax(1))

    def state_dict(self):
        return self.ema.state_dict()

    def load_state_dict(self, sd):
        self.ema.load_state_dict(sd)


class SAT(_EMAPredictions):
    name = "sat"

    def prepare(self, tr, b):
        soft = self.averaged(tr, b)
        if soft is not None:
            b.targets, b.weights = soft, sat_weights(soft)


class AdaptiveTarget(_EMAPredictions):
    name = "adaptive_target"

    def prepare(self, tr, b):
        m = self.averaged(tr, b)
        if m is not None:
            hot = F.one_hot(b.y.long(), m.shape[1]).to(m.dtype)
            b.targets = self.cfg.onehot_weight * hot + (1.0 - self.cfg.onehot_weight) * m


class TE(Method):
    name = "te"

    def __init__(self, cfg, tr):
        self.cfg = cfg
        self.ema = EMATargets(tr.num_examples, tr.num_classes, cfg.momentum, "zeros", tr.device)

    def weight(self, epoch: int) -> float:
        return self.cfg.weight * te_rampup(epoch, self.cfg.from_epoch, self.cfg.ramp_until)

    def prepare(self, tr, b):
        if b.epoch < self.cfg.from_epoch:
            return
        s = self.ema.update(b.index, b.y, _clean(tr, b).float().softmax(1))
        s_hat = s / s.sum(1, keepdim=True)
        w = self.weight(b.epoch)
        n = b.x.shape[0]
        # the attack maximises a SUM over the batch (attacks.pgd's convention): the
        # reference's CE mean + w * mean_{i,c} is that sum divided by n
        b.attack_terms.append(lambda z: w * n * te_consistency(z, s_hat))
        b.loss_terms.append(lambda z: w * te_consistency(z, s_hat))
        b.logs["te_weight"] = w

    def state_dict(self):
        return self.ema.state_dict()

    def load_state_dict(self, sd):
        self.ema.load_state_dict(sd)


class AWP(Method):
    name = "awp"

    def __init__(self, cfg, tr):
        self.cfg = cfg
        self.proxy = None  # a scratch copy, reloaded from the model every step: no state
        self.diffs = None

    def before_update(self, tr, b):
        if b.epoch < self.cfg.from_epoch:
            return
        if self.proxy is None:
            self.proxy = copy.deepcopy(tr.model)
        self.diffs = awp_diffs(tr.model, self.proxy, lambda m: tr.outer_loss(m, b)[0],
                               self.cfg.gamma, self.cfg.proxy_lr)
        add_to_weights(tr.model, self.diffs, +1.0)

    def after_update(self, tr, b):
        if self.diffs is not None:
            add_to_weights(tr.model, self.diffs, -1.0)
            self.diffs = None


class SWA(Method):
    name = "swa"

    def __init__(self, cfg, tr):
        self.cfg = cfg
        self.averaged = AveragedModel(tr.model)

    @property
    def active(self) -> bool:
        return int(self.averaged.n_averaged) > 0

    def end_epoch(self, tr, epoch):
        """Average in this epoch's weights, then recompute the average's batch-norm
        statistics on the un-augmented training set (fixed order, no randomness), so the
        averaged model (and a checkpoint of it) is always ready to evaluate."""
        if epoch < self.cfg.from_epoch:
            return
        self.averaged.update_parameters(tr.model)
        ds = tr.training_set(epoch)
        bs = tr.cfg.eval.batch_size
        from hardex import data
        batches = (data.to_float(ds.images[i:i + bs]) for i in range(0, len(ds), bs))
        update_bn(batches, self.averaged, device=tr.device)

    def model(self, tr) -> torch.nn.Module:
        return self.averaged.module

    def state_dict(self):
        return {k: v.detach().cpu().clone() for k, v in self.averaged.state_dict().items()}

    def load_state_dict(self, sd):
        self.averaged.load_state_dict(sd)


def exported_state(trainer_state: dict) -> dict:
    """The model state a run hands on, from a ``Trainer.state_dict()`` (e.g. a checkpoint's
    ``["trainer"]``): the SWA average once it has started, else the trained model."""
    swa = trainer_state.get("methods", {}).get("swa")
    if swa and int(swa["n_averaged"]) > 0:
        return {k[len("module."):]: v for k, v in swa.items() if k.startswith("module.")}
    return trainer_state["model"]


def build(cfg, tr) -> list[Method]:
    """The hooks a TrainConfig asks for, in the order they run."""
    out: list[Method] = []
    for name, cls in (("sat", SAT), ("adaptive_target", AdaptiveTarget), ("te", TE), ("awp", AWP),
                      ("swa", SWA)):
        sub = getattr(cfg, name)
        if sub is not None:
            out.append(cls(sub, tr))
    return out


# ------------------------------------------------------------------ RST (Carmon et al., 2019)


def load_unlabeled(source, sha256: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pseudo-labelled unlabelled images for RST: an .npz path with ``images`` (uint8, N x H
    x W x C or N x C x H x W) and ``labels`` (pseudo labels, integers), or such a mapping.
    Returns (uint8 N x C x H x W, int64 labels). ``sha256``: the file's, checked."""
    if isinstance(source, (str, os.PathLike)):
        if sha256 is not None:
            from hardex.provenance import sha256_file
            got = sha256_file(source)
            if got != sha256:
                raise ValueError(f"unlabelled data {source}: sha256 {got} differs from the config's {sha256}")
        with np.load(source) as z:
            arrays = {k: z[k] for k in z.files}
    else:
        arrays = dict(source)
    missing = [k for k in ("images", "labels") if k not in arrays]
    if missing:
        raise KeyError(f"unlabelled data needs keys 'images' and 'labels'; missing {missing} "
                       f"(has {sorted(arrays)})")
    x, y = np.asarray(arrays["images"]), np.asarray(arrays["labels"])
    if x.dtype != np.uint8 or x.ndim != 4:
        raise ValueError(f"unlabelled images must be uint8 N x H x W x C or N x C x H x W, got {x.dtype} {x.shape}")
    if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if y.shape != (x.shape[0],) or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"pseudo labels must be {x.shape[0]} integers, got {y.dtype} {y.shape}")
    return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64))


class Unlabeled:
    """RST's pseudo-labelled set: the running permutation batches are drawn from (own
    generator, seed + 2), the per-image counts of times trained / predicted right (pseudo
    label) while difficulty is tracked, and the DPLS factors once computed."""

    name = "rst"

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, num_classes: int, seed: int, device):
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(f"pseudo labels must lie in [0, {num_classes - 1}], got "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        self.images, self.labels = images.to(device), labels.to(device)
        self.n = len(labels)
        self.generator = torch.Generator(device="cpu").manual_seed(seed + 2)
        self.perm = torch.randperm(self.n, generator=self.generator)
        self.pos = 0
        self.trained = torch.zeros(self.n, dtype=torch.float64)
        self.right = torch.zeros(self.n, dtype=torch.float64)
        self.factors: np.ndarray | None = None

    def draw(self, k: int) -> torch.Tensor:
        """The next ``k`` indices of the running permutation (a fresh one when it runs out)."""
        out = []
        while k > 0:
            if self.pos == self.n:
                self.perm, self.pos = torch.randperm(self.n, generator=self.generator), 0
            take = self.perm[self.pos:self.pos + k]
            out.append(take)
            self.pos += len(take)
            k -= len(take)
        return torch.cat(out)

    def track(self, idx: torch.Tensor, logits: torch.Tensor) -> None:
        right = (logits.argmax(1) == self.labels[idx.to(self.labels.device)]).double().cpu()
        self.trained.index_add_(0, idx.cpu(), torch.ones_like(right))
        self.right.index_add_(0, idx.cpu(), right)

    def scores(self) -> np.ndarray:
        """``1 - right / trained`` per image (the paper's Section 5 ratio as an error rate; NaN:
        never trained while tracked)."""
        t = self.trained.numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(t > 0, 1.0 - self.right.numpy() / t, np.nan)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "perm": self.perm.clone(), "pos": self.pos,
                "trained": self.trained.clone(), "right": self.right.clone(),
                "factors": None if self.factors is None else self.factors.copy()}

    def load_state_dict(self, sd: dict) -> None:
        self.generator.set_state(sd["generator"])
        self.perm, self.pos = sd["perm"].clone(), int(sd["pos"])
        self.trained, self.right = sd["trained"].clone(), sd["right"].clone()
        self.factors = None if sd["factors"] is None else np.asarray(sd["factors"]).copy()
