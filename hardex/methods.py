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
* RST (Carmon et al., 2019; yaircarmon/semisup-adv): every batch mixes pseudo-labelled
  unlabelled images into the labelled ones, trained as if labelled (their pseudo labels
  as targets, their losses times ``weight``); DPLS on them ranks them by ``1 - right /
  trained`` over the tracked epochs (the paper's Section 5).

Each method is a ``Method`` (its hooks, in the order a step calls them, are listed
there); ``build`` is the one place that maps a TrainConfig to its units, so the Trainer
names no method: its step is the same for all of them.
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

from hardex import targets as tgt


# ------------------------------------------------------------------ formulas


def mart_loss(logits_nat: torch.Tensor, logits_adv: torch.Tensor, y: torch.Tensor, beta: float,
              targets: torch.Tensor | None = None, weights: torch.Tensor | None = None,
              reduction: str = "mean") -> torch.Tensor:
    """MART's outer loss per example (``reduction="none"``) or its batch mean.

    ``targets``: soft rows (DPLS) for the CE part (default: y); ``weights`` scale the
    boosted CE part (DPR)."""
    za, zn = logits_adv.float(), logits_nat.float()
    p_adv = za.softmax(1)
    top2 = p_adv.topk(2, dim=1).indices
    wrong = torch.where(top2[:, 0] == y, top2[:, 1], top2[:, 0])
    ce = tgt.soft_cross_entropy(za, y if targets is None else targets, reduction="none")
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
    """One training step's data as the hooks see it.

    Rows ``0 .. labelled - 1`` are training examples (``index``: their dataset indices);
    rows after them were appended by ``Method.extend`` (RST's, with index ``num_examples +
    i`` for its image i). ``targets`` / ``weights`` are the Trainer's (labels or LS / DPLS
    rows; DPR weights) unless a ``targets`` hook gave them."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor
    epoch: int
    labelled: int | None = None  # None: every row
    targets: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    clean: torch.Tensor | None = None  # eval-mode no-grad clean logits, computed on demand
    x_adv: torch.Tensor | None = None  # the training attack's x' (None for STD)
    attack_terms: list = field(default_factory=list)  # callables logits -> scalar (summed objective)
    loss_terms: list = field(default_factory=list)    # callables (logits_trained) -> scalar
    logs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.labelled is None:
            self.labelled = len(self.y)


@dataclass
class Outer:
    """A batch's outer forward (``Trainer.outer_loss``) before the batch reduction.

    ``mean`` is the algorithm's own arithmetic of the unweighted batch mean where it
    differs from ``per.sum() / n`` in the last bits (TRADES computes it as earlier versions
    did, so their numbers stay bit-identical); it no longer applies once a hook replaces
    ``per``."""

    per: torch.Tensor  # per-example loss (fp32)
    trained: torch.Tensor  # the logits the loss trains: f(x') for PGD-AT and MART, f(x) for STD and TRADES
    logits_nat: torch.Tensor | None  # train-mode f(x) (STD, TRADES, MART)
    logits_adv: torch.Tensor | None  # f(x') (every algorithm but STD)
    sums: dict[str, torch.Tensor] = field(default_factory=dict)  # the step's sums for the metrics row
    mean: Callable[[], torch.Tensor] | None = None


class Method:
    """A hook set; every hook is optional. ``build`` makes a TrainConfig's units; the
    Trainer calls a hook on each unit in ``build``'s order. In the order they run:

    * ``extra_rows``: how many rows ``extend`` appends to every batch (the training
      examples of a batch are as many fewer, so a step still has ``batch_size`` rows);
    * ``extend(tr, images, y, index)`` -> (images, y, index): append rows to a batch
      before its augmentation;
    * ``track(tr, b)``: in a tracked epoch (``e <= T``), with ``b.clean`` the clean logits
      of the whole batch: track the rows the unit appended (the Trainer tracks the
      training examples);
    * ``targets(tr, b, ds)`` -> (targets, weights) or None: the batch's targets and loss
      weights instead of ``Trainer.batch_targets(..., ds)``;
    * ``prepare(tr, b)``: before the attack (attack and loss terms, clean logits);
    * ``before_update(tr, b)``: after the attack, before the outer forward;
    * ``per_example(tr, b, o)`` -> tensor or None: a new per-example loss from the outer
      forward ``o`` (``Outer``);
    * ``loss_weights(tr, b, o)`` -> (w, d) or None: the batch loss becomes
      ``sum_i w_i l_i / d`` instead of the batch mean (Liu et al.: ``d = sum w``, a
      weighted mean; RST: ``d`` = the batch size, so a lower weight removes loss);
    * ``after_update(tr, b)``: after the optimiser step;
    * ``end_epoch(tr, epoch)``: after the epoch's last step;
    * ``epoch_metrics(tr)`` -> dict: entries of the epoch's metrics row;
    * ``eval_model(tr)`` -> module or None: the model evaluations use instead of the
      trained one.

    ``per_example`` and ``loss_weights`` are part of the outer loss, so they also run
    inside AWP's proxy loss (on the proxy's logits). At most one unit answers
    ``targets``, ``loss_weights`` and ``eval_model`` (TrainConfig allows no two such
    methods together; the Trainer raises if two answer).
    """

    name = "method"
    extra_rows = 0

    def extend(self, tr, images, y, index): return images, y, index
    def track(self, tr, b: Batch) -> None: ...
    def targets(self, tr, b: Batch, ds): return None
    def prepare(self, tr, b: Batch) -> None: ...
    def before_update(self, tr, b: Batch) -> None: ...
    def per_example(self, tr, b: Batch, o: Outer) -> torch.Tensor | None: return None
    def loss_weights(self, tr, b: Batch, o: Outer): return None
    def after_update(self, tr, b: Batch) -> None: ...
    def end_epoch(self, tr, epoch: int) -> None: ...
    def epoch_metrics(self, tr) -> dict: return {}
    def eval_model(self, tr) -> torch.nn.Module | None: return None
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

    def targets(self, tr, b, ds):
        soft = self.averaged(tr, b)
        return None if soft is None else (soft, sat_weights(soft))


class AdaptiveTarget(_EMAPredictions):
    """No loss weights of its own: TrainConfig combines it with one-hot targets only."""

    name = "adaptive_target"

    def targets(self, tr, b, ds):
        m = self.averaged(tr, b)
        if m is None:
            return None
        hot = F.one_hot(b.y.long(), m.shape[1]).to(m.dtype)
        return self.cfg.onehot_weight * hot + (1.0 - self.cfg.onehot_weight) * m, None


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


class KD(Method):
    """The teachers (``Trainer(teachers=...)``, copied, eval mode, frozen) see the
    student's x' in the training precision."""

    name = "kd"

    def __init__(self, cfg, tr, teachers: dict[str, torch.nn.Module]):
        missing = set(cfg.teachers) - set(teachers)
        if missing:
            raise KeyError(f"kd names teachers {sorted(missing)} that were not passed to "
                           f"Trainer(teachers=...); have: {sorted(teachers)}")
        self.cfg = cfg
        self.teachers = {}
        for k in sorted(cfg.teachers):
            t = copy.deepcopy(teachers[k]).to(tr.device).eval()
            for p in t.parameters():
                p.requires_grad_(False)
            self.teachers[k] = t

    def per_example(self, tr, b, o):
        with torch.no_grad(), tr.autocast():
            teach = {k: self.teachers[k](b.x_adv) for k in self.cfg.teachers}
        terms = kd_terms(o.logits_adv, teach, self.cfg.temperature)
        return self.cfg.ce_weight * o.per + sum(self.cfg.teachers[k] * v for k, v in terms.items())


class Reweight(Method):
    """Liu et al.'s instance reweighting from ``from_epoch``; the ``nat_`` modes weigh by
    the clean eval-mode predictions of the model before the step (so AWP's proxy loss
    has the same weights), the others by the outer forward's f(x')."""

    name = "reweight"

    def __init__(self, cfg, tr):
        self.cfg = cfg
        self.natural = cfg.mode.startswith(("nat_", "comp_nat_"))

    def prepare(self, tr, b):
        if self.natural and b.epoch >= self.cfg.from_epoch:
            _clean(tr, b)

    def loss_weights(self, tr, b, o):
        if b.epoch < self.cfg.from_epoch:
            return None
        w = reweight_weights(self.cfg.mode, b.y, o.logits_adv, b.clean if self.natural else None)
        return w, w.sum()


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

    def epoch_metrics(self, tr):
        return {"swa_averaged": int(self.averaged.n_averaged)}

    def eval_model(self, tr):
        return self.averaged.module if self.active else None

    def state_dict(self):
        return {k: v.detach().cpu().clone() for k, v in self.averaged.state_dict().items()}

    def load_state_dict(self, sd):
        self.averaged.load_state_dict(sd)


def saved_states(trainer_state: dict) -> dict[str, dict]:
    """Each unit's state in a ``Trainer.state_dict()`` by name (checkpoints from before RST
    was a unit hold its state at the top level, as "rst")."""
    old = {"rst": trainer_state["rst"]} if "rst" in trainer_state else {}
    return {**old, **trainer_state.get("methods", {})}


def exported_state(trainer_state: dict) -> dict:
    """The model state a run hands on, from a ``Trainer.state_dict()`` (e.g. a checkpoint's
    ``["trainer"]``): the SWA average once it has started, else the trained model."""
    swa = trainer_state.get("methods", {}).get("swa")
    if swa and int(swa["n_averaged"]) > 0:
        return {k[len("module."):]: v for k, v in swa.items() if k.startswith("module.")}
    return trainer_state["model"]


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


class RST(Method):
    """RST on the pseudo-labelled set ``Trainer(unlabeled=...)`` (``load_unlabeled``).

    Every batch ends with ``extra_rows`` of its images, the next ones of a running
    permutation (own generator, seed + 2; a fresh permutation when one runs out). While
    difficulty is tracked, each image counts the times it was trained on and predicted
    right (its pseudo label). Targets: the pseudo labels, or from ``targets_from`` DPLS
    factors of the difficulty ``1 - right / trained``, frozen when first needed as the
    labelled factors are; ``cfg.dpls`` says which part gets DPLS. Each of its losses
    weighs ``cfg.weight`` in the batch mean."""

    name = "rst"

    def __init__(self, cfg, tr, source):
        if source is None:
            raise ValueError("cfg.rst needs pseudo-labelled data: Trainer(unlabeled=<.npz path or "
                             "{'images': uint8, 'labels': ints}>)")
        images, labels = load_unlabeled(source, cfg.sha256)
        want = tuple(tr.base_train.images.shape[1:])
        if tuple(images.shape[1:]) != want:
            raise ValueError(f"unlabelled images have shape {tuple(images.shape[1:])} (C, H, W), the "
                             f"training images {want}")
        C = tr.num_classes
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= C):
            raise ValueError(f"pseudo labels must lie in [0, {C - 1}], got "
                             f"[{int(labels.min())}, {int(labels.max())}]")
        self.cfg = cfg
        self.extra_rows = round(tr.cfg.batch_size * cfg.fraction)
        self.images, self.labels = images.to(tr.device), labels.to(tr.device)
        self.n = len(labels)
        self.generator = torch.Generator(device="cpu").manual_seed(tr.cfg.seed + 2)
        self.perm = torch.randperm(self.n, generator=self.generator)
        self.pos = 0
        self.trained = torch.zeros(self.n, dtype=torch.float64)
        self.right = torch.zeros(self.n, dtype=torch.float64)
        self.factors: np.ndarray | None = None
        self._factors_on_device: torch.Tensor | None = None  # fp32 copy: a batch's factors are a gather

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

    def extend(self, tr, images, y, index):
        u = self.draw(self.extra_rows)
        return (torch.cat([images, self.images[u.to(self.images.device)]]),
                torch.cat([y, self.labels[u.to(self.labels.device)]]),
                torch.cat([index, (tr.num_examples + u).to(index.device)]))

    def track(self, tr, b):
        n = b.labelled
        idx = (b.index[n:] - tr.num_examples).cpu()
        right = (b.clean[n:].argmax(1) == b.y[n:]).double().cpu()
        self.trained.index_add_(0, idx, torch.ones_like(right))
        self.right.index_add_(0, idx, right)

    def scores(self) -> np.ndarray:
        """``1 - right / trained`` per image (the paper's Section 5 ratio as an error rate; NaN:
        never trained while tracked)."""
        t = self.trained.numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(t > 0, 1.0 - self.right.numpy() / t, np.nan)

    def targets(self, tr, b, ds):
        """DPLS (``tr.cfg.targets``) on the part(s) ``cfg.dpls`` names; class ids where
        neither part has soft rows, else both parts as rows; DPR weights of the labelled
        part with weight 1 for the pseudo-labelled one."""
        n, e, part = b.labelled, b.epoch, self.cfg.dpls
        y_l, y_u = b.y[:n], b.y[n:]
        t_l, w_l = tr.batch_targets(b.index[:n], y_l, e, ds) if part != "unlabelled" else (y_l, None)
        t_u = y_u
        if part != "labelled" and e >= tr.cfg.targets_from:
            if self.factors is None:
                s = self.scores()
                if not np.isfinite(s).any():
                    raise RuntimeError(f"rst DPLS from epoch {e}: no unlabelled difficulty yet "
                                       f"(tracking to T={tr.cfg.track_until})")
                self.factors = tgt.dpls_factors(s, tr.cfg.targets.lam, tr.num_classes)
            if self._factors_on_device is None:
                self._factors_on_device = torch.as_tensor(self.factors, dtype=torch.float32, device=y_u.device)
            f = self._factors_on_device[(b.index[n:] - tr.num_examples).to(y_u.device)]
            t_u = tgt.ls_targets(y_u, f, tr.num_classes)
        if t_l.dtype.is_floating_point or t_u.dtype.is_floating_point:
            t_l, t_u = (t if t.dtype.is_floating_point else F.one_hot(t.long(), tr.num_classes).float()
                        for t in (t_l, t_u))
        w = None if w_l is None else torch.cat([w_l, torch.ones(len(y_u), device=w_l.device)])
        return torch.cat([t_l, t_u.to(t_l.device)]), w

    def loss_weights(self, tr, b, o):
        if self.cfg.weight == 1.0:
            return None
        w = torch.ones(len(b.y), device=b.y.device)
        w[b.labelled:] = self.cfg.weight
        return w, max(len(b.y), 1)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "perm": self.perm.clone(), "pos": self.pos,
                "trained": self.trained.clone(), "right": self.right.clone(),
                "factors": None if self.factors is None else torch.from_numpy(self.factors.copy())}

    def load_state_dict(self, sd: dict) -> None:
        self.generator.set_state(sd["generator"])
        self.perm, self.pos = sd["perm"].clone(), int(sd["pos"])
        self.trained, self.right = sd["trained"].clone(), sd["right"].clone()
        self.factors = None if sd["factors"] is None else np.asarray(sd["factors"]).copy()  # tensor or array
        self._factors_on_device = None


# ------------------------------------------------------------------ a TrainConfig's units


UNITS: tuple[tuple[str, type[Method]], ...] = (
    ("rst", RST), ("sat", SAT), ("adaptive_target", AdaptiveTarget), ("te", TE), ("kd", KD),
    ("reweight", Reweight), ("awp", AWP), ("swa", SWA))
"""Each ``TrainConfig`` field that switches a method on, with its unit, in hook order."""


def build(cfg, tr, *, teachers: dict[str, torch.nn.Module] | None = None, unlabeled: Any = None) -> list[Method]:
    """The units a TrainConfig asks for, in the order their hooks run. ``teachers`` (KD) and
    ``unlabeled`` (RST) are what the Trainer was given for them."""
    if cfg.rst is None and unlabeled is not None:
        raise ValueError("unlabeled data were passed to Trainer, but cfg.rst is None")
    given = {"kd": {"teachers": teachers or {}}, "rst": {"source": unlabeled}}
    return [cls(getattr(cfg, name), tr, **given.get(name, {}))
            for name, cls in UNITS if getattr(cfg, name) is not None]
