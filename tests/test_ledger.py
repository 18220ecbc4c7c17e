"""hardex.paper.ledger: chapters' comparison records for the paper-vs-reproduction appendix."""

import json
import math

import pandas as pd
import pytest

from hardex.paper import ledger
from hardex.paper.report import compare


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


@pytest.mark.parametrize("profile,kind,expected", [
    ("fast", "up", ledger.HOLDS), ("fast", "down", ledger.FAILS), ("fast", "flat", ledger.INCONCLUSIVE),
    ("paper", None, ledger.NOT_RUN), ("smoke", "up", ledger.NO_VERDICT), ("smoke", "down", ledger.NO_VERDICT),
    ("smoke", None, ledger.NOT_RUN)])
def test_verdicts(profile, kind, expected):
    led = ledger.Ledger("c", profile, "d")
    a, b = "1" * 600 + "0" * 400, {"up": "1" * 400 + "0" * 600, "down": "1" * 800 + "0" * 200,
                                   "flat": "1" * 590 + "0" * 10 + "1" * 10 + "0" * 390}.get(kind)
    v = led.compare("Table 3", "DPLS > LS", a, b) if kind else led.claim("Table 3", "DPLS > LS", None, "not run")
    assert v == expected
    tab = led.verdicts()
    assert list(tab["verdict"]) == [expected]
    if kind:  # the statistics are computed and kept, on smoke too
        c = led.claims[0]
        assert c["n"] == 1000 and c["seeds"] == 1 and c["lo"] <= c["effect"] <= c["hi"] and "McNemar" in c["method"]
        assert c["computed verdict"] in (ledger.HOLDS, ledger.FAILS, ledger.INCONCLUSIVE)
        assert tab["effect [95% interval]"][0] == f"{c['effect']:+.2f} [{c['lo']:+.2f}, {c['hi']:+.2f}] points"
        assert tab["p"][0].startswith("p ") and tab["method"][0] == "paired bootstrap"
        html = tab._repr_html_()  # the full method is the short name's tooltip
        assert "exact McNemar p" in html and "paired bootstrap over test examples" in html
        # the same table renders the same HTML every time (nbval compares it across executions)
        assert html == led.verdicts()._repr_html_() and 'id="T_v' in html
        assert repr(tab).splitlines()[0].split()[:3] == ["paper", "claim", "verdict"]


def test_claim_refuses_a_bare_bool_and_other_recorders(tmp_path):
    led = ledger.Ledger("c", "fast", "d")
    with pytest.raises(TypeError, match="bare bool"):
        led.claim("Table 3", "a > b", True)
    assert led.fact("Tables 16/17", "smaller lambda, smaller factor", True) == ledger.HOLDS
    assert led.claims[0]["method"] == "exact (deterministic)" and led.claims[0]["lo"] is None
    assert led.equivalent("Table 3", "LS = PGD", "1" * 5000 + "0" * 5000, "1" * 5000 + "0" * 5000, margin=2.0) == ledger.HOLDS
    assert led.claims[1]["direction"] == "=" and led.claims[1]["margin"] == 2.0
    assert led.unpaired("Table 1", "pruning helps", 0.6, 10000, 0.5, 10000) == ledger.HOLDS
    seeds = led.compare("Table 3", "per seed", ["1" * 60 + "0" * 40] * 3, ["1" * 40 + "0" * 60] * 3)
    assert seeds == ledger.HOLDS and led.claims[-1]["seeds"] == 3 and len(led.claims[-1]["per_seed"]) == 3
    both = led.stats.combine([led.stats.paired("1" * 60 + "0" * 40, "1" * 40 + "0" * 60), led.stats.deterministic(False)])
    assert led.record("Table 3", "both", both) == ledger.FAILS and len(led.claims[-1]["parts"]) == 2
    row = led.power("Table 3", "DPLS vs PGD (A3)", 1000, 3, paper_effect=2.23)
    assert row["MDE"] == pytest.approx(led.stats.mde(1000, 3, 0.15, 0.5)) and row["can confirm"] is False
    rec = json.loads(led.save(tmp_path).read_text())
    assert len(rec["claims"]) == 5 and rec["power"][0]["seeds"] == 3


def test_table_rejects_plain_frame():
    with pytest.raises(ValueError, match="Table 9"):
        ledger.Ledger("c", "fast", "d").table("Table 9", pd.DataFrame({"a": [1]}))


def test_ledger_directory(tmp_path):
    path = ledger.Ledger("c", "smoke", "d", directory=tmp_path / "x").save()
    assert path == tmp_path / "x" / "c.json"
    assert list(ledger.load_ledgers(tmp_path / "x")) == ["c"]
    assert ledger.Ledger("c", "fast", "d").directory == ledger.default_dir()


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


def test_quick_profile_ledger_adds_the_stated_seed_spread(tmp_path):
    """Profile quick trains one seed: its ledger's intervals (led.compare and led.stats.*)
    carry ledger.SEED_SD, so an effect a seed could undo gets no verdict."""
    a, b = "1" * 5060 + "0" * 4940, "1" * 5000 + "0" * 5000  # +0.6 points, 60 discordant pairs: se 0.08
    fast, quick = ledger.Ledger("x", "fast", "d"), ledger.Ledger("x", "quick", "d")
    assert (fast.seed_sd, quick.seed_sd) == (0.0, ledger.SEED_SD)
    assert fast.compare("T", "a > b", a, b) == "holds"
    assert quick.compare("T", "a > b", a, b) == "inconclusive"
    assert "seed-to-seed sd of 0.5" in quick.claims[-1]["method"]
    assert quick.stats.unpaired(0.6, 100, 0.5, 100).method.endswith("(one training seed)")
    assert quick.stats.mde is ledger.stats.mde and quick.stats.HOLDS == "holds"
    assert quick.power("T", "a - b", 10000, 1, 2.0)["MDE"] > fast.power("T", "a - b", 10000, 1, 2.0)["MDE"]


@pytest.mark.parametrize("profile, rehearsal", [("smoke", False), ("quick", True), ("fast", False)])
def test_claims_that_train_nothing_get_their_verdict_on_every_profile(profile, rehearsal):
    """A closed form or seeded simulation (trained=False) is the same computation on every
    profile: its computed verdict stands on smoke and in a CPU rehearsal; a claim that rests on
    smoke-scale training does not get one there."""
    led = ledger.Ledger("theory", profile, "no data", rehearsal=rehearsal)
    assert led.fact("Corollary 2", "rises iff n^3 <= beta m^3", False, "exact (closed form)", "73% of the grid",
                    trained=False) == ledger.FAILS
    assert led.fact("Theorem 2", "D_std < D_adv", True, "exact (closed form)", trained=False) == ledger.HOLDS
    trained = led.fact("Fig. 14", "hard examples are unevenly spread", True, "exact (class counts)")
    assert trained == (ledger.NO_VERDICT if led.smoke else ledger.HOLDS)
    assert [c["trained"] for c in led.claims] == [False, False, True]
    assert led.claims[0]["computed verdict"] == ledger.FAILS and led.claims[0]["method_short"] == "exact"
