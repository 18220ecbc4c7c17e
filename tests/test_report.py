"""The paper's numbers as shipped with the package, and the paper-vs-ours table."""

import math
import re

import pandas as pd
import pytest

from hardex.paper import report
from hardex.paths import repo_root

PAPER_TXT = repo_root().parent / "shared" / "paper" / "paper.txt"


def _numbers(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _numbers(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path, node


def test_lookup_and_clear_errors():
    assert report.paper_value("table1.none.rob") == 51.80
    assert report.paper_value("table3.cifar10_eps8.trades_dpls") == {"std": 85.36, "pgd": 59.33, "a3": 55.19}
    assert report.paper_value("table16.lambda_0.5.a3") == 54.03  # keys with dots
    with pytest.raises(KeyError, match="is a number"):
        report.paper_value("table1.none.rob.x")
    with pytest.raises(KeyError, match="no 'cifar11_eps8' under table3"):
        report.paper_value("table3.cifar11_eps8.pgd.std")


@pytest.mark.skipif(not PAPER_TXT.exists(), reason=f"paper text not found at {PAPER_TXT}")
def test_every_accuracy_appears_in_the_paper_text():
    """An independent check of the transcription: each accuracy (two decimals or fewer) is in the text."""
    text = PAPER_TXT.read_text()
    tokens = set(re.findall(r"\d+(?:\.\d+)?", text))
    missing = []
    for path, value in _numbers(report.paper_results()):
        if path.startswith("timings") or not isinstance(value, float):
            continue
        candidates = {f"{value:.2f}", f"{value:.1f}", f"{value:g}", f"{value:.3f}"}
        if not candidates & tokens:
            missing.append(f"{path}={value}")
    assert not missing, f"{len(missing)} numbers not found in paper.txt: {missing[:20]}"


def test_compare_table():
    ours = {"pgd": {"std": 0.8, "a3": 0.5}, "pgd_dpls": {"std": 0.81}}
    paper = {"pgd": {"std": 87.19, "a3": 51.80}, "pgd_dpls": {"std": 87.13, "a3": 54.03}}
    t = report.compare(ours, paper)
    assert t.loc["pgd", ("std", "ours")] == pytest.approx(80.0)
    assert t.loc["pgd", ("a3", "diff")] == pytest.approx(50.0 - 51.80)
    assert math.isnan(t.loc["pgd_dpls", ("a3", "ours")])  # not run: NaN, never a number
    assert list(t.columns.get_level_values(1)[:3]) == ["paper", "ours", "diff"]


# --- the registry of the paper's items and the appendix "Paper vs reproduction" -----------------

EXPERIMENTS_MD = PAPER_TXT.parent / "EXPERIMENTS.md"


def test_refs_parses_labels():
    assert report.refs("Tables 16, 17 (+Fig. 5 / 13)") == ["Table 16", "Table 17", "Fig. 5", "Fig. 13"]
    assert report.refs("Equation 8/9 and Theorems 6, 7") == ["Eq. 8", "Eq. 9", "Theorem 6", "Theorem 7"]
    assert report.refs("Table 2 / Table 7") == ["Table 2", "Table 7"]
    assert report.refs("Fig. 1 with 10k+10k") == ["Fig. 1"]  # "10k" is not a figure number
    assert report.refs("Figure 14: class histogram") == ["Fig. 14"]
    assert report.refs("budget") == []


@pytest.mark.skipif(not EXPERIMENTS_MD.exists(), reason=f"{EXPERIMENTS_MD} not found")
def test_registry_has_every_item_of_experiments_md():
    listed = report.refs(EXPERIMENTS_MD.read_text())
    reg = report.paper_items()
    assert len(listed) > 40  # the parser found the list, not a handful of stray words
    missing = [i for i in listed if i not in reg.index]
    assert not missing, f"items of EXPERIMENTS.md missing from report.PAPER_ITEMS: {missing}"
    extra = [i for i in reg.index if i not in listed]
    assert not extra, f"registry items EXPERIMENTS.md does not list: {extra}"


@pytest.mark.skipif(not PAPER_TXT.exists(), reason=f"paper text not found at {PAPER_TXT}")
def test_registry_has_every_captioned_table_and_figure_of_the_paper():
    captions = re.findall(r"\b((?:Table|Figure) \d+):", PAPER_TXT.read_text())
    reg = report.paper_items()
    missing = sorted({c for c in captions if report.refs(c)[0] not in reg.index})
    assert not missing, missing


def test_registry_keys_exist_and_items_are_unique():
    reg = report.paper_items()
    assert reg.index.is_unique
    for item, key in reg["key"].items():
        if key is not None:
            assert isinstance(report.paper_value(key), dict), f"{item}: {key}"
    # an item no chapter builds says why
    assert all(r["reason"] for r in report.PAPER_ITEMS if r["chapter"] is None)
    assert reg.loc["Table 3", "chapter"] == "dpls" and reg.loc["Table 1", "key"] == "table1"


def _ledgers():
    from hardex.paper.ledger import Ledger

    he = Ledger("hard_examples", "fast", "CIFAR-10 (JPEG copy)")
    he.table("Table 1", report.compare({"none": {"rob": 0.5}, "hard_pruning": {"rob": None}},
                                       {"none": {"rob": 51.8}, "hard_pruning": {"rob": 53.36}}))
    he.compare("Table 1", "pruning hard helps", "1" * 60 + "0" * 40, "1" * 40 + "0" * 60)
    he.fact("Fig. 3 (right)", "adv gap > clean gap", False)
    he.claim("Fig. 1", "x", None)
    mem = Ledger("memorization", "smoke", "CIFAR-10 (JPEG copy)")
    mem.fact("Table 2 / Table 7", "hard only fails", True)
    mem.fact("budget", "not an item", True)
    return {"hard_examples": he.to_dict(), "memorization": mem.to_dict()}


def test_reproduction_tables():
    t = report.reproduction_tables(_ledgers(), existing_chapters=["hard_examples", "memorization", "ablations"])
    items, summary, cells, claims = t["items"], t["summary"], t["cells"], t["claims"]
    assert set(items.index) == set(report.paper_items().index)
    assert items.loc["Table 1", "status"] == "1 of 2 numbers compared"
    assert (items.loc["Table 1", "holds"], items.loc["Fig. 3", "does not hold"], items.loc["Fig. 1", "not run"]) == (1, 1, 1)
    assert items.loc["Table 1", "profile"] == "fast" and items.loc["Table 1", "data"] == "CIFAR-10 (JPEG copy)"
    # smoke: the ledger drew no verdict; one claim counts for both items its label names
    assert items.loc["Table 2", "no verdict (smoke)"] == 1 and items.loc["Table 7", "no verdict (smoke)"] == 1
    assert items.loc["Table 5", "status"] == "not run: chapter 'ablations' was not executed in this build (no ledger)"
    assert items.loc["Table 3", "status"] == "not run: chapter 'dpls' is not written yet"
    assert items.loc["Fig. 2", "status"].startswith("not run: a schematic")
    assert items.loc["Theorem 2", "status"] == "not run: chapter 'theory' is not written yet"
    assert items.loc["Fig. 4", "status"] == "built; no number or claim recorded"
    # per chapter: each claim once, whatever its label names
    assert summary.loc["memorization", "no verdict (smoke)"] == 2 and summary.loc["memorization", "state"] == "ran (smoke)"
    assert summary.loc["hard_examples", ["holds", "does not hold", "not run"]].tolist() == [1, 1, 1]
    assert summary.loc["hard_examples", "numbers compared"] == 1
    assert summary.loc["dpls", "state"] == "not written yet"
    assert summary.loc["ablations", "state"] == "not executed in this build"
    assert (claims["item"] == "(other)").sum() == 1
    row = cells[(cells["item"] == "Table 1") & (cells["row"] == "none")].iloc[0]
    assert (row["paper"], row["ours"]) == (51.8, 50.0) and row["diff"] == pytest.approx(-1.8)


def test_reproduction_tables_show_intervals_and_power_and_read_old_ledgers():
    from hardex.paper.ledger import Ledger

    new = Ledger("dpls", "fast", "CIFAR-10")
    new.compare("Table 3", "DPLS > PGD", "1" * 60 + "0" * 40, "1" * 40 + "0" * 60)
    new.power("Table 3", "DPLS - PGD", 1000, 3, paper_effect=2.23)
    old = {"chapter": "hard_examples", "profile": "fast", "data": "d", "cells": [],
           "claims": [{"item": "Table 1", "claim": "x", "verdict": "holds", "evidence": ""}]}  # before issue 15
    t = report.reproduction_tables({"dpls": new.to_dict(), "hard_examples": old}, existing_chapters=["dpls", "hard_examples"])
    c = t["claims"].set_index("chapter")
    assert c.loc["dpls", "effect [95% interval]"].startswith("+20.00 [") and c.loc["dpls", "examples"] == 100
    assert c.loc["dpls", "effect [95% interval]"].endswith("] points") and c.loc["dpls", "p"].startswith("p ")
    assert c.loc["hard_examples", "effect [95% interval]"] == "-" and pd.isna(c.loc["hard_examples", "method"])
    p = t["power"]
    assert len(p) == 1 and p.iloc[0]["seeds"] == 3 and not p.iloc[0]["can confirm"]
    assert "inconclusive" in t["summary"].columns
