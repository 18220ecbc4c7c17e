"""``TrainConfig``: a frozen, validated description of one training run.

Defaults are the paper's baseline (Section 5 / Appendix B.1): CIFAR-10, WRN-28-10,
PGD-AT with eps 0.031, step eps/4, 10 steps, BN in eval mode for the training attack
(Bag-of-Tricks ``--BNeval``; the authors' later code does the same), SGD lr 0.1,
momentum 0.9, weight decay 5e-4, batch 128, 110 epochs with x0.1 at 100 and 105,
difficulty = clean 0-1 loss tracked to T = 90.

Epoch numbers are 1-based: epoch e is the e-th pass over the data.
``tracking.until_epoch = T`` tracks difficulty on epochs 1..T; ``targets.from_epoch``
is the first epoch trained with the targets (default T + 1 for DPLS / DPR: the paper
trains the baseline to epoch 90 and continues with DPLS); an edit's ``from_epoch`` is
the first epoch trained on the edited set (1 = from the start).

Difficulty rules choose index sets from per-example scores. ``source="self"`` reads
this run's own accumulators at the moment the rule is applied (for a child run branched
at epoch T these are the parent's accumulators up to T, loaded with its state);
any other ``source`` names a score mapping the caller hands to
``Trainer(..., scores={source: {measure: array}})`` (e.g. another run's
``difficulty_arrays()`` or C-scores as ``{"external": array}``), which is how
"random labels from epoch 0 chosen by a parent's difficulty" is expressed.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Measure = Literal["zero_one", "ce", "el2n", "external"]
TrackedMeasure = Literal["zero_one", "ce", "el2n"]
ProbeMetric = Literal["clean_acc", "adv_acc", "el2n_clean", "el2n_adv"]

_WRN = re.compile(r"^wrn(\d+)_(\d+)$")


def _dataset_info(name: str):
    from hardex import data
    return data.DATASETS[name]


def _dataset_names() -> list[str]:
    from hardex import data
    return list(data.DATASETS)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Subset(_Frozen):
    """Train on ``n`` examples of the split: a seeded random sample, or ``n // C`` of each
    class if ``balanced`` (smoke runs, Fig. 1's subsets)."""

    n: int = Field(ge=1)
    balanced: bool = False
    seed: int = 0


class DatasetConfig(_Frozen):
    name: str = "cifar10"
    subset: Subset | None = None
    augment: bool = True  # random crop (pad 4) + flip where the dataset allows it

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        names = _dataset_names()
        if v not in names:
            raise ValueError(f"unknown dataset {v!r}; allowed: {', '.join(names)}")
        return v

    @property
    def num_classes(self) -> int:
        return _dataset_info(self.name).num_classes


class DifficultyRule(_Frozen):
    """An index set by difficulty: the ``k`` (or ``fraction``) hardest / easiest
    examples by ``measure`` from ``source``; ``balanced`` takes the same number per class."""

    measure: Measure = "zero_one"
    which: Literal["hard", "easy"] = "hard"
    k: int | None = Field(default=None, ge=0)
    fraction: float | None = Field(default=None, ge=0.0, le=1.0)
    balanced: bool = False
    source: str = "self"

    @model_validator(mode="after")
    def _one_size(self):
        if (self.k is None) == (self.fraction is None):
            raise ValueError("a difficulty rule needs exactly one of k and fraction")
        if self.measure == "external" and self.source == "self":
            raise ValueError("measure 'external' needs a source other than 'self'")
        return self


class QuantileRule(_Frozen):
    """All examples split into ``n_bins`` equal-count difficulty bins, easiest first."""

    measure: Measure = "zero_one"
    n_bins: int = Field(default=5, ge=1)
    source: str = "self"


class Edit(_Frozen):
    """An index-set edit from epoch ``from_epoch`` on: ``prune`` removes the examples,
    ``keep`` keeps only them, ``random_labels`` replaces their labels by uniformly random
    ones (seed ``seed``). The set is explicit ``indices`` (stable dataset indices) or a
    difficulty ``rule``, evaluated once, when the edit first applies, and then frozen."""

    kind: Literal["prune", "keep", "random_labels"]
    from_epoch: int = Field(default=1, ge=1)
    indices: tuple[int, ...] | None = None
    rule: DifficultyRule | None = None
    seed: int = 0

    @model_validator(mode="after")
    def _one_set(self):
        if (self.indices is None) == (self.rule is None):
            raise ValueError(f"edit {self.kind!r} needs exactly one of indices and rule")
        return self


class ModelConfig(_Frozen):
    """``normalize``: (mean, std) as the model's first layer (inputs stay in [0, 1])."""

    name: str = "wrn28_10"
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        from hardex import models

        fixed = [m for m in models.MODEL_NAMES if "<" not in m]
        m = _WRN.match(v)
        if v in fixed or (m and (int(m.group(1)) - 4) % 6 == 0):
            return v
        raise ValueError(f"unknown model {v!r}; allowed: {', '.join(models.MODEL_NAMES)}")


class AttackConfig(_Frozen):
    """The training-time attack (l-inf). ``step_size=None`` means eps / 4 (the paper).

    ``bn_mode="eval"``: batch norm uses running statistics during the attack and they are
    not updated (Bag-of-Tricks --BNeval, the paper's baseline); ``"train"`` as in
    robust_overfitting. ``attack_sees_smoothed_labels``: if True the PGD inner loss uses
    the same soft targets as the outer loss; the paper applies DPLS "only to the labels
    of outer maximization loss", so the default is False (hard labels). TRADES' attack
    has no labels and ignores it; its start is x + ``start_std`` * N(0, 1).
    """

    eps: float = 0.031
    step_size: float | None = None
    steps: int = Field(default=10, ge=0)
    random_start: Literal["uniform", "normal", "none"] = "uniform"
    start_std: float = Field(default=0.001, ge=0.0)
    loss: Literal["ce", "margin"] = "ce"
    bn_mode: Literal["eval", "train"] = "eval"
    attack_sees_smoothed_labels: bool = False

    @field_validator("eps")
    @classmethod
    def _eps(cls, v: float) -> float:
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"eps={v} is outside [0, 1] (images are in [0, 1])")
        return v

    @field_validator("step_size")
    @classmethod
    def _step(cls, v: float | None) -> float | None:
        if v is not None and not 0.0 <= v <= 1.0:
            raise ValueError(f"step_size={v} is outside [0, 1]")
        return v

    @property
    def step(self) -> float:
        return self.eps / 4 if self.step_size is None else self.step_size


