"""What runs and evaluations cost, in seconds on one device: the one estimator that `hardex book`'s
cost lines and ``--plan``, `hardex gpu-check` and the chapters' cost cells use.

Training: seconds per epoch of a run's model and algorithm from the newest `hardex bench`
report of the device (``results/bench/*.json``: hardex's path with difficulty tracking, scaled
from the report's epoch size to 50,000 images and from its attack steps to the run's), else
from the profile's stated minutes (``cost.minutes_per_epoch`` for the baseline model and its
attack steps; another model times ``cost.model_scale``; other attack steps in proportion to
their forward+backward passes), times the share of the training split the run sees, times the
epochs it trains. On a CPU, where stated times are for a GPU, a stated slowdown applies.

Evaluation: forward+backward passes (counted as ``hardex.evaluation.suite`` counts them: a
PGD-K step is one of each per example) over a rate: PGD-20 images/s x 21 of the bench report,
else the stated ``cost.eval_passes_per_s``. A run evaluates itself every epoch (clean + PGD on
the per-epoch sample), its probes, and final.json's PGD-k of the final (and best) model;
``evaluate_run`` calls (:class:`~hardex.experiments.rounds.EvalRequest`) add their attacks:
PGD/CW-K K + 1 passes per example, the others ``cost.passes_per_example``.

Every figure says where it comes from (:attr:`Estimator.sources`); none is a measurement
unless a bench report of this device exists.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from hardex.experiments.params import Cost
from hardex.experiments.rounds import EvalRequest
from hardex.runs.describe import training_fraction
from hardex.runs.spec import RunSpec

# A stated guess, not measured: how much slower a small CPU trains than the stated GPU times.
CPU_SLOWDOWN = 300.0
FULL_SPLIT = 50000


def gpu_visible() -> bool:
    import torch

    return torch.cuda.is_available()


def this_device() -> tuple[str, str]:
    """("cuda", GPU name) or ("cpu", machine), as bench reports write them."""
    import platform

    import torch

    if torch.cuda.is_available():
        return "cuda", torch.cuda.get_device_name(0)
    return "cpu", platform.processor() or platform.machine()


def bench_reports(root: Path) -> list[tuple[Path, dict]]:
    """Every readable bench report under ``root/results/bench``, newest (by ``created``) first."""
    out = []
    for f in sorted((Path(root) / "results" / "bench").glob("*.json")):
        try:
            r = json.loads(f.read_text())
            r["environment"]["device"]
        except (ValueError, KeyError, TypeError):
            continue
        out.append((f, r))
    return sorted(out, key=lambda fr: str(fr[1].get("created", "")), reverse=True)


def latest_bench(root: Path, device: tuple[str, str] | None = None, any_gpu: bool = False) -> tuple[Path, dict] | None:
    """The newest bench report made on ``device`` (a GPU: the same GPU name), or on any GPU."""
    for f, r in bench_reports(root):
        env = r["environment"]
        if any_gpu:
            if env.get("device") == "cuda":
                return f, r
            continue
        kind, name = device or this_device()
        if env.get("device") == kind and (kind != "cuda" or env.get("device_name") == name):
            return f, r
    return None


@dataclass
class Estimator:
    """Seconds of training and evaluation on one device (see the module docstring)."""

    cost: Cost
    model: str  # the baseline model the stated minutes are for
    attack_steps: int  # the baseline's attack steps the stated minutes are for
    bench: tuple[Path, dict] | None = None
    cpu: bool = False  # a CPU where the stated times are a GPU's: x CPU_SLOWDOWN
    root: Path | None = None  # for naming the bench report relative to the project
    sources: list[str] = field(default_factory=list)

    @classmethod
    def for_params(cls, p, root: Path, device: str = "here") -> Estimator:
        """For a chapter's parameters ``p`` (its ``cost`` and ``baseline``) on ``device``: "here"
        (this machine: its bench report; without a GPU as "cpu"), "cpu" (a CPU bench report,
        else the stated GPU times x :data:`CPU_SLOWDOWN`), "gpu" (GPU-hours: the newest GPU
        bench report, else the stated times) or "stated" (the stated times, no report)."""
        b = p.baseline
        args = (p.cost, b.model, b.attack_steps)
        if device == "stated":
            return cls(*args, None, False, root)
        if device == "gpu":
            return cls(*args, latest_bench(root, any_gpu=True), False, root)
        if device == "here" and gpu_visible():
            return cls(*args, latest_bench(root, this_device()), False, root)
        return cls(*args, latest_bench(root, ("cpu", this_device()[1])), True, root)

    def _say(self, words: str) -> None:
        if words not in self.sources:
            self.sources.append(words)

    def _report_name(self) -> str:
        f = self.bench[0]
        if self.root is not None and f.is_relative_to(self.root):
            return str(f.relative_to(self.root))
        return f.name

    # -- training -------------------------------------------------------------------

    def epoch_seconds(self, spec: RunSpec) -> float | None:
        """Seconds of one epoch of ``spec`` on the full training split (None: no estimate)."""
        t = spec.train
        work = 1 if t.algorithm == "std" else t.attack.steps + 1
        if self.bench is not None:
            alg = "pgd" if t.algorithm in ("std", "mart") else t.algorithm
            report = self.bench[1]
            for r in report.get("results", []):
                h = r.get("hardex") or {}
                s = (h.get("tracking") or h.get("no_tracking") or {}).get("s_per_epoch")
                if r.get("model") == t.model.name and r.get("algorithm") == alg and s:
                    images = report.get("settings", {}).get("epoch_images", FULL_SPLIT)
                    words = f"from {self._report_name()}"
                    if report.get("settings", {}).get("quick"):
                        words += ", a --quick plumbing report"
                    self._say(words)
                    return s * (FULL_SPLIT / images) * work / (r.get("attack_steps", 10) + 1)
        m = self.cost.minutes_per_epoch
        alg = t.algorithm if t.algorithm in m else "pgd"
        if not m.get(alg):
            return None
        minutes = m[alg]
        if t.algorithm != "std":  # the stated minutes are for the baseline's attack steps
            minutes *= work / (self.attack_steps + 1)
        if t.model.name != self.model:
            if t.model.name not in self.cost.model_scale:
                return None
            minutes *= self.cost.model_scale[t.model.name]
        words = "from the profile's stated minutes per epoch, not measured"
        if self.cpu:
            minutes *= CPU_SLOWDOWN
            words += f", x{CPU_SLOWDOWN:g} for a CPU (a stated guess)"
        self._say(words)
        return 60 * minutes

    def train_seconds(self, spec: RunSpec, epochs: int) -> float | None:
        """Seconds to train ``epochs`` epochs of ``spec`` (its share of the training split)."""
        per = self.epoch_seconds(spec)
        return None if per is None else per * training_fraction(spec) * epochs

    # -- evaluation -----------------------------------------------------------------

    def passes_per_s(self) -> float | None:
        """Forward+backward passes per second of the fp32 evaluation."""
        for e in (self.bench[1] if self.bench else {}).get("eval", []):
            if e.get("model") == self.model or self.bench[1]["environment"].get("device") == "cpu":
                ips = e["pgd20"]["images_per_s"]
                self._say(f"evaluation: PGD-20 throughput of {self._report_name()} ({ips:.0f} images/s, fp32)")
                return ips * 21
        rate = self.cost.eval_passes_per_s
        if not rate:
            return None
        rate /= CPU_SLOWDOWN if self.cpu else 1.0
        self._say(f"evaluation: a stated {self.cost.eval_passes_per_s:.0f} passes/s, not measured"
                  + (f", /{CPU_SLOWDOWN:g} for a CPU" if self.cpu else ""))
        return rate

    def own_eval_passes(self, spec: RunSpec, epochs: int) -> float:
        """Passes of the evaluation a run does itself over ``epochs`` epochs: the per-epoch test
        evaluation, the probes, and final.json's PGD-k of the final and best models."""
        c = spec.train
        n_train = c.dataset.subset.n if c.dataset.subset else FULL_SPLIT
        ev = c.eval
        passes = 0.0
        if ev.every:  # clean + PGD-k: k forward+backward and the last step's forward
            passes += math.ceil(epochs / ev.every) * (ev.subset or 10000) * (ev.pgd_steps + 2)
        for p in c.probes:
            if p.indices is not None:
                size = len(p.indices)
            elif p.rule is not None:
                size = p.rule.k if p.rule.k is not None else p.rule.fraction * n_train
            else:
                size = n_train
            bins = p.quantiles.n_bins if p.quantiles is not None else 1
            per_set = min(size / bins, p.max_examples or size)
            adv = any(m in p.metrics for m in ("adv_acc", "el2n_adv"))
            passes += epochs / p.every * bins * per_set * (1 + (c.attack.steps + 1 if adv else 0))
        which = getattr(spec.evaluation, "which", ("final", "best"))
        passes += len(which) * (ev.final_subset or 10000) * sum(k + 2 for k in ev.final_pgd_steps)
        return passes

    def attack_passes(self, attack: str, options: dict | None = None) -> float:
        """Forward+backward passes per example of one ``evaluate_run`` attack (stated where not PGD/CW)."""
        name = attack.split("@")[0]
        m = re.fullmatch(r"(pgd|cw)(\d+)", name)
        if m:
            return int(m.group(2)) + 1
        if name == "fgsm":
            return 2
        if name.startswith("rays"):
            q = (options or {}).get("rays_queries") or (int(name[4:]) if name[4:].isdigit() else None)
            return float(q) if q else self.cost.passes_per_example.get("rays", 0.0)
        return self.cost.passes_per_example.get(name, 0.0)

    def eval_seconds(self, spec: RunSpec, epochs: int) -> float | None:
        rate = self.passes_per_s()
        return None if rate is None else self.own_eval_passes(spec, epochs) / rate

    def request_seconds(self, req: EvalRequest) -> float | None:
        rate = self.passes_per_s()
        if rate is None:
            return None
        options = dict(req.options)
        return (req.n or 10000) * sum(self.attack_passes(a, options) for a in req.attacks) / rate

    # -- totals ---------------------------------------------------------------------

    def run_seconds(self, spec: RunSpec, epochs: int | None = None) -> float | None:
        """Training and the run's own evaluation of ``epochs`` (default: every epoch it trains itself)."""
        from hardex.runs.describe import epochs_trained

        n = epochs_trained(spec) if epochs is None else epochs
        tr, ev = self.train_seconds(spec, n), self.eval_seconds(spec, n)
        return None if tr is None else tr + (ev or 0.0)

    def hours(self, specs, evaluations=()) -> float | None:
        """GPU-hours of ``specs`` (each once, their own epochs) and ``evaluations``; None when
        some run has no estimate."""
        total = 0.0
        for s in {s.hash: s for s in specs}.values():
            sec = self.run_seconds(s)
            if sec is None:
                return None
            total += sec
        for req in evaluations:
            sec = self.request_seconds(req)
            if sec is None:
                return None
            total += sec
        return total / 3600
