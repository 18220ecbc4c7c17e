"""hardex.evaluation.suite: attack names, feasibility, strength on an undefended model, worst case,
exact pass counting, masking report, purifier path, run evaluation with its cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from hardex.evaluation.a3 import a3, default_schedule
from hardex.evaluation.suite import (PassCounter, _check_feasible, cache_key, evaluate_model, evaluate_run, parse_attack,
                             precision_agreement, table)

from test_a3 import EPS, _cnn, _data

SHORT_A3 = {"schedule": default_schedule()[:4], "min_keep": 8}
SHORT_MD = {"steps": 20, "change_point": 8}
SHORT_AA = {"n_iter": 20, "n_restarts": 1}


def test_parse_attack_names_and_errors() -> None:
    assert parse_attack("pgd20").kind == "pgd" and parse_attack("pgd20").steps == 20
    assert parse_attack("CW10").name == "cw10" and parse_attack("cw10").kind == "cw"
    assert parse_attack("rays").steps is None and parse_attack("rays500").steps == 500
    assert {parse_attack(a).kind for a in ("a3", "autoattack", "md", "fgsm")} == {"a3", "autoattack", "md", "fgsm"}
    low = parse_attack("PGD20@BF16")
    assert (low.name, low.kind, low.steps, low.precision) == ("pgd20@bf16", "pgd", 20, "bf16")
    assert parse_attack("cw10@bf16").precision == "bf16" and parse_attack("cw10").precision == "fp32"
    for bad in ("pgd", "pgd0", "apgd", "a4", "", "a3@bf16", "pgd20@fp16", "pgd0@bf16"):
        with pytest.raises(ValueError, match="allowed|must be"):
            parse_attack(bad)
    with pytest.raises(ValueError, match="unknown attack 'foo'.*pgdK.*autoattack"):
        parse_attack("foo")


def test_bad_inputs_are_named() -> None:
    model = _cnn()
    x, y = _data(model, 4)
    with pytest.raises(ValueError, match=r"eps must lie in \[0, 1\].*1.5"):
        evaluate_model(model, (x, y), ["pgd2"], eps=1.5)
    with pytest.raises(ValueError, match="listed twice: pgd2"):
        evaluate_model(model, (x, y), ["pgd2", "PGD2"], eps=EPS)
    with pytest.raises(ValueError, match="unknown attack 'nope'"):
        evaluate_model(model, (x, y), "pgd2,nope", eps=EPS)


def test_feasibility_check_can_fail() -> None:
    x = torch.rand(3, 3, 4, 4)
    x[0, 0, 0, 0] = 0.0
    _check_feasible("ok", (x + 0.01).clamp(0, 1), x, 0.01)
    with pytest.raises(RuntimeError, match="outside the eps-ball"):
        _check_feasible("far", (x + 0.02).clamp(0, 1), x, 0.01)
    with pytest.raises(RuntimeError, match=r"range \[-"):
        _check_feasible("neg", x - 0.005, x, 0.01)


def test_every_attack_breaks_an_undefended_model() -> None:
    """Every attack's points are feasible (evaluate_model checks each returned point and
    raises otherwise) and all reach ~0% at eps 8/255 on an undefended CNN."""
    model = _cnn()
    x, y = _data(model, 26)
    x, y = x[2:], y[2:]  # images 0 and 1 are constant (one-sided box): see test_a3
    res = evaluate_model(model, (x, y), ["pgd10", "cw10", "a3", "md", "rays2000", "autoattack"], EPS, batch_size=16,
                         a3_options=SHORT_A3, md_options=SHORT_MD, autoattack_options=SHORT_AA, masking=False)
    assert res["clean_acc"] == 1.0 and res["n"] == 24
    for name, acc in res["robust_acc"].items():
        assert acc <= 0.1, (name, acc)
    assert res["worst_case_acc"] == 0.0
    assert set(res["cost"]) == set(res["robust_acc"])
    assert res["cost"]["rays2000"]["backward"] == 0 and res["cost"]["rays2000"]["forward"] > 0
    json.dumps(res)  # JSON-serialisable


def test_worst_case_never_above_any_member_and_per_class() -> None:
    model = _cnn()
    x, y = _data(model, 40)
    res = evaluate_model(model, (x, y), ["pgd5", "cw5", "fgsm", "a3"], 1 / 255, batch_size=16, a3_options=SHORT_A3,
                         masking=False, num_classes=10)
    pe = res["per_example"]
    bits = {k: np.array([c == "1" for c in v]) for k, v in pe.items() if k not in ("index", "labels")}
    for k in ("pgd5", "cw5", "fgsm", "a3"):
        assert res["worst_case_acc"] <= res["robust_acc"][k]
        assert not (bits["worst_case"] & ~bits[k]).any()
        assert np.isclose(bits[k].mean(), res["robust_acc"][k])
        assert not (bits[k] & ~bits["clean"]).any()  # robust implies clean-correct
    assert np.array_equal(bits["worst_case"], bits["clean"] & bits["pgd5"] & bits["cw5"] & bits["fgsm"] & bits["a3"])
    # per-class numbers by hand
    labels = np.array(pe["labels"])
    for c in range(10):
        sel = labels == c
        want = bits["a3"][sel].mean() if sel.any() else None
        got = res["per_class"]["attacks"]["a3"][c]
        assert (got is None and want is None) or np.isclose(got, want)
    easy = np.isin(labels, [0, 1, 7, 8, 9])
    assert np.isclose(res["class_groups"]["worst_case"]["easy"], bits["worst_case"][easy].mean())


def test_cost_counts_are_exact() -> None:
    model = _cnn()
    x, y = _data(model, 20)
    k, n = 7, 20
    res = evaluate_model(model, (x, y), ["pgd7", "cw3", "fgsm", "a3"], EPS, batch_size=8, a3_options=SHORT_A3,
                         masking=False)
    assert res["cost"]["pgd7"]["forward"] == k * n and res["cost"]["pgd7"]["backward"] == k * n
    assert res["cost"]["cw3"] == {**res["cost"]["cw3"], "forward": 3 * n, "backward": 3 * n}
    assert res["cost"]["fgsm"]["forward"] == n and res["cost"]["fgsm"]["backward"] == n
    ref = a3(model, x, y, EPS, seed=0, batch_size=8, **SHORT_A3)  # A3 counts its own passes
    assert res["cost"]["a3"]["forward"] == ref.n_forward and res["cost"]["a3"]["backward"] == ref.n_backward
    # the counter itself: a no-grad forward costs no backward
    c = PassCounter(model)
    with torch.no_grad():
        c(x[:5])
    xr = x[:3].clone().requires_grad_(True)
    c(xr).sum().backward()
    assert (c.forward_passes, c.backward_passes) == (8, 3)


class _Quantised(nn.Module):
    """Rounds the input to 16 levels: the forward is fine, input gradients are zero."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 16) / 16)


