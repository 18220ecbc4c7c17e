"""``Trainer``: one training run (STD, PGD-AT, TRADES, MART) epoch by epoch, from a ``TrainConfig``.

The trainer never writes files; the run store (``hardex.runs.store``) checkpoints
``state_dict()`` and writes the metrics rows ``run_epoch()`` returns.

The other methods (``hardex.methods``: KD, reweighting, RST, SAT, TE, AWP, SWA, the
adaptive target) are units whose hooks the trainer calls at the fixed points below
(``methods.Method`` lists them); it names none of them, so each method's rule lives in
one place and a step reads the same whichever are switched on. The algorithm is not a
method: it picks the training attack and the outer loss (``OUTER``).

Per epoch e (1-based), in this order:

1. the training set is the (optional) subset with every edit whose ``from_epoch <= e``
   applied in the order listed; rule-based edit sets are computed the first time the
   edit applies and then frozen (kept in the state);
2. the targets (LS / DPLS / DPR) apply from ``cfg.targets_from``; DPLS factors / DPR
   weights are computed once, when first needed, from the scores at that moment
   (Algorithm 2's "Initialization") and frozen;
3. for each batch: methods may append rows to it (``extend``: RST's pseudo-labelled
   images; the batch has as many training examples fewer); the CIFAR augmentation
   (random crop with 4-pixel padding, flip where the dataset allows) is drawn from the
   data generator; if ``e <= T`` the difficulty of the augmented CLEAN batch is measured
   with a separate eval-mode, no-grad forward (``difficulty.clean_logits``) BEFORE the
   step, so batch-norm running statistics are untouched and every algorithm measures the
   same thing (Algorithm 1 also measures before the adversarial step); methods track the
   rows they appended (``track``). Cost: one forward per step, ~1/23 of a PGD-10 step;
   it runs in the training precision (bf16 autocast when ``precision="bf16"``).
   TRADES with the eval-mode attack and no methods is the exception that costs nothing:
   its attack's first, no-grad eval-mode clean forward is exactly this forward and is
   reused (``_tracks_in_attack``; bit-identical, one forward per step fewer). The outer
   loss's clean logits are never reused: for STD, TRADES and MART they come from a
   train-mode forward (batch statistics, and it updates the running statistics). The
   batch's targets are then a method's (``targets``: SAT, the adaptive target, RST), else
   step 2's;
4. ``prepare`` hooks (terms of the attack and the loss); the training attack runs with
   BN in ``cfg.attack.bn_mode`` ("eval": ``bn_eval``); PGD-AT's and MART's inner loss
   uses hard labels unless ``attack_sees_smoothed_labels``;
5. ``before_update`` hooks (AWP); the outer loss (train mode, bf16 autocast if
   ``precision="bf16"``; losses in fp32), per example: STD: CE(f(x), t); PGD-AT:
   CE(f(x_adv), t); TRADES: CE(f(x), t) + beta * KL(softmax f(x) || softmax f(x_adv))
   summed over classes; MART: ``methods.mart_loss``. ``t`` is one-hot / LS / DPLS; DPLS
   applies to the clean CE term of TRADES, the KL term is unchanged. DPR multiplies each
   example's CE term by its weight (for TRADES: the clean CE term; see
   ``hardex.targets``). Methods may replace the per-example loss (``per_example``: KD)
   and the batch mean by a weighted sum (``loss_weights``: reweighting, RST's unlabelled
   weight), and add terms (TE). TRADES' clean logits are computed once and used for both
   terms (the reference code runs a second identical train-mode forward of x for the KL
   term; outputs are identical, only BN's running statistics see that batch once
   instead of twice);
6. SGD step; ``after_update`` hooks; after the epoch the MultiStepLR scheduler steps and
   the ``end_epoch`` hooks run (SWA);
7. probes and the per-epoch test evaluation run in eval mode, fp32, with their own
   seeded generators, so they never change the training trajectory; evaluations use
   ``eval_model()`` (a method's model, the SWA average, else the trained one).

Randomness: model init from ``torch.manual_seed(cfg.seed)``; data order and augmentation
from one CPU ``torch.Generator`` (seed ``cfg.seed``); the training attack's random starts
from its own generator on the device (seed ``cfg.seed + 1``); all states are in
``state_dict()``, so stop / save / load / continue is bit-exact on CPU.

State: ``state_dict()`` holds tensors and plain Python only (dicts, lists, tuples, str,
int, float, bool, None; the LR scheduler's ``Counter``), which is what
``torch.load(..., weights_only=True)`` reads without an allowlist, so loading a
checkpoint runs no pickled code. Host-side arrays (numpy's RNG key, the difficulty
accumulators, edit sets, DPLS / DPR arrays, RST's factors) are stored as CPU tensors;
``load_state_dict`` also takes the numpy arrays of older checkpoints, so existing run
stores keep resuming.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import random
import time
from collections import Counter
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hardex import attacks, data, difficulty, fastpath, methods, models
from hardex import targets as tgt
from hardex.config import DifficultyRule, Edit, ProbeConfig, QuantileRule, TrainConfig


def resolve_device(device=None) -> torch.device:
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def _key(model) -> str:
    return json.dumps(model.model_dump(mode="json"), sort_keys=True)


def _numpy_rng_state() -> tuple:
    """``np.random.get_state()`` with its key as an int64 tensor (see "State" above)."""
    name, key, pos, has_gauss, gauss = np.random.get_state()
    return name, torch.from_numpy(key.astype(np.int64)), int(pos), int(has_gauss), float(gauss)


def _set_numpy_rng_state(state: tuple) -> None:
    """Inverse of ``_numpy_rng_state``; also takes numpy's own tuple (older checkpoints)."""
    name, key, *rest = state
    np.random.set_state((name, np.asarray(key).astype(np.uint32), *rest))


