"""hardex.ledger: chapters' comparison records for the paper-vs-reproduction appendix."""

import json
import math

import pandas as pd
import pytest

from hardex import ledger
from hardex.report import compare


def _table():
    return compare({"baseline": {"a3": 0.5}, "dpls": {"a3": None}},
                   {"baseline": {"a3": 49.0}, "dpls": {"a3": 51.0}})


def test_table_cells_roundtrip(tmp_path):
    led = ledger.Ledger("dpls", "fast", "CIFAR-10 (JPEG copy)")
    led.table("Table 3", _table())
    path = led.save(tmp_path)
    rec = json.loads(path.read_text())
    cells = {(c["row"], c["metric"]): c for c in rec["cells"]}
    assert cells[("baseline", "a3")]["paper"] == 49.0
    assert math.isclose(cells[("baseline", "a3")]["ours"], 50.0)
    assert math.isclose(cells[("baseline", "a3")]["diff"], 1.0)
    # a cell we did not run is null, never a number
    assert cells[("dpls", "a3")]["ours"] is None and cells[("dpls", "a3")]["diff"] is None
    assert ledger.load_ledgers(tmp_path)["dpls"]["data"] == "CIFAR-10 (JPEG copy)"


@pytest.mark.parametrize("profile,holds,expected", [
    ("fast", True, ledger.HOLDS), ("fast", False, ledger.FAILS), ("paper", None, ledger.NOT_RUN),
    ("smoke", True, ledger.NO_VERDICT), ("smoke", False, ledger.NO_VERDICT), ("smoke", None, ledger.NOT_RUN)])
def test_verdicts(profile, holds, expected):
    led = ledger.Ledger("c", profile, "d")
    assert led.claim("Table 3", "DPLS > LS", holds) == expected
    assert list(led.verdicts()["verdict"]) == [expected]


def test_table_rejects_plain_frame():
    with pytest.raises(ValueError, match="Table 9"):
        ledger.Ledger("c", "fast", "d").table("Table 9", pd.DataFrame({"a": [1]}))


def test_ledger_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv("HARDEX_LEDGER_DIR", str(tmp_path / "x"))
    path = ledger.Ledger("c", "smoke", "d").save()
    assert path == tmp_path / "x" / "c.json"
    assert list(ledger.load_ledgers()) == ["c"]


def test_labels(tmp_path):
    assert ledger.label_eps(8 / 255) == "eps 8/255" and ledger.label_eps(0) == "STD (eps 0)"
    assert ledger.data_label("cifar10", tmp_path) == "CIFAR-10"
    (tmp_path / "cifar10" / "train").mkdir(parents=True)
    assert ledger.data_label("cifar10", tmp_path) == "CIFAR-10 (JPEG copy)"
    assert ledger.data_label("svhn", tmp_path) == "SVHN"


def test_banner():
    text = ledger.banner("fast", "CIFAR-10 (JPEG copy)", 0, "model `preact_resnet18`.")
    assert text == "**Profile `fast`**, data: CIFAR-10 (JPEG copy), model `preact_resnet18`. "
    smoke = ledger.banner("smoke", "CIFAR-10", 1000, "model `tiny_cnn`.", smoke_caveat=", with shortened attacks,")
    assert smoke.startswith("**Profile `smoke`**, data: CIFAR-10 (1000 class-balanced training images), model `tiny_cnn`. ")
    assert smoke.endswith("on a small sample, with shortened attacks, and say nothing about the paper's claims.")
    assert "no verdict" in smoke and "no verdict" not in text