class OptimizerConfig(_Frozen):
    lr: float = Field(default=0.1, gt=0.0)
    momentum: float = Field(default=0.9, ge=0.0)
    weight_decay: float = Field(default=5e-4, ge=0.0)
    nesterov: bool = False


class ScheduleConfig(_Frozen):
    """MultiStepLR by epoch: lr x ``gamma`` after each epoch in ``milestones``."""

    milestones: tuple[int, ...] = (100, 105)
    gamma: float = Field(default=0.1, gt=0.0)

    @field_validator("milestones")
    @classmethod
    def _sorted(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(m < 1 for m in v):
            raise ValueError(f"milestones must be >= 1, got {list(v)}")
        return tuple(sorted(v))


class TrackingConfig(_Frozen):
    """Difficulty tracked on epochs 1..``until_epoch`` (None: every epoch)."""

    measures: tuple[TrackedMeasure, ...] = ("zero_one", "ce", "el2n")
    until_epoch: int | None = Field(default=90, ge=0)
    predictions: bool = True


class TargetsConfig(_Frozen):
    """What the outer loss trains toward.

    onehot; ls (every example ``lam``, from ``from_epoch``, default 1); dpls (Algorithm 2,
    hardest example ``lam``, factors computed once from ``measure``/``source`` scores
    when first applied, default from T + 1); dpr (loss weights ``1 - (1-lam) S_norm``,
    Table 18; see hardex.targets).
    """

    kind: Literal["onehot", "ls", "dpls", "dpr"] = "onehot"
    lam: float = 1.0
    from_epoch: int | None = Field(default=None, ge=1)
    measure: Measure = "zero_one"
    source: str = "self"


class ProbeConfig(_Frozen):
    """A named training-set index set measured after each ``every``-th epoch on clean
    (un-augmented) images in eval mode, fp32, with the training attack for ``adv``.

    The set is ``indices``, a difficulty ``rule`` or ``quantiles`` (one result per bin),
    re-evaluated each time from the current scores (for ``source="self"``).
    ``max_examples`` subsamples the set with a fixed seed to bound the cost.
    """

    name: str
    indices: tuple[int, ...] | None = None
    rule: DifficultyRule | None = None
    quantiles: QuantileRule | None = None
    metrics: tuple[ProbeMetric, ...] = ("clean_acc", "adv_acc", "el2n_clean", "el2n_adv")
    every: int = Field(default=1, ge=1)
    max_examples: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_set(self):
        given = [x is not None for x in (self.indices, self.rule, self.quantiles)]
        if sum(given) != 1:
            raise ValueError(f"probe {self.name!r} needs exactly one of indices, rule, quantiles")
        return self


class EvalConfig(_Frozen):
    """Per-epoch test evaluation (fp32, eval mode): clean and PGD-``pgd_steps`` accuracy
    on ``subset`` test examples (a fixed seeded sample; None = all) every ``every``
    epochs (0 = never). ``final_pgd_steps``: the attacks of ``final_evaluation``, on
    ``final_subset`` test examples (a fixed seeded sample; None = the whole test split,
    the paper's setting). ``step_size=None`` means eps / 4."""

    every: int = Field(default=1, ge=0)
    subset: int | None = Field(default=None, ge=1)
    pgd_steps: int = Field(default=10, ge=0)
    step_size: float | None = None
    final_pgd_steps: tuple[int, ...] = (10, 20)
    final_subset: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=256, ge=1)
    seed: int = 0


