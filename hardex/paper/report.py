"""Tables and comparisons shared by the book's chapters: the paper's numbers next to ours.

The paper's numbers live in ``hardex/paper/paper_results.yaml`` (transcribed from the paper's
text; accuracies in percent). Chapters look them up by a dotted path, e.g.
``paper_value("table3.cifar10_eps8.pgd_dpls.a3")``, and put them beside the numbers computed
from run records with :func:`compare`. Nothing in a chapter is typed in by hand.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from typing import Any, Iterable, Mapping

import pandas as pd
import yaml


@lru_cache(maxsize=1)
def paper_results() -> dict[str, Any]:
    """The paper's reported numbers, as a nested dict (read once)."""
    text = resources.files("hardex").joinpath("paper/paper_results.yaml").read_text()
    return yaml.safe_load(text)


def paper_value(path: str) -> Any:
    """One entry of the paper's results by dotted path; a clear KeyError names the bad part.

    Keys may contain dots themselves (``table16.lambda_0.5.a3``): at each level the longest
    run of parts that is a key wins.
    """
    node: Any = paper_results()
    parts = path.split(".")
    walked: list[str] = []
    i = 0
    while i < len(parts):
        if not isinstance(node, Mapping):
            raise KeyError(f"paper result {path!r}: {'.'.join(walked)} is a number, not a table")
        for j in range(len(parts), i, -1):
            key = ".".join(parts[i:j])
            if key in node:
                break
        else:
            where = ".".join(walked) or "<top>"
            raise KeyError(f"paper result {path!r}: no {parts[i]!r} under {where} (has: {', '.join(map(str, node))})")
        node = node[key]
        walked.append(key)
        i = j
    return node


def compare(ours: Mapping[str, Mapping[str, float | None]], paper: Mapping[str, Mapping[str, float]],
            metrics: list[str] | None = None, scale: float = 100.0) -> pd.DataFrame:
    """A table with, per row and metric, the paper's number, ours and ours - paper.

    ``ours`` holds fractions in [0, 1] (as run records store them) and is multiplied by
    ``scale``; ``paper`` holds percentages. A row or metric we did not run shows as NaN,
    never as a number.
    """
    rows = list(dict.fromkeys([*paper.keys(), *ours.keys()]))
    metrics = metrics or list(dict.fromkeys(m for r in rows for m in (paper.get(r) or {})))
    data: dict[tuple[str, str], list[float]] = {}
    for m in metrics:
        p = [float((paper.get(r) or {}).get(m, float("nan"))) for r in rows]
        o_raw = [(ours.get(r) or {}).get(m) for r in rows]
        o = [float("nan") if v is None else float(v) * scale for v in o_raw]
        data[(m, "paper")] = p
        data[(m, "ours")] = o
        data[(m, "diff")] = [b - a for a, b in zip(p, o)]
    table = pd.DataFrame(data, index=rows)
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table


# ---------------------------------------------------------------------------------------------
# The paper's items (every table, figure and formal statement listed in
# ../shared/paper/EXPERIMENTS.md), the chapter of this book that builds each, and the key of
# its numbers in paper_results.yaml (None: a figure or a statement, the paper prints no table
# of numbers for it). ``reason``: why no chapter builds it.

def _items(chapter: str | None, section: str, *entries: tuple[str, str | None, str], reason: str = "") -> list[dict]:
    return [{"item": item, "section": section, "chapter": chapter, "key": key, "what": what, "reason": reason}
            for item, key, what in entries]


