"""What a run is and what it costs, in words and numbers read off its spec alone.

One describer for every listing (`hardex runs ls`, `hardex book --plan`, `hardex status`,
the chapters' records tables), and the two facts the cost estimates need: the epochs a run
trains itself and the share of the training split one of its epochs sees.
"""

from __future__ import annotations

from hardex.runs.spec import RunSpec

#: TrainConfig sections that switch on a method of :mod:`hardex.methods` (named in descriptions)
METHOD_FIELDS = ("awp", "swa", "sat", "te", "kd", "adaptive_target", "reweight", "rst")
PAPER_EPS = 0.031  # the paper's training eps (8/255 as the reference code rounds it); other eps are named


def describe(spec: RunSpec) -> str:
    """A short description of a run, e.g. ``pgd+dpls(0.5) preact_resnet18 prune <-1a2b3c4d@27``:
    algorithm, targets and methods; model; dataset unless CIFAR-10; eps unless the paper's;
    the kinds of its data edits; the parent and branch epoch of a continuation."""
    t = spec.train
    what = t.algorithm
    if t.targets.kind != "onehot":
        what += f"+{t.targets.kind}({t.targets.lam:g})"
    for name in METHOD_FIELDS:
        if getattr(t, name, None) is not None:
            what += f"+{name}"
    parts = [what, t.model.name]
    if t.dataset.name != "cifar10":
        parts.append(t.dataset.name)
    if t.algorithm != "std" and t.attack.eps != PAPER_EPS:
        parts.append(f"eps={t.attack.eps:g}")
    if t.edits:
        parts.append("+".join(e.kind for e in t.edits))
    if spec.start_from is not None:
        parts.append(f"<-{spec.start_from.parent.short_hash[:8]}@{spec.start_from.epoch}")
    return " ".join(parts)


def epochs_trained(spec: RunSpec) -> int:
    """Epochs this run trains itself (a continuation starts after its parent's branch epoch)."""
    return spec.train.epochs - (spec.start_from.epoch if spec.start_from else 0)


def training_fraction(spec: RunSpec, full_size: int = 50000) -> float:
    """Fraction of the full training split one epoch of this run sees, for cost estimates:
    the dataset subset, then each keep / prune edit (explicit indices or a difficulty rule)."""
    sub = spec.train.dataset.subset
    n = sub.n if sub else full_size
    kept = 1.0
    for e in spec.train.edits:
        if e.rule is not None:
            size = e.rule.k / n if e.rule.k is not None else e.rule.fraction
        else:
            size = len(e.indices) / n
        if e.kind == "keep":
            kept = size
        elif e.kind == "prune":
            kept -= size
    return (n / full_size) * kept