def trades_loss(logits_nat: torch.Tensor, logits_adv: torch.Tensor, targets: torch.Tensor,
                beta: float, weights: torch.Tensor | None = None,
                reduction: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """TRADES outer loss: ``CE(f(x), t) + beta * KL(p_nat || p_adv)`` (batch mean, or per
    example with ``reduction="none"``).

    Returns (total, KL term). ``targets``: labels or soft targets; ``weights`` (DPR) scale
    the clean CE term only.
    """
    logp_nat = F.log_softmax(logits_nat.float(), dim=1)
    logp_adv = F.log_softmax(logits_adv.float(), dim=1)
    if reduction == "none":
        natural = tgt.soft_cross_entropy(logits_nat, targets, weights, reduction="none")
        kl = F.kl_div(logp_adv, logp_nat, reduction="none", log_target=True).sum(1)
        return natural + beta * kl, kl
    natural = tgt.soft_cross_entropy(logits_nat, targets, weights)
    kl = F.kl_div(logp_adv, logp_nat, reduction="sum", log_target=True) / logits_nat.shape[0]
    return natural + beta * kl, kl


# The algorithms' outer forwards (module docstring, step 5): ``f(tr, model, b)`` runs the
# train-mode forwards (nat before adv: batch norm's running statistics see them in that
# order) in the training precision and returns the per-example loss in fp32.


def _std_outer(tr, model, b: methods.Batch) -> methods.Outer:
    with tr.autocast():
        z = model(b.x)
    per = tgt.soft_cross_entropy(z, b.targets, b.weights, reduction="none")
    return methods.Outer(per, trained=z, logits_nat=z, logits_adv=None)


def _pgd_outer(tr, model, b: methods.Batch) -> methods.Outer:
    with tr.autocast():
        z = model(b.x_adv)
    per = tgt.soft_cross_entropy(z, b.targets, b.weights, reduction="none")
    return methods.Outer(per, trained=z, logits_nat=None, logits_adv=z)


def _trades_outer(tr, model, b: methods.Batch) -> methods.Outer:
    with tr.autocast():
        z_nat = model(b.x)
        z_adv = model(b.x_adv)
    beta = tr.cfg.beta
    per, kl = trades_loss(z_nat, z_adv, b.targets, beta, b.weights, reduction="none")
    o = methods.Outer(per, trained=z_nat, logits_nat=z_nat, logits_adv=z_adv, sums={"kl": kl.detach().sum()})

    def mean() -> torch.Tensor:  # the batch mean and its KL sum, as earlier versions computed them
        loss, kl_mean = trades_loss(z_nat, z_adv, b.targets, beta, b.weights)
        o.sums["kl"] = kl_mean.detach() * z_nat.shape[0]
        return loss

    o.mean = mean
    return o


def _mart_outer(tr, model, b: methods.Batch) -> methods.Outer:
    with tr.autocast():
        z_nat = model(b.x)
        z_adv = model(b.x_adv)
    t = b.targets
    per = methods.mart_loss(z_nat, z_adv, b.y, tr.cfg.beta, targets=t if t.dtype.is_floating_point else None,
                            weights=b.weights, reduction="none")
    return methods.Outer(per, trained=z_adv, logits_nat=z_nat, logits_adv=z_adv)


OUTER = {"std": _std_outer, "pgd": _pgd_outer, "trades": _trades_outer, "mart": _mart_outer}


class Trainer:
    """One training run; see the module docstring for what an epoch does.

    ``scores``: per-example score arrays (by dataset index) for difficulty rules whose
    ``source`` is not "self": ``{source: {measure: array}}`` (e.g. a parent run's
    ``difficulty_arrays()``, or ``{"cscore": {"external": array}}``). ``teachers`` (KD's
    models by name) and ``unlabeled`` (RST's pseudo-labelled data) go to
    ``methods.build``.
    """

    def __init__(self, cfg: TrainConfig, *, device=None, data_root=None,
                 scores: dict[str, Any] | None = None,
                 teachers: dict[str, torch.nn.Module] | None = None,
                 unlabeled: Any = None):
        self.cfg = cfg
        self.device = resolve_device(device if device is not None else cfg.device)
        self.info = data.DATASETS[cfg.dataset.name]
        self.num_classes = cfg.num_classes
        self.autocast_dtype = torch.bfloat16 if cfg.precision == "bf16" else None
        self.external = {k: (v if isinstance(v, dict) else {"external": v})
                         for k, v in (scores or {}).items()}

        random.seed(cfg.seed)
        np.random.seed(cfg.seed % 2**32)
        torch.manual_seed(cfg.seed)

        full = data.load_dataset(cfg.dataset.name, "train", root=data_root)
        self.num_examples = len(full)  # accumulator length: the full split
        self.base_train = self._subset(full).to(self.device)
        self.test_full = data.load_dataset(cfg.dataset.name, "test", root=data_root).to(self.device)
        self.test = self._test_sample(cfg.eval.subset)
        self.test_final = self._test_sample(cfg.eval.final_subset)
        self._pos_of_index = np.full(self.num_examples, -1, dtype=np.int64)
        self._pos_of_index[self.base_train.index.cpu().numpy()] = np.arange(len(self.base_train))

        self.model = models.build_model(cfg.model.name, self.num_classes, self.info.image_size,
                                        cfg.model.normalize).to(self.device)
        fastpath.prepare_model(self.model, channels_last=cfg.channels_last, compile=cfg.compile)
        o = cfg.optimizer
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=o.lr, momentum=o.momentum,
                                         weight_decay=o.weight_decay, nesterov=o.nesterov)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, milestones=list(cfg.schedule.milestones), gamma=cfg.schedule.gamma)
        self.generator = torch.Generator(device="cpu").manual_seed(cfg.seed)
        self.attack_generator = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)
        self.accumulator = difficulty.Accumulator(self.num_examples, self.num_classes,
                                                  cfg.tracking.measures, cfg.tracking.predictions)
        self.epoch = 0
        self._edit_sets: dict[str, np.ndarray] = {}   # edit key -> frozen dataset indices
        self._target_state: dict[str, np.ndarray] = {}  # targets key -> factors / weights
        self._target_tensor = None  # (key, device copy of the active factors / weights)
        self._best: dict | None = None
        self.methods = methods.build(cfg, self, teachers=teachers, unlabeled=unlabeled)
        self.reuse_trades_clean = True  # see _tracks_in_attack; False forces the separate forward

    # ------------------------------------------------------------------ data and sets

    def _test_sample(self, n: int | None) -> data.Dataset:
        """``n`` test examples, a fixed seeded sample (``cfg.eval.seed``), or all."""
        if n is None or n >= len(self.test_full):
            return self.test_full
        rng = np.random.default_rng(self.cfg.eval.seed)
        return self.test_full.subset(np.sort(rng.permutation(len(self.test_full))[:n]))

    def _subset(self, full: data.Dataset) -> data.Dataset:
        s = self.cfg.dataset.subset
        if s is None or s.n >= len(full):
            return full
        rng = np.random.default_rng(s.seed)
        if not s.balanced:
            return full.subset(np.sort(rng.permutation(len(full))[: s.n]))
        labels = full.labels.cpu().numpy()
        per = s.n // full.num_classes
        chosen = [rng.permutation(np.flatnonzero(labels == c))[:per] for c in range(full.num_classes)]
        return full.subset(np.sort(np.concatenate(chosen)))

    def _scores(self, measure: str, source: str) -> np.ndarray:
        if source == "self":
            return self.accumulator.scores(measure)
        if source not in self.external:
            raise KeyError(f"difficulty source {source!r} was not passed to Trainer(scores=...); "
                           f"have: {sorted(self.external)}")
        arrays = self.external[source]
        if measure not in arrays:
            raise KeyError(f"difficulty source {source!r} has no {measure!r} scores; "
                           f"keys: {sorted(arrays)}")
        s = np.asarray(arrays[measure], dtype=np.float64)
        if s.shape != (self.num_examples,):
            raise ValueError(f"scores {source}/{measure} have shape {s.shape}, expected "
                             f"({self.num_examples},) (by dataset index)")
        return s

    def _restricted(self, s: np.ndarray, dataset: data.Dataset) -> np.ndarray:
        """Scores of the examples in ``dataset`` only (NaN elsewhere)."""
        out = np.full_like(s, np.nan)
        idx = dataset.index.cpu().numpy()
        out[idx] = s[idx]
        return out

    def _rule_indices(self, rule: DifficultyRule, dataset: data.Dataset) -> np.ndarray:
        s = self._restricted(self._scores(rule.measure, rule.source), dataset)
        labels = None
        if rule.balanced:
            labels = np.zeros(self.num_examples, dtype=np.int64)
            labels[dataset.index.cpu().numpy()] = dataset.labels.cpu().numpy()
        return difficulty.select(s, k=rule.k, fraction=rule.fraction, which=rule.which,
                                 labels=labels, balanced=rule.balanced)

    def _apply_edit(self, edit: Edit, ds: data.Dataset) -> data.Dataset:
        key = _key(edit)
        if key not in self._edit_sets:
            idx = (np.asarray(edit.indices, dtype=np.int64) if edit.indices is not None
                   else self._rule_indices(edit.rule, ds))
            self._edit_sets[key] = idx
        idx = self._edit_sets[key]
        if edit.kind == "prune":
            return data.prune(ds, idx, strict=False)
        if edit.kind == "keep":
            return data.keep(ds, idx, strict=False)
        return data.random_labels(ds, idx, seed=edit.seed, strict=False)

    def training_set(self, epoch: int | None = None) -> data.Dataset:
        """The training set of epoch ``epoch`` (default: the next one), edits applied."""
        e = self.epoch + 1 if epoch is None else epoch
        ds = self.base_train
        for edit in self.cfg.edits:
            if edit.from_epoch <= e:
                ds = self._apply_edit(edit, ds)
        return ds

    # ------------------------------------------------------------------ targets

    def _target_arrays(self, epoch: int, ds: data.Dataset) -> tuple[str, np.ndarray] | None:
        """("factors" | "weights", array by dataset index) for DPLS / DPR, else None."""
        t = self.cfg.targets
        if t.kind not in ("dpls", "dpr") or epoch < self.cfg.targets_from:
            return None
        key = _key(t)
        if key not in self._target_state:
            s = self._restricted(self._scores(t.measure, t.source), ds)
            if not np.isfinite(s).any():
                raise RuntimeError(f"{t.kind} from epoch {epoch}: no difficulty scores yet "
                                   f"(tracking to T={self.cfg.track_until})")
            arr = (tgt.dpls_factors(s, t.lam, self.num_classes) if t.kind == "dpls"
                   else tgt.dpr_weights(s, t.lam))
            self._target_state[key] = arr
        return ("factors" if t.kind == "dpls" else "weights"), self._target_state[key]

    def batch_targets(self, index: torch.Tensor, labels: torch.Tensor, epoch: int | None = None,
                      ds: data.Dataset | None = None):
        """(targets, weights) of a batch: targets are labels (one-hot) or soft rows."""
        e = self.epoch + 1 if epoch is None else epoch
        t = self.cfg.targets
        if t.kind == "ls" and e >= self.cfg.targets_from:
            return tgt.ls_targets(labels, t.lam, self.num_classes), None
        arrs = self._target_arrays(e, ds if ds is not None else self.training_set(e))
        if arrs is None:
            return labels, None
        kind, arr = arrs
        key = (kind, id(arr), labels.device)
        if self._target_tensor is None or self._target_tensor[0] != key:
            # a device copy, so a batch's factors are a gather, not a host round trip
            self._target_tensor = (key, torch.as_tensor(arr, dtype=torch.float32, device=labels.device))
        vals = self._target_tensor[1][index.to(labels.device)]
        if kind == "factors":
            return tgt.ls_targets(labels, vals, self.num_classes), None
        return labels, vals

    # ------------------------------------------------------------------ one epoch

    def autocast(self):
        """The training precision's autocast context (a no-op in fp32)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def _attack_mode(self):
        return attacks.bn_eval(self.model) if self.cfg.attack.bn_mode == "eval" else contextlib.nullcontext()

    def _attack(self, b: methods.Batch, want_clean: bool = False) -> torch.Tensor | None:
        """The training attack's x' (None for STD), BN in ``cfg.attack.bn_mode``.
        ``want_clean``: keep TRADES' clean attack forward as ``b.clean``."""
        cfg, a, m = self.cfg, self.cfg.attack, self.model
        if cfg.algorithm == "std":
            return None
        with self._attack_mode():
            if cfg.algorithm == "trades":
                out = attacks.trades_attack(m, b.x, a.eps, a.step, a.steps, start_std=a.start_std,
                                            autocast_dtype=self.autocast_dtype,
                                            generator=self.attack_generator,
                                            return_clean_logits=want_clean)
                if isinstance(out, tuple):  # its clean forward is the tracking forward
                    out, b.clean = out
                return out
            t = b.targets
            y_att = t if (a.attack_sees_smoothed_labels and t.dtype.is_floating_point) else b.y
            loss = a.loss
            if b.attack_terms:  # method terms (TE) join the attack's objective
                base = attacks.cross_entropy if a.loss == "ce" else attacks.margin_loss

                def loss(z):
                    return base(z.float(), y_att, reduction="sum") + sum(f(z) for f in b.attack_terms)

            return attacks.pgd(m, b.x, y_att, a.eps, a.step, a.steps, loss=loss,
                               random_start=a.random_start, start_std=a.start_std,
                               autocast_dtype=self.autocast_dtype, generator=self.attack_generator)

    def _answer(self, hook: str, *args):
        """The one method's answer to ``hook`` (see ``methods.Method``), or None."""
        answers = [(m.name, a) for m in self.methods if (a := getattr(m, hook)(self, *args)) is not None]
        if len(answers) > 1:
            raise RuntimeError(f"methods {[n for n, _ in answers]} all answer {hook}; at most one may")
        return answers[0][1] if answers else None

    def outer_loss(self, model: torch.nn.Module, b: methods.Batch) -> tuple[torch.Tensor, dict]:
        """The outer loss of ``model`` on batch ``b`` (train mode, x' in ``b.x_adv``) and
        the step's sums for the metrics row: the algorithm's per-example loss (``OUTER``),
        changed by the methods' ``per_example`` hooks, reduced to the batch mean or a
        method's weighted sum (``loss_weights``), plus the methods' loss terms. Pure: no
        state changes beyond BN statistics, so AWP can call it on its proxy."""
        o = OUTER[self.cfg.algorithm](self, model, b)
        for m in self.methods:
            per = m.per_example(self, b, o)
            if per is not None:
                o.per, o.mean = per, None
        weighted = self._answer("loss_weights", b, o)
        if weighted is not None:
            w, d = weighted
            loss = (o.per * w).sum() / d
        elif o.mean is not None:
            loss = o.mean()
        else:
            loss = o.per.sum() / max(o.per.shape[0], 1)
        for term in b.loss_terms:
            loss = loss + term(o.trained)
        if o.logits_nat is not None:
            o.sums["clean_correct"] = (o.logits_nat.argmax(1) == b.y).sum()
        if o.logits_adv is not None:
            o.sums["adv_correct"] = (o.logits_adv.argmax(1) == b.y).sum()
        return loss, o.sums

    def _tracks_in_attack(self) -> bool:
        """TRADES with the eval-mode attack: its attack's one no-grad clean forward is
        exactly the tracking forward (``attacks.trades_attack(return_clean_logits=True)``),
        so tracking costs no extra pass. Only without methods (their hooks may need the
        clean logits before the attack, or track rows of their own) and where no DPLS/DPR
        factors are frozen during the tracked epochs (they would see this batch's update one
        step later)."""
        c = self.cfg
        return (c.algorithm == "trades" and c.attack.bn_mode == "eval" and not self.methods
                and (c.targets.kind not in ("dpls", "dpr") or c.targets_from > c.track_until)
                and self.reuse_trades_clean)

    def _track(self, b: methods.Batch) -> torch.Tensor:
        """Add the clean logits ``b.clean`` of the batch's training examples to the
        accumulator (the methods track the rows they appended); the number of rows
        predicted right."""
        n = b.labelled
        self.accumulator.update(b.index[:n], b.clean[:n], b.y[:n])
        for m in self.methods:
            m.track(self, b)
        return (b.clean.argmax(1) == b.y).sum()

    def _targets(self, b: methods.Batch, ds: data.Dataset):
        """(targets, weights) of batch ``b``: a method's (``targets`` hook), else ``batch_targets``."""
        got = self._answer("targets", b, ds)
        return got if got is not None else self.batch_targets(b.index, b.y, b.epoch, ds)

    def _step(self, b: methods.Batch, track_in_attack: bool = False) -> dict[str, torch.Tensor]:
        """One optimiser step on batch ``b`` (targets set); the methods' hooks run around the
        attack and the update (see ``hardex.methods.Method``). ``track_in_attack`` (TRADES,
        see ``_tracks_in_attack``): track difficulty with the attack's clean logits."""
        for m in self.methods:
            m.prepare(self, b)
        b.x_adv = self._attack(b, want_clean=track_in_attack and b.clean is None)
        tracked = self._track(b) if track_in_attack else None
        for m in self.methods:
            m.before_update(self, b)
        loss, out = self.outer_loss(self.model, b)
        if tracked is not None:
            out["tracked_correct"] = tracked
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        for m in self.methods:
            m.after_update(self, b)
        out["loss"] = loss.detach() * b.x.shape[0]
        return out

    def run_epoch(self) -> dict:
        """Train epoch ``self.epoch + 1``; return its JSON-serialisable metrics row."""
        cfg = self.cfg
        e = self.epoch + 1
        if e > cfg.epochs:
            raise RuntimeError(f"all {cfg.epochs} epochs are done")
        t0 = time.perf_counter()
        ds = self.training_set(e)
        track = e <= cfg.track_until
        lr = float(self.optimizer.param_groups[0]["lr"])
        self.model.train()
        with fastpath.fast_backends(cudnn_benchmark=self.device.type == "cuda"):
            sums, n_seen, tracked_correct = self._train_batches(ds, e, track)
        self.scheduler.step()
        self.epoch = e
        for m in self.methods:
            m.end_epoch(self, e)
        return self._epoch_row(e, lr, ds, track, sums, n_seen, tracked_correct, t0)

    def _train_batches(self, ds: data.Dataset, e: int, track: bool):
        cfg = self.cfg
        sums: dict[str, torch.Tensor] = {}
        n_seen = 0
        tracked_correct = torch.zeros((), device=self.device)
        extra = sum(m.extra_rows for m in self.methods)
        in_attack = track and self._tracks_in_attack()
        for pos in data.iterate_batches(ds, cfg.batch_size - extra, self.generator, shuffle=True):
            images, y, index = ds.images[pos], ds.labels[pos], ds.index[pos]
            for m in self.methods:
                images, y, index = m.extend(self, images, y, index)
            x = (data.augment(images, self.generator, flip=self.info.flip) if cfg.dataset.augment
                 else data.to_float(images))
            b = methods.Batch(x=x, y=y, index=index, epoch=e, labelled=len(pos))
            if track and not in_attack:
                b.clean = difficulty.clean_logits(self.model, x, self.autocast_dtype)
                tracked_correct += self._track(b)
            b.targets, b.weights = self._targets(b, ds)
            out = self._step(b, track_in_attack=in_attack)
            if "tracked_correct" in out:
                tracked_correct += out.pop("tracked_correct")
            for k, v in out.items():
                sums[k] = sums.get(k, 0) + v.detach().float()
            n_seen += len(y)
        return sums, n_seen, tracked_correct

    def _epoch_row(self, e, lr, ds, track, sums, n_seen, tracked_correct, t0) -> dict:
        cfg = self.cfg
        row: dict[str, Any] = {"epoch": e, "lr": lr, "n_train": len(ds)}
        row["train_loss"] = float(sums["loss"]) / n_seen
        if "kl" in sums:
            row["train_kl"] = float(sums["kl"]) / n_seen
        clean = sums.get("clean_correct")
        if clean is None and track:  # PGD-AT has no clean training forward: use tracking's
            clean = tracked_correct
        row["train_clean_acc"] = None if clean is None else float(clean) / n_seen
        row["train_adv_acc"] = float(sums["adv_correct"]) / n_seen if "adv_correct" in sums else None
        row["tracked"] = track
        row["targets"] = self._targets_summary(e, ds)
        row["probes"] = {p.name: self._run_probe(p) for p in cfg.probes if e % p.every == 0}
        for m in self.methods:
            row.update(m.epoch_metrics(self))
        if cfg.eval.every and (e % cfg.eval.every == 0 or e == cfg.epochs):
            model = self.eval_model()
            ev = self._evaluate(self.test, cfg.eval.pgd_steps, seed=cfg.eval.seed + e, model=model)
            row["test_clean_acc"] = ev["clean_acc"]
            row["test_pgd_acc"] = ev["pgd_acc"]
            if self._best is None or ev["pgd_acc"] > self._best["test_pgd_acc"]:
                self._best = {"epoch": e, "test_pgd_acc": ev["pgd_acc"],
                              "test_clean_acc": ev["clean_acc"],
                              "model": {k: v.detach().cpu().clone()
                                        for k, v in model.state_dict().items()}}
        row["best_epoch"] = None if self._best is None else self._best["epoch"]
        row["seconds"] = time.perf_counter() - t0
        return row

    def _targets_summary(self, e: int, ds: data.Dataset) -> dict:
        t = self.cfg.targets
        active = t.kind != "onehot" and e >= self.cfg.targets_from
        out: dict[str, Any] = {"kind": t.kind, "active": active}
        if active and t.kind == "ls":
            out["avg_factor"] = t.lam
        elif active:
            kind, arr = self._target_arrays(e, ds)
            out["avg_factor" if kind == "factors" else "avg_weight"] = tgt.average_factor(
                arr, ds.index.cpu().numpy())
        return out

    # ------------------------------------------------------------------ evaluation

    def _pgd_fn(self, steps: int, step_size: float | None, generator: torch.Generator):
        a = self.cfg.attack
        step = a.eps / 4 if step_size is None else step_size
        return partial(attacks.pgd, eps=a.eps, step_size=step, steps=steps, loss="ce",
                       random_start="uniform" if a.random_start == "none" else a.random_start,
                       start_std=a.start_std, generator=generator)

    def eval_model(self) -> torch.nn.Module:
        """The model evaluations use: a method's (the SWA average, BN refreshed, once it
        has started), else the trained model."""
        model = self._answer("eval_model")
        return self.model if model is None else model

    def _evaluate(self, dataset: data.Dataset, steps: int, seed: int, model=None) -> dict:
        g = torch.Generator(device=self.device).manual_seed(seed)
        name = f"pgd{steps}"
        res = attacks.evaluate(self.model if model is None else model, dataset,
                               {name: self._pgd_fn(steps, self.cfg.eval.step_size, g)},
                               batch_size=self.cfg.eval.batch_size, device=self.device)
        return {"clean_acc": res["clean_acc"], "pgd_acc": res["robust_acc"][name], "n": res["n"]}

    def _probe_sets(self, p: ProbeConfig) -> list[np.ndarray]:
        ds = self.training_set(self.epoch)
        if p.indices is not None:
            return [np.asarray(p.indices, dtype=np.int64)]
        if p.rule is not None:
            return [self._rule_indices(p.rule, ds)]
        q: QuantileRule = p.quantiles
        s = self._restricted(self._scores(q.measure, q.source), ds)
        return difficulty.quantile_bins(s, q.n_bins)

    def _run_probe(self, p: ProbeConfig) -> dict | list[dict]:
        results = []
        for i, idx in enumerate(self._probe_sets(p)):
            if p.max_examples is not None and len(idx) > p.max_examples:
                rng = np.random.default_rng(i)
                idx = np.sort(rng.choice(idx, p.max_examples, replace=False))
            results.append(self._probe_metrics(idx, p.metrics, seed=self.cfg.eval.seed + self.epoch))
        return results[0] if p.quantiles is None else results

    def _probe_metrics(self, index: np.ndarray, metrics, seed: int) -> dict:
        """Clean / adversarial accuracy and EL2N of training examples (un-augmented,
        current training labels, eval mode, fp32): each the mean over the set; an EL2N
        metric also gives its sample standard deviation over the set (``<metric>_sd``),
        and with both EL2N metrics the sd of the per-example adversarial - clean difference
        (``el2n_gap_sd``), so that set means can be compared with an interval."""
        ds = self.training_set(self.epoch)
        labels = np.full(self.num_examples, -1, dtype=np.int64)
        labels[ds.index.cpu().numpy()] = ds.labels.cpu().numpy()
        index = index[self._pos_of_index[index] >= 0]
        out: dict[str, Any] = {"n": int(len(index))}
        if len(index) == 0:
            return out
        need_adv = any(m in metrics for m in ("adv_acc", "el2n_adv"))
        g = torch.Generator(device=self.device).manual_seed(seed)
        a = self.cfg.attack
        sums = {"clean_acc": 0.0, "adv_acc": 0.0, "el2n_clean": 0.0, "el2n_adv": 0.0}
        # float64 sums and sums of squares for the sds (float32 sums would cancel in sq - sum^2 / n)
        dsums = {"el2n_clean": 0.0, "el2n_adv": 0.0, "el2n_gap": 0.0}
        squares = {"el2n_clean": 0.0, "el2n_adv": 0.0, "el2n_gap": 0.0}
        bs = self.cfg.eval.batch_size
        with attacks.bn_eval(self.model), attacks.eval_precision():
            for s in range(0, len(index), bs):
                chunk = index[s:s + bs]
                pos = torch.as_tensor(self._pos_of_index[chunk], device=self.device)
                x = data.to_float(self.base_train.images[pos])
                y = torch.as_tensor(labels[chunk], device=self.device)
                with torch.no_grad():
                    z = self.model(x)
                loss = difficulty.per_example_losses(z, y)
                sums["clean_acc"] += float((1 - loss["zero_one"]).sum())
                sums["el2n_clean"] += float(loss["el2n"].sum())
                e_clean = loss["el2n"].double()
                dsums["el2n_clean"] += float(e_clean.sum())
                squares["el2n_clean"] += float(e_clean.square().sum())
                if need_adv:
                    x_adv = attacks.pgd(self.model, x, y, a.eps, a.step, a.steps, loss=a.loss,
                                        random_start=a.random_start, start_std=a.start_std,
                                        generator=g)
                    with torch.no_grad():
                        la = difficulty.per_example_losses(self.model(x_adv), y)
                    sums["adv_acc"] += float((1 - la["zero_one"]).sum())
                    sums["el2n_adv"] += float(la["el2n"].sum())
                    e_adv = la["el2n"].double()
                    dsums["el2n_adv"] += float(e_adv.sum())
                    squares["el2n_adv"] += float(e_adv.square().sum())
                    dsums["el2n_gap"] += float((e_adv - e_clean).sum())
                    squares["el2n_gap"] += float((e_adv - e_clean).square().sum())
        n = len(index)

        def sd(sq: float, total: float) -> float:  # sample sd from the sums (n - 1 in the denominator)
            return math.sqrt(max(sq - total * total / n, 0.0) / (n - 1)) if n > 1 else 0.0

        for m in metrics:
            out[m] = sums[m] / n
            if m.startswith("el2n"):
                out[f"{m}_sd"] = sd(squares[m], dsums[m])
        if "el2n_clean" in metrics and "el2n_adv" in metrics:
            out["el2n_gap_sd"] = sd(squares["el2n_gap"], dsums["el2n_gap"])
        return out

    def evaluate_state(self, model_state: dict) -> dict:
        """``final_evaluation`` of a stored model state (e.g. ``best_state()["model"]``,
        which is the SWA model's when SWA had started), leaving this trainer unchanged."""
        model = copy.deepcopy(self.model)
        model.load_state_dict(model_state)
        return self.final_evaluation(model=model)

    def final_evaluation(self, model=None) -> dict:
        """Clean and PGD-k (k in ``cfg.eval.final_pgd_steps``) accuracy on the test split
        (``cfg.eval.final_subset``, default all; not the per-epoch subset), fp32, eval
        mode, of the current model (``eval_model()``: the SWA average once SWA started)."""
        model = self.eval_model() if model is None else model
        test = self.test_final
        out: dict[str, Any] = {"epoch": self.epoch}
        for k in self.cfg.eval.final_pgd_steps:
            ev = self._evaluate(test, k, seed=self.cfg.eval.seed, model=model)
            out["clean_acc"] = ev["clean_acc"]
            out["n"] = ev["n"]
            out[f"pgd{k}_acc"] = ev["pgd_acc"]
        if not self.cfg.eval.final_pgd_steps:
            res = attacks.evaluate(model, test, {}, batch_size=self.cfg.eval.batch_size)
            out.update(clean_acc=res["clean_acc"], n=res["n"])
        return out

    def best_state(self) -> dict | None:
        """``{"epoch", "test_pgd_acc", "test_clean_acc", "model"}`` of the best epoch by
        per-epoch test robust accuracy (first such epoch on ties), or None."""
        return None if self._best is None else copy.deepcopy(self._best)

    def difficulty_arrays(self) -> dict[str, np.ndarray]:
        """Accumulators by dataset index (see ``Accumulator.arrays``) plus ``in_train``
        (in the base training set), ``labels`` (current training labels, -1 outside the
        set) and ``dpls_factors`` / ``dpr_weights`` once computed."""
        out = self.accumulator.arrays()
        ds = self.training_set(max(self.epoch, 1))
        in_train = np.zeros(self.num_examples, dtype=bool)
        in_train[self.base_train.index.cpu().numpy()] = True
        labels = np.full(self.num_examples, -1, dtype=np.int64)
        labels[ds.index.cpu().numpy()] = ds.labels.cpu().numpy()
        out["in_train"], out["labels"] = in_train, labels
        key = _key(self.cfg.targets)
        if key in self._target_state:
            name = "dpls_factors" if self.cfg.targets.kind == "dpls" else "dpr_weights"
            out[name] = self._target_state[key].copy()
        return out

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "numpy": _numpy_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        return {
            "epoch": self.epoch,
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "scheduler": copy.deepcopy(self.scheduler.state_dict()),
            "rng": rng,
            "generator": self.generator.get_state(),
            "attack_generator": self.attack_generator.get_state(),
            "accumulator": self.accumulator.state_dict(),
            "best": copy.deepcopy(self._best),
            "edit_sets": {k: torch.from_numpy(v.copy()) for k, v in self._edit_sets.items()},
            "target_state": {k: torch.from_numpy(v.copy()) for k, v in self._target_state.items()},
            **({"methods": {m.name: m.state_dict() for m in self.methods}} if self.methods else {}),
        }

    def exported_model_state(self) -> dict:
        """The model this run hands on (teachers, ``hardex eval``): the SWA average once
        SWA started (BN refreshed), else the trained model."""
        return {k: v.detach().cpu().clone() for k, v in methods.exported_state(self.state_dict()).items()}

    def load_state_dict(self, sd: dict) -> None:
        """Continue from ``sd`` (a resume, or a branch: this config's own targets, edits
        and schedule apply from epoch ``sd["epoch"] + 1``).

        Edit sets and DPLS/DPR arrays of the state are reused only by an identical edit /
        targets configuration; others are computed when they first apply. The scheduler
        takes this config's milestones and gamma; the loaded learning rate must equal the
        one this config's schedule gives at that epoch (else ValueError).
        """
        self.model.load_state_dict(sd["model"])
        self.optimizer.load_state_dict(sd["optimizer"])
        self.scheduler.load_state_dict(sd["scheduler"])
        self.scheduler.milestones = Counter(self.cfg.schedule.milestones)
        self.scheduler.gamma = self.cfg.schedule.gamma
        self.epoch = int(sd["epoch"])
        lr = float(self.optimizer.param_groups[0]["lr"])
        passed = sum(1 for m in self.cfg.schedule.milestones if m <= self.epoch)
        expected = self.cfg.optimizer.lr * self.cfg.schedule.gamma ** passed
        if not np.isclose(lr, expected, rtol=1e-6):
            raise ValueError(f"loaded learning rate {lr} at epoch {self.epoch} differs from this "
                             f"config's schedule ({expected})")
        rng = sd["rng"]
        torch.set_rng_state(rng["torch"])
        _set_numpy_rng_state(rng["numpy"])
        random.setstate(rng["python"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.generator.set_state(sd["generator"])
        self.attack_generator.set_state(sd["attack_generator"])
        self.accumulator.load_state_dict(sd["accumulator"])
        self._best = copy.deepcopy(sd["best"])
        self._edit_sets = {k: np.asarray(v).copy() for k, v in sd["edit_sets"].items()}
        self._target_state = {k: np.asarray(v).copy() for k, v in sd["target_state"].items()}
        self._target_tensor = None
        # a method's per-run state (SAT/TE targets, the SWA average) is restored when the
        # checkpoint has it; a branch from a run without that method starts it fresh
        saved = methods.saved_states(sd)
        for m in self.methods:
            if m.name in saved:
                m.load_state_dict(saved[m.name])
