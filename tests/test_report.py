"""The paper's numbers as shipped with the package, and the paper-vs-ours table."""

import math
import re
from pathlib import Path

import pytest

from hardex import report
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