PAPER_ITEMS: list[dict[str, Any]] = [
    *_items("hard_examples", "3.1",
            ("Fig. 1", None, "test accuracy, 5k hard + 5k random, keep vs prune the hard part at the decay (STD, PGD)"),
            ("Fig. 10", None, "Fig. 1 with 10k hard + 10k random and a third 'hard only' branch"),
            ("Fig. 3", None, "EL2N of the top-10k hard / easy examples per epoch, eps 0/2/4/8; clean vs adversarial"),
            ("Fig. 11", None, "Fig. 3's EL2N curves in more settings"),
            ("Fig. 4", None, "train accuracy of all / easy / hard examples and test accuracy (robust overfitting)"),
            ("Fig. 12", None, "Fig. 4 with loss curves and eps 4, 2"),
            ("Table 1", "table1", "prune the top-10k easy / hard examples from epoch 91, PGD")),
    *_items(None, "3.1.1", ("Fig. 2", None, "schematic of an easy and a hard example near the boundary"),
            reason="a schematic drawing: nothing to compute"),
    *_items("theory", "3.1.1, 3.2, 4.2, App. A",
            ("Theorem 2", None, "the gradient-norm gap of a hard and an easy example grows under attack"),
            ("Corollary 3", None, "the gap grows with the easy example's margin and with eps"),
            ("Definition 4", None, "normal examples: robust + non-robust features"),
            ("Definition 5", None, "hard examples: a memorisation feature instead of the robust one"),
            ("Eq. 8", None, "closed-form accuracy of the adversarially trained linear model on normal data"),
            ("Eq. 9", None, "closed-form accuracy on hard data"),
            ("Theorem 6", None, "normal-test accuracies fall with the number of hard examples"),
            ("Theorem 7", None, "hard-test standard accuracy rises, robust accuracy falls"),
            ("Corollary 2", None, "overall standard accuracy rises with n iff n^3 <= beta m^3"),
            ("Definition 8", None, "per-example robust-feature coefficients"),
            ("Theorem 9", None, "optimal LS factors are proportional to the robust-feature coefficient")),
    *_items("memorization", "3.3",
            ("Fig. 5", None, "accuracy on the top-5k hard / easy examples, trained with vs without them (eps 8)"),
            ("Fig. 13", None, "Fig. 5 at eps 4, 2 and STD"),
            ("Table 2", "table2_table7", "train only on the top-10k easy or hard examples: STD and PGD eps 8"),
            ("Table 7", "table2_table7", "Table 2 at eps 4 and 2"),
            ("Fig. 6", None, "random labels on the 5k hardest vs easiest examples: accuracy curves"),
            ("Table 8", "table8", "final accuracy: normal / corrupted / pruned hard examples, PGD and TRADES"),
            ("Fig. 7", None, "prune the top n% easy / hard at epoch 90: std, robust, robust gain per eps")),
    *_items("memorization", "App. B.6",
            ("Fig. 14", None, "class histogram of the 10k easiest and hardest examples"),
            ("Fig. 15", None, "histogram of the min-max normalised difficulty per dataset"),
            ("Fig. 16", None, "easy and hard images with true class and most frequent prediction")),
    *_items("label_smoothing", "4.1",
            ("Fig. 8", None, "LS on the top n% hard / normal examples; LS vs pruning")),
    *_items("dpls", "4.2, 5",
            ("Algorithm 1", None, "DPLS training loop"),
            ("Algorithm 2", None, "DPLS label computation"),
            ("Table 3", "table3", "baseline / pruning / LS / DPLS, PGD and TRADES, four datasets, eps 8/4/2"),
            ("Table 9", "table9", "DPLS factor, LS factor and average DPLS factor per dataset"),
            ("Fig. 9", None, "train / test robust accuracy of PGD vs PGD+DPLS; per difficulty quintile")),
    *_items("comparisons", "5, App. B.5, C",
            ("Table 4", "table4", "200-epoch setup: PGD, SAT, KD+SWA, TE, DPLS, DPLS+SWA"),
            ("Table 6", "table6", "AWP, MART, RST with and without DPLS"),
            ("Table 11", "table11", "MART + DPLS by the run the difficulty comes from"),
            ("Table 12", "table12", "RST + DPLS on labelled / unlabelled / both"),
            ("Table 13", "table13", "Liu et al. 2022: reweight, adaptive target")),
    *_items("ablations", "App. D",
            ("Table 5", "table5_table10", "DPLS with C-score, CE, EL2N, 0-1 difficulty"),
            ("Table 10", "table5_table10", "Table 5 for TRADES"),
            ("Table 14", "table14", "DPLS difficulty epoch T"),
            ("Table 15", "table15", "restart epoch with difficulty precomputed to 90"),
            ("Table 16", "table16", "PGD + DPLS by lambda, with the average factor"),
            ("Table 17", "table17", "TRADES + DPLS by lambda, with the average factor"),
            ("Table 18", "table18", "difficulty-proportional reweighting vs DPLS"),
            ("Table 19", "table19", "TRADES, prune top 10% by four measures, class-balanced or not")),
    *_items("evaluation", "App. D, E",
            ("Table 20", "table20", "robust accuracy on easy vs hard classes"),
            ("Table 21", "table21", "MD attack and RayS vs A3"),
            ("Table 22", "table22", "DiffPure in front of the baseline and DPLS models")),
]

_KINDS = {"fig": "Fig.", "figure": "Fig.", "table": "Table", "theorem": "Theorem", "corollary": "Corollary",
          "corollaries": "Corollary", "definition": "Definition", "algorithm": "Algorithm", "eq": "Eq.",
          "equation": "Eq."}
