"""What a chapter compared with the paper: its tables and its verdicts on the paper's claims.

Every chapter keeps one :class:`Ledger`. It records each table built with
:func:`hardex.paper.report.compare` (the paper's number, ours, the difference, per cell) and each
qualitative claim of the paper with a computed verdict, then saves itself as JSON. The
appendix "Paper vs reproduction" reads every chapter's ledger (:func:`load_ledgers`), so
it shows only what chapters actually computed in this build.

A verdict is computed from a statistic, never typed and never a bare ``a > b``
(:mod:`hardex.paper.stats`, issue 15): :meth:`Ledger.compare` (paired per-example outcomes of two
models, one seed or per-seed lists: bootstrap interval, exact McNemar), :meth:`Ledger.equivalent`
(a "no difference" claim: TOST within a stated margin), :meth:`Ledger.unpaired` (aggregate
accuracies only), :meth:`Ledger.fact` (a deterministic fact or seeded simulation, under a
named method), :meth:`Ledger.record` (any :class:`hardex.paper.stats.Comparison`, e.g. a
:func:`hardex.paper.stats.combine` of several). Each claim stores effect and interval (accuracy
points), method, examples, seeds and verdict: holds / does not hold / inconclusive.
``claim(item, claim, None, evidence)`` records a claim whose runs were not made ("not run");
a bool there is refused. On the smoke profile no verdict is drawn from what its training
made (tiny models, a few epochs): the statistics are computed and stored, the verdict is
``"no verdict (smoke)"``. A claim that rests on no training run (``trained=False``: a closed
form, a seeded simulation, an exact check, as in the theory chapter) is the same computation
on every profile, so its verdict stands on every profile, smoke and CPU rehearsal included.
:meth:`Ledger.power` records, before anything trains, the minimum detectable effect of a
planned comparison next to the paper's effect.

A CPU rehearsal (``Ledger(..., rehearsal=True)``: `hardex gpu-check --device cpu --stand-in ...`
and the book it renders) runs a GPU profile's code on a tiny stand-in: like smoke, its ledgers
keep the statistics and draw no verdict from training, and its pages say "CPU rehearsal".

Where ledgers go: the ``directory`` a ledger is given (``hardex book`` passes ``<out>/ledger``
to every chapter), else :data:`DEFAULT_DIR` under the checkout.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from pathlib import Path
from collections.abc import Mapping
from typing import Any

import pandas as pd

from hardex.paths import repo_root

from hardex.paper import stats

HOLDS, FAILS, NOT_RUN, NO_VERDICT = "holds", "does not hold", "not run", "no verdict (smoke)"
INCONCLUSIVE = "inconclusive"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NOT_RUN, NO_VERDICT)
assert (stats.HOLDS, stats.FAILS, stats.INCONCLUSIVE) == (HOLDS, FAILS, INCONCLUSIVE)
# stated assumptions of the power calculations (not measured): two adversarially trained
# models disagree on ~15% of test examples under a strong attack; one seed's effect has an sd
# of ~0.5 points (seed-to-seed spread of robust accuracy differences on CIFAR-10)
DISCORDANCE, SEED_SD = 0.15, 0.5
# Profiles that train one seed per comparison and must not draw a verdict the seed spread could
# undo: their one-seed intervals add the stated SEED_SD (hardex.paper.stats, "One training seed").
SINGLE_SEED_SD = {"quick": SEED_SD}
_SEEDED = ("paired", "across_seeds", "equivalence", "unpaired")
STAT_FIELDS = ("effect", "lo", "hi", "level", "method", "method_short", "unit", "n", "seeds", "margin", "p", "direction")


def default_dir() -> Path:
    """Where ledgers go when nobody says: ``<checkout>/_executed/ledger``."""
    return repo_root() / "_executed" / "ledger"


def label_eps(eps: float) -> str:
    """``eps 8/255`` for an l-inf radius in [0, 1]; ``STD (eps 0)`` for standard training."""
    return f"eps {round(eps * 255)}/255" if eps > 0 else "STD (eps 0)"


def data_label(dataset: str, root: str | os.PathLike | None = None) -> str:
    """How the book names the data a number was measured on: the offline JPEG copy of
    CIFAR-10 (an image-folder layout under the data root) is never called plain CIFAR-10."""
    from hardex import paths

    base = Path(root) if root is not None else paths.data_root()
    if dataset == "cifar10" and (base / dataset / "train").is_dir():
        return "CIFAR-10 (JPEG copy)"
    return {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "svhn": "SVHN",
            "stl10": "STL-10"}.get(dataset, dataset)


def banner(profile: str, data: str, train_subset: int, details: str, smoke_caveat: str = "",
           rehearsal: bool = False) -> str:
    """The chapter's opening line (Markdown): profile, data, training sample and ``details``;
    on the smoke profile also the warning that its numbers carry no verdict (``smoke_caveat``
    adds what else was shortened, e.g. ", with shortened attacks,"); on a CPU rehearsal
    (``rehearsal``) the warning that it is one."""
    text = (f"**Profile `{profile}`**, data: {data}"
            + (f" ({train_subset} class-balanced training images)" if train_subset else "")
            + f", {details} ")
    if profile == "smoke":
        text += ("**Smoke profile: plumbing only, no verdict.** Its numbers come from a tiny CNN trained "
                 f"for a few epochs on a small sample{smoke_caveat} and say nothing about the paper's claims.")
    elif rehearsal:
        text += (f"**CPU rehearsal of the {profile} profile: plumbing only, no verdict.** Its numbers come from a "
                 "tiny stand-in (a tiny CNN for a few epochs on a small sample, on a CPU) that runs the profile's "
                 "code before a GPU does, and say nothing about the paper's claims.")
    return text


def _outcomes(x: Any) -> bool:
    """Per-example outcomes (a bit string, a bool / int array, or a per-seed list of them)?"""
    import numpy as np

    if isinstance(x, str):
        return True
    if isinstance(x, (list, tuple)):
        return len(x) > 0 and all(_outcomes(v) for v in x)
    return isinstance(x, np.ndarray) and x.ndim == 1 and x.dtype.kind in "bi"


def _agg(x: Any) -> Any:
    """An aggregate accuracy (fraction), or per-seed list of them, from what a chapter holds."""
    if isinstance(x, (list, tuple)):
        return [float(v) for v in x]
    return float(x)


def _num(v: Any) -> float | None:
    if v is None:
        return None
    f = float(v)
    return None if math.isnan(f) else f


class _Stats:
    """:mod:`hardex.paper.stats` with a ledger's ``seed_sd`` as the default of the functions that
    take one (``led.stats.unpaired(...)`` in a chapter then covers the seed spread too)."""

    def __init__(self, seed_sd: float):
        self.seed_sd = seed_sd

    def __getattr__(self, name: str) -> Any:
        f = getattr(stats, name)
        if self.seed_sd and name in _SEEDED:
            return functools.partial(f, seed_sd=self.seed_sd)
        return f


class Ledger:
    """One chapter's comparisons with the paper (see the module docstring). ``seed_sd``
    (points): added to every one-seed interval (default: :data:`SINGLE_SEED_SD` of the
    profile, else 0). ``rehearsal``: a CPU rehearsal on a stand-in (no verdict, as smoke);
    ``directory``: where :meth:`save` writes (default :func:`default_dir`)."""

    def __init__(self, chapter: str, profile: str, data: str, seed_sd: float | None = None, *,
                 rehearsal: bool = False, directory: str | os.PathLike | None = None):
        self.chapter, self.profile, self.data = chapter, profile, data
        self.seed_sd = float(SINGLE_SEED_SD.get(profile, 0.0) if seed_sd is None else seed_sd)
        self.rehearsal = rehearsal
        self.directory = Path(directory) if directory else default_dir()
        self.cells: list[dict[str, Any]] = []
        self.claims: list[dict[str, Any]] = []
        self.powers: list[dict[str, Any]] = []

    @property
    def smoke(self) -> bool:
        """No verdict is drawn: the smoke profile, or a CPU rehearsal."""
        return self.profile == "smoke" or self.rehearsal



    def table(self, item: str, table: pd.DataFrame, note: str = "") -> pd.DataFrame:
        """Record a :func:`hardex.paper.report.compare` table (columns: (metric, paper|ours|diff))
        under ``item`` (e.g. ``"Table 3"``); returns the table, for display."""
        if not isinstance(table.columns, pd.MultiIndex) or table.columns.nlevels != 2:
            raise ValueError(f"{item}: expected a compare() table with (metric, paper/ours/diff) columns")
        for row in table.index:
            for metric in dict.fromkeys(table.columns.get_level_values(0)):
                self.cells.append({
                    "item": item, "row": str(row), "metric": str(metric),
                    "paper": _num(table.loc[row, (metric, "paper")]),
                    "ours": _num(table.loc[row, (metric, "ours")]),
                    "diff": _num(table.loc[row, (metric, "diff")]), "note": note,
                })
        return table

    @property
    def stats(self) -> _Stats:
        """The statistics module, reachable from a chapter as ``led.stats``, with this
        ledger's ``seed_sd`` applied (see :class:`_Stats`)."""
        return _Stats(self.seed_sd)

    def claim(self, item: str, claim: str, holds: stats.Comparison | None, evidence: str = "",
              trained: bool = True) -> str:
        """Record the paper's ``claim`` (made in ``item``). ``holds=None``: its runs were not
        made on this profile ("not run"); else a :class:`hardex.paper.stats.Comparison` (see
        :meth:`record`). A bool is refused: a verdict needs a statistic."""
        if holds is None:
            self.claims.append({"item": item, "claim": claim, "verdict": NOT_RUN, "evidence": evidence})
            return NOT_RUN
        if not isinstance(holds, stats.Comparison):
            raise TypeError(f"{item}: claim {claim!r} got {type(holds).__name__}; a verdict comes from a statistic "
                            "(led.compare / led.equivalent / led.unpaired / led.fact), never a bare bool")
        return self.record(item, claim, holds, evidence, trained)

    def record(self, item: str, claim: str, result: stats.Comparison, evidence: str = "",
               trained: bool = True) -> str:
        """Record ``claim`` with ``result``'s effect, interval, method, examples, seeds and
        verdict. ``trained``: the result rests on this profile's training runs, so on the smoke
        profile (and a CPU rehearsal) the verdict is ``"no verdict (smoke)"``, the statistics
        kept; ``trained=False`` (closed forms, seeded simulations, exact checks that train
        nothing): the computed verdict stands on every profile."""
        verdict = NO_VERDICT if self.smoke and trained else result.verdict
        d = result.to_dict()
        self.claims.append({"item": item, "claim": claim, "verdict": verdict, "evidence": evidence,
                            "trained": bool(trained),
                            **{k: d[k] for k in STAT_FIELDS}, "computed verdict": result.verdict,
                            **({"parts": d["extra"]["parts"]} if "parts" in d["extra"] else {}),
                            **({"per_seed": d["extra"]["per_seed"]} if "per_seed" in d["extra"] else {})})
        return verdict

    def test(self, a, b, direction: str = ">", n: int | None = None, margin: float | None = None,
             n_b: int | None = None) -> stats.Comparison:
        """The statistic for "model a beats model b" (or, with ``margin``, "a and b are
        equivalent") without recording it: paired (:func:`hardex.paper.stats.paired` /
        :func:`hardex.paper.stats.equivalence`) when both are per-example outcomes (bit strings,
        arrays, or per-seed lists of them), else unpaired on aggregate accuracies (fractions,
        or per-seed lists of them) on ``n`` (and ``n_b``) examples."""
        st = self.stats
        if _outcomes(a) and _outcomes(b):
            return st.paired(a, b, direction) if margin is None else st.equivalence(a, b, margin)
        if n is None:
            raise ValueError("aggregate accuracies need the number of examples n")
        return st.unpaired(_agg(a), n, _agg(b), n if n_b is None else n_b, direction, margin)

    def compare(self, item: str, claim: str, a, b, direction: str = ">", evidence: str = "", **kw) -> str:
        """Paired comparison of models ``a`` and ``b`` on the same test examples (per-example
        outcomes: bit strings / arrays, or per-seed lists of them); the claim says
        acc(a) - acc(b) ``direction`` 0 (:func:`hardex.paper.stats.paired`)."""
        return self.record(item, claim, self.stats.paired(a, b, direction, **kw), evidence)

    def equivalent(self, item: str, claim: str, a, b, margin: float, evidence: str = "", **kw) -> str:
        """A "no difference" claim: acc(a) - acc(b) within +-``margin`` points (TOST,
        :func:`hardex.paper.stats.equivalence`)."""
        return self.record(item, claim, self.stats.equivalence(a, b, margin, **kw), evidence)

    def unpaired(self, item: str, claim: str, acc_a, n_a: int, acc_b, n_b: int, direction: str = ">",
                 margin: float | None = None, evidence: str = "", **kw) -> str:
        """Aggregate accuracies (fractions) on ``n_a`` / ``n_b`` examples, no per-example
        outcomes (:func:`hardex.paper.stats.unpaired`)."""
        return self.record(item, claim, self.stats.unpaired(acc_a, n_a, acc_b, n_b, direction, margin, **kw), evidence)

    def fact(self, item: str, claim: str, holds: bool, method: str = "exact (deterministic)",
             evidence: str = "", effect: float | None = None, n: int | None = None, trained: bool = True) -> str:
        """A claim that is not a noisy comparison (a deterministic fact, a seeded simulation,
        a check with its own decision rule); ``method`` names why no interval applies.
        ``trained=False``: it computes on no training run (a closed form, a seeded simulation),
        so its verdict stands on every profile (:meth:`record`)."""
        return self.record(item, claim, stats.deterministic(holds, method, effect, n), evidence, trained)

    def power(self, item: str, comparison: str, n: int | None, seeds: int = 1, paper_effect: float | None = None,
              discordance: float = DISCORDANCE, seed_sd: float = SEED_SD, note: str = "",
              equivalence: bool = False) -> dict[str, Any]:
        """Record (and return) the minimum detectable effect (points; 95% interval, 80% power,
        :func:`hardex.paper.stats.mde`) of a planned comparison on ``n`` test examples and ``seeds``
        seeds, next to the paper's effect (points). ``discordance`` and ``seed_sd`` are stated
        assumptions (fraction of examples on which the two models disagree; sd of one seed's
        effect, points). ``n=None``: the comparison is not run on this profile.
        ``equivalence=True``: a "no difference" claim; the MDE column is then the smallest
        equivalence margin TOST confirms with 80% power at a true difference of 0
        (:func:`hardex.paper.stats.min_equivalence_margin`), to set next to the claim's margin."""
        f = stats.min_equivalence_margin if equivalence else stats.mde
        m = None if not n else f(int(n), int(seeds), discordance, seed_sd,
                                 seed_sd_in_interval=int(seeds) == 1 and self.seed_sd > 0)
        pe = _num(paper_effect)
        row = {"item": item, "comparison": comparison, "examples": int(n) if n else None, "seeds": int(seeds),
               "paper effect": pe, "MDE": m, "discordance": discordance, "seed sd": seed_sd,
               "can confirm": None if m is None or pe is None else bool(abs(pe) >= m),
               "note": note}
        if equivalence:  # paper_effect is then the claim's margin
            row["can confirm"] = None if m is None or pe is None else bool(pe >= m)
        self.powers.append(row)
        return row

    def power_table(self) -> pd.DataFrame:
        cols = ["item", "comparison", "examples", "seeds", "paper effect", "MDE", "can confirm", "discordance",
                "seed sd", "note"]
        return pd.DataFrame(self.powers, columns=cols)

    def verdicts(self) -> "VerdictTable":
        """The claims as a table for the chapter's closing section (:func:`verdict_table`)."""
        return verdict_table(self.claims)

    def to_dict(self) -> dict[str, Any]:
        return {"chapter": self.chapter, "profile": self.profile, "data": self.data,
                **({"rehearsal": True} if self.rehearsal else {}),
                "cells": self.cells, "claims": self.claims, "power": self.powers}

    def save(self, directory: str | os.PathLike | None = None) -> Path:
        """Write ``<directory>/<chapter>.json`` atomically (default: the ledger's); returns the path."""
        d = Path(directory) if directory is not None else self.directory
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{self.chapter}.json"
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=False))
        os.replace(tmp, path)
        return path