def test_masking_report_flags_masked_model_only() -> None:
    base = _cnn()
    x, _ = _data(base, 32)
    for model, expect in ((base, False), (_Quantised(base), True)):
        with torch.no_grad():
            y = model(x).argmax(1)
        res = evaluate_model(model, (x, y), ["pgd10", "rays400"], EPS, batch_size=32, masking_n=32)
        m = res["masking"]
        assert m["suspicious"] is expect, m
        assert m["n"] == 32 and m["fgsm_acc"] is not None
        assert [e for e, _ in m["curve"]][-1] == 0.5
        if expect:
            assert any("eps 0.5" in r for r in m["reasons"]) and any("RayS" in r for r in m["reasons"])
            assert "SUSPICIOUS" in table(res)
        else:
            assert m["curve"][-1][1] == 0.0 and "passed" in table(res)


def test_masking_flags_fgsm_beating_pgd() -> None:
    """The FGSM rule: an iterative attack that travels only eps/2 (4 steps of eps/8, no
    random start) cannot cross a boundary at distance 0.02 > eps/2, one FGSM step of eps
    can; the check must flag the iterative attack as weaker than FGSM."""
    from hardex.attacks import pgd
    from hardex.evaluation.robustness import masking_check

    class Mean(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = x.flatten(1).mean(1, keepdim=True) - 0.5
            return torch.cat([z, -z], 1)

    x = torch.full((8, 3, 4, 4), 0.5 - 0.02)
    y = torch.ones(8, dtype=torch.long)

    def short_pgd(m, xs, ys, e):
        return pgd(m, xs, ys, e, e / 8, 4, random_start="none")

    out = masking_check(Mean(), x, y, [EPS], short_pgd, eps=EPS, large_eps=0.5)
    assert out["fgsm_acc"] == 0.0 and out["white_box_acc"] == 1.0
    assert any("FGSM" in r for r in out["reasons"])
    full = masking_check(Mean(), x, y, [EPS], lambda m, a, b, e: pgd(m, a, b, e, e / 4, 8, random_start="none"),
                         eps=EPS)
    assert not full["suspicious"], full


def test_purifier_path() -> None:
    model = _cnn()
    x, y = _data(model, 12)
    plain = evaluate_model(model, (x, y), ["pgd3", "cw3"], 2 / 255, batch_size=6, masking=False)
    ident = evaluate_model(model, (x, y), ["pgd3", "cw3"], 2 / 255, batch_size=6, masking=False,
                           purifier=lambda t: t)
    assert ident["robust_acc"] == plain["robust_acc"] and ident["params"]["_common"]["purifier"] is True
    calls = []

    def shrink(t: torch.Tensor) -> torch.Tensor:  # a trivial purifier the attack must go through
        calls.append(len(t))
        return 0.5 + 0.5 * (t - 0.5)

    res = evaluate_model(model, (x, y), ["pgd3"], 2 / 255, batch_size=6, masking=False, purifier=shrink)
    assert sum(calls) == 12 + 3 * 12 + 12  # clean + 3 attack steps + the check
    assert res["cost"]["pgd3"]["forward"] == 36


def test_cache_key_distinguishes_options() -> None:
    k = cache_key(["pgd20", "a3"], 1000, 0, "final", 0.031)
    assert k.startswith("final-pgd20+a3-n1000-s0-eps0.031-")
    assert k == cache_key(["PGD20", "a3"], 1000, 0, "final", 0.031)
    others = {cache_key(["pgd20", "a3"], 1000, 1, "final", 0.031), cache_key(["pgd20", "a3"], None, 0, "final", 0.031),
              cache_key(["pgd20", "a3"], 1000, 0, "best", 0.031), cache_key(["pgd20", "a3"], 1000, 0, "final", 0.03),
              cache_key(["pgd20", "a3"], 1000, 0, "final", 0.031, {"rays_queries": 5})}
    assert k not in others and len(others) == 5


def test_cache_key_versions_only_changed_attacks(monkeypatch: pytest.MonkeyPatch) -> None:
    # keys written before attack versions existed (the old formula, by hand) stay valid for
    # evaluations without a versioned attack; a change of A3's algorithm renews only A3's
    import hashlib
    import json

    from hardex.evaluation import suite

    def old_key(names: list[str]) -> str:
        blob = json.dumps({"format": 1, "attacks": names, "n": 64, "seed": 0, "which": "final", "eps": 0.031,
                           "options": {}}, sort_keys=True, default=str)
        return f"final-{'+'.join(names)}-n64-s0-eps0.031-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"

    assert cache_key(["pgd20", "autoattack"], 64, 0, "final", 0.031) == old_key(["pgd20", "autoattack"])
    k2 = cache_key(["pgd20", "a3"], 64, 0, "final", 0.031)
    assert k2 != old_key(["pgd20", "a3"])
    monkeypatch.setitem(suite.ATTACK_VERSIONS, "a3", 3)
    assert cache_key(["pgd20", "a3"], 64, 0, "final", 0.031) != k2


# --------------------------------------------------------------------------- runs

from test_store import needs_trainer, real_spec, store_at, tiny_cifar  # noqa: E402,F401


@needs_trainer
def test_evaluate_run_caches_atomically(tmp_path, tiny_cifar):  # noqa: F811
    from hardex.runs.plan import ensure

    store = store_at(tmp_path / "runs")
    [rec] = ensure([real_spec()], store, progress=False)
    kw = dict(attacks=("pgd2", "cw2", "a3"), n=12, seed=3, store=store, a3_options=SHORT_A3, masking_n=8)
    r1 = evaluate_run(rec, **kw)
    assert not r1["cached"] and r1["n"] == 12 and r1["epoch"] == 3 and r1["eps"] == pytest.approx(0.031)
    files = list((rec.path / "eval").iterdir())
    assert len(files) == 1 and files[0].name == f"{r1['key']}.json"
    r2 = evaluate_run(rec, **kw)
    assert r2["cached"] and {**r2, "cached": False} == r1
    # by hash, and the best model under its own key
    r3 = evaluate_run(rec.spec.short_hash, **kw)
    assert r3["cached"] and r3["key"] == r1["key"]
    best = evaluate_run(rec, **{**kw, "which": "best"})
    assert best["which"] == "best" and best["key"] != r1["key"]
    # the subset is seeded: the same examples as a fresh seeded draw
    assert r1["per_example"]["index"] == sorted(r1["per_example"]["index"])
    # a damaged file is recomputed, never returned
    files = {f.name for f in (rec.path / "eval").iterdir()}
    (rec.path / "eval" / f"{r1['key']}.json").write_text('{"key": ')
    r4 = evaluate_run(rec, **kw)
    assert not r4["cached"] and r4["robust_acc"] == r1["robust_acc"]
    assert {f.name for f in (rec.path / "eval").iterdir()} == files  # no temporary files left
    with pytest.raises(ValueError, match="which must be one of final, best"):
        evaluate_run(rec, which="last", store=store)
    with pytest.raises(KeyError, match="no run matching 'ffff"):
        evaluate_run("ffffffff", store=store)


class _DtypeProbe(nn.Module):
    """Records the dtype of the logits of every forward (autocast shows in it)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.dtypes: list[torch.dtype] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        self.dtypes.append(out.dtype)
        return out


def test_bf16_attack_runs_in_bf16_and_is_scored_in_fp32() -> None:
    torch.manual_seed(0)
    probe = _DtypeProbe(_cnn())
    x, y = _data(probe.model, 34)
    x, y = x[2:], y[2:]
    res = evaluate_model(probe, (x, y), ["pgd5", "pgd5@bf16"], 2 / 255, batch_size=32, masking=False)
    # clean (1 fp32 forward), pgd5: 5 fp32 forwards + 1 fp32 check; pgd5@bf16: 5 bf16 + 1 fp32 check
    assert probe.dtypes == [torch.float32] * 7 + [torch.bfloat16] * 5 + [torch.float32]
    assert res["params"]["pgd5@bf16"]["attack_precision"].startswith("bf16")
    assert "attack_precision" not in res["params"]["pgd5"]
    assert res["cost"]["pgd5@bf16"] == {**res["cost"]["pgd5"], "seconds": res["cost"]["pgd5@bf16"]["seconds"]}
    # the same attack up to bf16 rounding of the gradient signs: close robust accuracies
    assert abs(res["robust_acc"]["pgd5"] - res["robust_acc"]["pgd5@bf16"]) <= 0.25
    agree = precision_agreement(res, "pgd5")
    assert agree["n"] == 32 and agree["fp32_acc"] == res["robust_acc"]["pgd5"]
    assert agree["bf16_acc"] == res["robust_acc"]["pgd5@bf16"]


def _bits_result(fp32: str, bf16: str) -> dict:
    return {"attacks": ["pgd20", "pgd20@bf16"], "per_example": {"pgd20": fp32, "pgd20@bf16": bf16}}


def test_precision_agreement_by_hand() -> None:
    from math import comb

    def tail(c: int, m: int) -> float:  # P(X >= c), X ~ Bin(m, 1/2), summed by hand
        return sum(comb(m, i) for i in range(c, m + 1)) / 2**m

    # 8 examples broken only by fp32 (bf16 weaker on them), none the other way
    r = precision_agreement(_bits_result("00000000" + "1100", "11111111" + "1100"), "pgd20")
    assert (r["fp32_only_robust"], r["bf16_only_robust"]) == (0, 8)
    assert r["p_bf16_weaker"] == pytest.approx(tail(8, 8)) == pytest.approx(1 / 256)
    assert r["weaker"] and r["agreement"] == pytest.approx(4 / 12)
    assert r["fp32_acc"] == pytest.approx(2 / 12) and r["bf16_acc"] == pytest.approx(10 / 12)
    # 3 vs 4 discordant: no evidence either way
    r = precision_agreement(_bits_result("1110000" + "01", "0001111" + "01"), "pgd20")
    assert (r["fp32_only_robust"], r["bf16_only_robust"]) == (3, 4)
    assert r["p_bf16_weaker"] == pytest.approx(tail(4, 7)) and not r["weaker"]
    # the bf16 attack stronger: never "weaker"
    r = precision_agreement(_bits_result("1" * 10, "0" * 10), "pgd20")
    assert r["p_bf16_weaker"] == pytest.approx(1.0) and not r["weaker"]
    # identical: p = 1
    assert precision_agreement(_bits_result("0101", "0101"), "pgd20")["p_bf16_weaker"] == 1.0
    with pytest.raises(ValueError, match="no cw20, cw20@bf16"):
        precision_agreement(_bits_result("01", "01"), "cw20")
    with pytest.raises(ValueError, match="compares pgdK / cwK"):
        precision_agreement(_bits_result("01", "01"), "a3")