_REF = re.compile(r"\b(Figs?\.?|Figures?|Tables?|Theorems?|Corollary|Corollaries|Definitions?|Algorithms?|"
                  r"Equations?|Eqs?\.?)\s*(\d+(?:\s*(?:,|/|&|\+|and)\s*\d+\b)*)", re.IGNORECASE)


def refs(label: str) -> list[str]:
    """The paper's items a label names, canonical and in order: ``"Tables 16, 17 (+Fig. 5 / 13)"``
    gives ``["Table 16", "Table 17", "Fig. 5", "Fig. 13"]``; ``"Equation 8/9"`` gives
    ``["Eq. 8", "Eq. 9"]``."""
    out: list[str] = []
    for kind, nums in _REF.findall(label):
        word = kind.lower().rstrip(".")
        word = {"figs": "fig", "figures": "figure", "eqs": "eq"}.get(word, word)
        prefix = _KINDS.get(word) or _KINDS[word.rstrip("s")]
        for n in re.findall(r"\d+", nums):
            ref = f"{prefix} {int(n)}"
            if ref not in out:
                out.append(ref)
    return out


def paper_items() -> pd.DataFrame:
    """:data:`PAPER_ITEMS` as a table indexed by item."""
    return pd.DataFrame(PAPER_ITEMS, dtype=object).set_index("item")


def reproduction_tables(ledgers: Mapping[str, Mapping[str, Any]], existing_chapters: Iterable[str]) -> dict[str, pd.DataFrame]:
    """The appendix "Paper vs reproduction" from the chapters' saved ledgers
    (:func:`hardex.paper.ledger.load_ledgers`) and the chapters whose source exists.

    Returns ``items`` (one row per paper item: chapter, status, profile, data, numbers
    compared, verdict counts), ``cells`` (every compared number: paper / ours / diff),
    ``claims`` (every claim with its verdict, effect and interval with its unit, examples,
    seeds, a p-value where it is one, the method in a few words and in full), ``power`` (each chapter's planned comparisons: minimum detectable effect next
    to the paper's effect) and ``summary`` (verdict counts per chapter).
    Cells and claims are attached to every item their label names (:func:`refs`); those
    naming no item of the registry are kept with item ``"(other)"``.
    """
    from hardex.paper.ledger import VERDICTS

    existing = set(existing_chapters)
    reg = paper_items()
    cell_rows, claim_rows = [], []
    for chapter, led in ledgers.items():
        meta = {"chapter": chapter, "profile": led.get("profile"), "data": led.get("data")}
        for kind, entries, rows in (("cells", led.get("cells", []), cell_rows),
                                    ("claims", led.get("claims", []), claim_rows)):
            for e in entries:
                for item in (refs(e["item"]) or ["(other)"]):
                    rows.append({"item": item if item in reg.index else "(other)", "label": e["item"], **meta,
                                 **{k: v for k, v in e.items() if k != "item"}})
    cells = pd.DataFrame(cell_rows, columns=["item", "label", "chapter", "profile", "data", "row", "metric",
                                             "paper", "ours", "diff", "note"])
    from hardex.paper.ledger import interval_text, method_short, p_text, p_value

    # ledgers written before issue 15 carry no statistics: their columns stay empty
    claims = pd.DataFrame([{**{k: r.get(k) for k in ("item", "label", "chapter", "profile", "data", "claim", "verdict")},
                            "effect [95% interval]": interval_text(r, unit=True), "examples": r.get("n"),
                            "seeds": r.get("seeds"), "p": p_text(p_value(r)), "method": method_short(r) or None,
                            "method (full)": r.get("method"), "evidence": r.get("evidence")} for r in claim_rows],
                          columns=["item", "label", "chapter", "profile", "data", "claim", "verdict",
                                   "effect [95% interval]", "examples", "seeds", "p", "method", "method (full)",
                                   "evidence"])
    claims = claims.astype({"examples": "Int64", "seeds": "Int64"})
    power = pd.DataFrame([{"chapter": ch, "profile": led.get("profile"), **p}
                          for ch, led in ledgers.items() for p in led.get("power", [])],
                         columns=["chapter", "profile", "item", "comparison", "examples", "seeds", "paper effect",
                                  "MDE", "can confirm", "discordance", "seed sd", "note"])

    rows = []
    for r in PAPER_ITEMS:
        item, ch = r["item"], r["chapter"]
        led = ledgers.get(ch) if ch else None
        c = cells[cells["item"] == item]
        v = claims[claims["item"] == item]
        if ch is None:
            status = f"not run: {r['reason']}"
        elif ch not in existing:
            status = f"not run: chapter '{ch}' is not written yet"
        elif led is None:
            status = f"not run: chapter '{ch}' was not executed in this build (no ledger)"
        elif led.get("not_run"):  # hardex book: a chapter the profile does not run
            status = f"not run on profile {led.get('profile')}: {led['not_run']}"
        elif c.empty and v.empty:
            status = "built; no number or claim recorded"
        else:
            n_num = int(c["ours"].notna().sum())
            status = f"{n_num} of {len(c)} numbers compared" if len(c) else "shown"
            if n_num == 0 and len(c):
                status = f"not run: none of {len(c)} numbers measured"
        counts = {verdict: int((v["verdict"] == verdict).sum()) for verdict in VERDICTS}
        rows.append({"item": item, "section": r["section"], "chapter": ch or "-", "paper key": r["key"] or "-",
                     "status": status, "profile": led["profile"] if led else "-",
                     "data": led["data"] if led else "-", **counts})
    items = pd.DataFrame(rows).set_index("item")

    chapters = list(dict.fromkeys([*(r["chapter"] for r in PAPER_ITEMS if r["chapter"]), *ledgers]))
    summary = []
    for ch in chapters:
        led = ledgers.get(ch)
        its = items[items["chapter"] == ch]
        v = pd.DataFrame(led.get("claims", []) if led else [], columns=["verdict"])
        run_state = (f"not run on profile {led['profile']}" if led and led.get("not_run") else
                     f"ran ({led['profile']})" if led else
                     ("not written yet" if ch not in existing else "not executed in this build"))
        summary.append({"chapter": ch, "state": run_state, "data": led["data"] if led else "-",
                        "paper items": len(its),
                        "items not run": int(its["status"].str.startswith("not run").sum()),
                        "numbers compared": int(pd.DataFrame(led.get("cells", []) if led else [],
                                                             columns=["ours"])["ours"].notna().sum()),
                        **{verdict: int((v["verdict"] == verdict).sum()) for verdict in VERDICTS}})
    return {"items": items, "cells": cells, "claims": claims, "power": power,
            "summary": pd.DataFrame(summary).set_index("chapter")}