def load_ledgers(directory: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """Every saved ledger in ``directory`` (default :func:`default_dir`), by chapter name."""
    d = Path(directory) if directory is not None else default_dir()
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(d.glob("*.json")) if d.is_dir() else []:
        rec = json.loads(path.read_text())
        out[rec["chapter"]] = rec
    return out


def _unit(c: Mapping[str, Any]) -> str:
    return str(c.get("unit") or "points")


def _num_text(v: float, unit: str) -> str:
    return f"{v:+.2f}" if unit == "points" else f"{v:+.3g}"


def interval_text(c: Mapping[str, Any], unit: bool = False) -> str:
    """``+2.10 [+0.40, +3.80]`` (``unit=True``: ``... points``, or the claim's unit); a
    non-95% interval is tagged (``(90%)``: an equivalence test's); "-" when the claim has no
    effect (not run, or a fact without one)."""
    eff, lo, hi, lvl = (_num(c.get(k)) for k in ("effect", "lo", "hi", "level"))
    if eff is None:
        return "-"
    u = _unit(c)
    tail = f" {u}" if unit else ""
    if lo is None or hi is None:
        return f"{_num_text(eff, u)}{tail}"
    lvl = lvl or 0.95
    tag = "" if abs(lvl - 0.95) < 1e-9 else f" ({round(100 * lvl)}%)"
    return f"{_num_text(eff, u)} [{_num_text(lo, u)}, {_num_text(hi, u)}]{tail}{tag}"


def method_short(c: Mapping[str, Any]) -> str:
    """The few words that name a claim's method (older ledgers: derived from the full text)."""
    if c.get("method_short"):
        return str(c["method_short"])
    return stats.short_method(str(c["method"])) if c.get("method") else ""


def p_value(c: Mapping[str, Any]) -> float | None:
    """The claim's p-value where it is one (the exact McNemar test of a one-seed paired
    comparison), else None."""
    p = _num(c.get("p"))
    return p if p is not None and "mcnemar" in str(c.get("method") or "").lower() else None


def p_text(p: float | None) -> str:
    if p is None:
        return ""
    return "p < 0.0001" if p < 1e-4 else f"p = {p:.2g}" if p < 0.01 else f"p = {p:.2f}"


VERDICT_COLUMNS = ["paper", "claim", "verdict", "effect [95% interval]", "examples", "seeds", "p", "method", "evidence"]


def verdict_table(claims: list[dict[str, Any]]) -> "VerdictTable":
    """Claims (ledger dicts, older ones without statistics included) as a table a reader can
    scan: the effect with its interval and unit (an equivalence test's 90% interval tagged),
    examples and seeds, a p-value only where the claim has one (McNemar), the method in a few
    words (the full description in a tooltip), the evidence."""
    rows, methods = [], []
    for c in claims:
        rows.append({"paper": c["item"], "claim": c["claim"], "verdict": c["verdict"],
                     "effect [95% interval]": interval_text(c, unit=True), "examples": c.get("n"),
                     "seeds": c.get("seeds"), "p": p_text(p_value(c)), "method": method_short(c) or "-",
                     "evidence": c.get("evidence", "")})
        methods.append(str(c.get("method") or ""))
    df = pd.DataFrame(rows, columns=VERDICT_COLUMNS).astype({"examples": "Int64", "seeds": "Int64"})
    return VerdictTable(df, methods)


class VerdictTable:
    """A verdict table for the page: ``frame`` (a DataFrame) shown as HTML with each method's
    full description as a tooltip on its short name (``pandas.io.formats.style.Styler.set_tooltips``);
    its text form is the plain table (what nbval compares). Indexing reaches the frame."""

    def __init__(self, frame: pd.DataFrame, methods: list[str]):
        self.frame, self.methods = frame, methods

    def __getitem__(self, key):
        return self.frame[key]

    def __len__(self) -> int:
        return len(self.frame)

    def styler(self):
        df = self.frame
        tips = pd.DataFrame("", index=df.index, columns=df.columns)
        if len(df):
            tips["method"] = self.methods
        # a Styler's default uuid is random: derive it from the content so the page's HTML is the
        # same on every execution (nbval compares it) and two tables on one page keep apart
        uuid = "v" + hashlib.sha1(df.to_json().encode()).hexdigest()[:8]
        return (df.style.set_uuid(uuid).hide(axis="index").format(na_rep="")
                .set_tooltips(tips, props="visibility: hidden; position: absolute; z-index: 10; background: #333; "
                              "color: #fff; padding: 0.3em 0.5em; border-radius: 3px; max-width: 32em; "
                              "white-space: normal; font-size: 0.85em; transform: translate(-50%, 1.2em);")
                .set_table_attributes('class="hardex-verdicts"'))

    def _repr_html_(self) -> str:
        return self.styler().to_html()

    def __repr__(self) -> str:
        return self.frame.to_string(index=False)