class AWPConfig(_Frozen):
    """Adversarial weight perturbation (Wu et al., 2020) for PGD-AT and TRADES: per weight
    tensor ``gamma * ||w|| * d / ||d||`` from one proxy SGD step of ``proxy_lr``, from epoch
    ``from_epoch`` (their code: gamma 0.01 for PGD-AT; 0.005 after 10 warm-up epochs for
    TRADES)."""

    gamma: float = Field(default=0.01, gt=0.0)
    from_epoch: int = Field(default=1, ge=1)
    proxy_lr: float = Field(default=0.01, gt=0.0)


class SWAConfig(_Frozen):
    """Stochastic weight averaging: the average of the weights after each epoch from
    ``from_epoch`` on; evaluations (per epoch, best, final) use it with refreshed BN."""

    from_epoch: int = Field(ge=1)


class SATConfig(_Frozen):
    """Self-adaptive training (Huang et al., 2020): EMA soft targets from ``from_epoch``
    (their TRADES code: 70 of 100 epochs), confidence weights."""

    from_epoch: int = Field(ge=1)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)


class TEConfig(_Frozen):
    """Temporal ensembling (Dong et al., 2022): EMA of clean predictions from
    ``from_epoch``; consistency weight ``weight`` ramped up until ``ramp_until``
    (their code: 90, 150, 300, 0.9 for 200 epochs)."""

    from_epoch: int = Field(ge=1)
    ramp_until: int = Field(ge=1)
    weight: float = Field(default=300.0, ge=0.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _order(self):
        if self.ramp_until <= self.from_epoch:
            raise ValueError(f"te.ramp_until={self.ramp_until} must be after te.from_epoch={self.from_epoch}")
        return self


class KDConfig(_Frozen):
    """Knowledge distillation (Chen et al., 2021): ``teachers`` maps a teacher name (a key
    of the RunSpec's ``teachers``) to its weight; CE gets ``1 - sum(weights)`` (their
    code: 0.3 CE, 0.1 standard teacher, 0.6 robust teacher, temperature 2)."""

    teachers: dict[str, float]
    temperature: float = Field(default=2.0, gt=0.0)

    @model_validator(mode="after")
    def _weights(self):
        if not self.teachers:
            raise ValueError("kd.teachers is empty; name at least one teacher with its weight")
        bad = {k: v for k, v in self.teachers.items() if v < 0}
        total = sum(self.teachers.values())
        if bad or total > 1.0 + 1e-9:
            raise ValueError(f"kd.teachers weights {dict(self.teachers)} must be >= 0 and sum to "
                             f"at most 1 (the CE term gets 1 - sum)")
        return self

    @property
    def ce_weight(self) -> float:
        return 1.0 - sum(self.teachers.values())


class AdaptiveTargetConfig(_Frozen):
    """Liu et al. (2022) adaptive target ``onehot_weight * onehot + (1 - onehot_weight) *
    EMA(predictions, momentum)`` from ``from_epoch`` (their example: rho 0.9, beta 0.1,
    5 warm-up epochs, i.e. from epoch 6)."""

    from_epoch: int = Field(default=1, ge=1)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    onehot_weight: float = Field(default=0.1, ge=0.0, le=1.0)


class ReweightConfig(_Frozen):
    """Liu et al. (2022) instance reweighting from ``from_epoch``: loss ``sum w l / sum w``
    with ``w`` = ``mode`` (``nat_prob`` = p_y(x) on clean inputs, ``prob`` = p_y(x') on
    the training attack's inputs, ``max_prob`` = max_k p_k(x'); ``comp_*`` = 1 - that)."""

    mode: Literal["prob", "comp_prob", "nat_prob", "comp_nat_prob", "max_prob", "comp_max_prob",
                  "nat_max_prob", "comp_nat_max_prob"] = "nat_prob"
    from_epoch: int = Field(default=1, ge=1)


class RSTConfig(_Frozen):
    """Robust self-training (Carmon et al., 2019): every batch mixes ``fraction`` of
    pseudo-labelled unlabelled images (their ``unsup_fraction``: 0.5, i.e. 1:1) with the
    labelled rest; pseudo labels are used as targets, and each unlabelled example's loss is
    multiplied by ``weight`` (their code: 1, the same loss as a labelled example; the batch
    mean runs over both parts). An epoch is one pass over the labelled set; the unlabelled
    images are drawn from a running random permutation. The data are handed to
    ``Trainer(unlabeled=...)`` (``hardex.methods.load_unlabeled``); ``sha256`` names the
    file they came from (checked when given). ``dpls``: which part DPLS targets
    (``targets.kind="dpls"``) apply to -- "labelled", "unlabelled" or "both" (the paper's
    Table 12: Sup, Unsup, Sup+Unsup); the unlabelled difficulty is, as in the paper's
    Section 5, from the number of times an image was trained on and the number of right
    predictions (of its pseudo label) up to T: ``1 - right / trained``."""

    fraction: float = Field(default=0.5, gt=0.0, lt=1.0)
    weight: float = Field(default=1.0, gt=0.0)
    dpls: Literal["labelled", "unlabelled", "both"] = "labelled"
    sha256: str | None = None


ALGORITHMS = ("std", "pgd", "trades", "mart")


class TrainConfig(_Frozen):
    """Everything that determines one training run (see the module docstring)."""

    dataset: DatasetConfig = DatasetConfig()
    edits: tuple[Edit, ...] = ()
    model: ModelConfig = ModelConfig()
    algorithm: Literal["std", "pgd", "trades", "mart"] = "pgd"
    beta: float = Field(default=6.0, ge=0.0)  # TRADES and MART
    attack: AttackConfig = AttackConfig()
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    epochs: int = Field(default=110, ge=1)
    batch_size: int = Field(default=128, ge=1)
    seed: int = 0
    tracking: TrackingConfig = TrackingConfig()
    targets: TargetsConfig = TargetsConfig()
    probes: tuple[ProbeConfig, ...] = ()
    eval: EvalConfig = EvalConfig()
    precision: Literal["fp32", "bf16"] = "fp32"
    # GPU fast path (hardex.fastpath): NHWC weights and torch.compile of the model; the same
    # results up to floating-point noise, so they are part of the hash only when switched on
    channels_last: bool = False
    compile: bool = False
    device: str | None = None  # None: cuda if available, else cpu
    # other methods (hardex.methods); None = off, so older specs keep their hashes
    awp: AWPConfig | None = None
    swa: SWAConfig | None = None
    sat: SATConfig | None = None
    te: TEConfig | None = None
    kd: KDConfig | None = None
    adaptive_target: AdaptiveTargetConfig | None = None
    reweight: ReweightConfig | None = None
    rst: RSTConfig | None = None

    @field_validator("algorithm", mode="before")
    @classmethod
    def _algorithm(cls, v):
        if v not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {v!r}; allowed: {', '.join(ALGORITHMS)}")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        C = self.dataset.num_classes
        T = self.tracking.until_epoch
        if T is not None and T > self.epochs:
            raise ValueError(f"tracking.until_epoch T={T} is greater than epochs={self.epochs}")
        late = [m for m in self.schedule.milestones if m > self.epochs]
        if late:
            raise ValueError(f"schedule.milestones {late} lie beyond epochs={self.epochs}")
        t = self.targets
        if t.kind in ("ls", "dpls") and not (1.0 / C - 1e-12 <= t.lam <= 1.0):
            raise ValueError(f"targets.lam={t.lam} is outside [1/C, 1] = [{1.0 / C:.6g}, 1] "
                             f"for {self.dataset.name} (C={C})")
        if t.kind == "dpr" and not 0.0 <= t.lam <= 1.0:
            raise ValueError(f"targets.lam={t.lam} is outside [0, 1] for DPR weights")
        if t.from_epoch is not None and t.from_epoch > self.epochs:
            raise ValueError(f"targets.from_epoch={t.from_epoch} is beyond epochs={self.epochs}")
        if t.kind in ("dpls", "dpr") and t.source == "self" and t.measure == "external":
            raise ValueError("targets.measure 'external' needs a source other than 'self'")
        for e in self.edits:
            if e.from_epoch > self.epochs:
                raise ValueError(f"edit {e.kind!r} from_epoch={e.from_epoch} is beyond "
                                 f"epochs={self.epochs}")
        rules = [("targets", t.measure, t.source)] if t.kind in ("dpls", "dpr") else []
        rules += [(f"edit {e.kind!r}", e.rule.measure, e.rule.source) for e in self.edits if e.rule]
        for p in self.probes:
            r = p.rule or p.quantiles
            if r is not None:
                rules.append((f"probe {p.name!r}", r.measure, r.source))
        for what, measure, source in rules:
            if source == "self" and measure not in self.tracking.measures:
                raise ValueError(f"{what} ranks by {measure!r}, which tracking.measures "
                                 f"{list(self.tracking.measures)} does not track")
        names = [p.name for p in self.probes]
        if len(set(names)) != len(names):
            raise ValueError(f"probe names must be unique, got {names}")
        self._check_methods()
        return self

    def _check_methods(self) -> None:
        allowed = {"awp": ("pgd", "trades"), "sat": ("pgd", "trades"), "te": ("pgd", "trades"),
                   "kd": ("pgd",), "adaptive_target": ("pgd", "trades"), "reweight": ("pgd", "trades")}
        for name, algos in allowed.items():
            if getattr(self, name) is not None and self.algorithm not in algos:
                raise ValueError(f"{name} is implemented for algorithm {' / '.join(algos)}, "
                                 f"not {self.algorithm!r}")
        for name in ("awp", "swa", "sat", "te", "adaptive_target", "reweight"):
            sub = getattr(self, name)
            if sub is not None and sub.from_epoch > self.epochs:
                raise ValueError(f"{name}.from_epoch={sub.from_epoch} is beyond epochs={self.epochs}")
        if self.te is not None and self.te.ramp_until > self.epochs:
            raise ValueError(f"te.ramp_until={self.te.ramp_until} is beyond epochs={self.epochs}")
        soft = [n for n in ("sat", "adaptive_target") if getattr(self, n) is not None]
        if len(soft) > 1:
            raise ValueError(f"{' and '.join(soft)} both replace the targets; use one")
        if soft and self.targets.kind != "onehot":
            raise ValueError(f"{soft[0]} replaces the targets; it cannot be combined with "
                             f"targets.kind={self.targets.kind!r}")
        if self.rst is not None:
            b_u = round(self.batch_size * self.rst.fraction)
            if not 1 <= b_u < self.batch_size:
                raise ValueError(f"rst.fraction={self.rst.fraction} of batch_size={self.batch_size} leaves "
                                 f"{b_u} unlabelled and {self.batch_size - b_u} labelled images per batch; "
                                 "both must be >= 1")
            if self.rst.dpls != "labelled" and self.targets.kind != "dpls":
                raise ValueError(f"rst.dpls={self.rst.dpls!r} needs targets.kind='dpls', "
                                 f"not {self.targets.kind!r}")
            if self.targets.kind == "dpls" and self.targets.source != "self" and self.rst.dpls != "labelled":
                raise ValueError("rst.dpls on the unlabelled part needs targets.source='self' "
                                 "(the unlabelled difficulty is tracked by this run)")
            others = [n for n in ("sat", "te", "kd", "adaptive_target", "reweight") if getattr(self, n) is not None]
            if others:
                raise ValueError(f"rst is not implemented together with {', '.join(others)}")
        if self.reweight is not None and self.targets.kind == "dpr":
            raise ValueError("reweight and targets.kind='dpr' both weight the loss; use one")

    # -- derived ----------------------------------------------------------------------

    @property
    def num_classes(self) -> int:
        return self.dataset.num_classes

    @property
    def track_until(self) -> int:
        """Last epoch with difficulty tracking (``epochs`` when until_epoch is None)."""
        T = self.tracking.until_epoch
        return self.epochs if T is None else T

    @property
    def targets_from(self) -> int:
        """First epoch trained with the targets (LS: 1; DPLS/DPR: T + 1 by default)."""
        if self.targets.from_epoch is not None:
            return self.targets.from_epoch
        if self.targets.kind in ("dpls", "dpr"):
            return self.track_until + 1
        return 1