# ---------------------------------------------------------------------------------------------
# Tables as a reader sees them


def _diff_colour(v: Any, scale: float) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return ""
    if f != f:  # NaN: not run
        return "color: #777"
    alpha = min(abs(f) / scale, 1.0) * 0.45
    rgb = "46, 160, 67" if f > 0 else "207, 34, 46"
    return f"background-color: rgba({rgb}, {alpha:.2f})" if f else ""


class ShownTable:
    """A :func:`compare` table for the page: an HTML table (a pandas Styler) under a caption
    that names the paper's item, with the paper's number and ours side by side and the
    ``diff`` columns (ours - paper) coloured by sign and size (full colour at ``scale``); a
    cell not run shows ``not run``. Its text form is the caption and the plain table, so
    nbval compares the same numbers as before. ``anchor`` is the HTML id other pages link to."""

    def __init__(self, table: pd.DataFrame, caption: str, anchor: str = "", precision: int = 2,
                 scale: float = 10.0):
        self.table, self.caption, self.anchor = table, caption, anchor
        self.precision, self.scale = precision, scale

    def styler(self):
        t = self.table
        diff = [c for c in t.columns if isinstance(c, tuple) and c[-1] == "diff"]
        uuid = re.sub(r"[^A-Za-z0-9_]", "_", self.anchor or "table")
        st = (t.style.set_uuid(uuid).format(precision=self.precision, na_rep="not run")
              .set_caption(self.caption)
              .set_table_styles([{"selector": "caption",
                                  "props": "caption-side: top; text-align: left; font-weight: bold; padding-bottom: 0.3em"}]))
        if diff:
            st = st.map(lambda v: _diff_colour(v, self.scale), subset=diff)
        return st

    def _repr_html_(self) -> str:
        body = self.styler().to_html()
        return f'<div id="{self.anchor}" class="hardex-table">{body}</div>' if self.anchor else body

    def __repr__(self) -> str:
        return f"{self.caption}\n{self.table.to_string()}"


def captioned(table: pd.DataFrame, caption: str, anchor: str = "", precision: int = 2, scale: float = 10.0) -> ShownTable:
    """``display(captioned(tab, "Table 3, CIFAR-10, eps 8/255: ...", "table-3-cifar10-eps8"))``."""
    return ShownTable(table, caption, anchor, precision, scale)
