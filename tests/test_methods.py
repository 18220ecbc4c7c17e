"""hardex.methods: each method's loss or update rule against an independent computation
(float64 or by hand), one tiny Trainer run per method, bit-exact resume of the stateful
ones (SAT, TE, SWA), and config errors."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from hardex import methods as M
from hardex.runs.files import load_store_file
from hardex.train import Trainer
from test_train import make_tiny_cifar, small_cfg, strip
from test_store import tiny_cifar  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    return make_tiny_cifar(tmp_path_factory.mktemp("data"))


def _logits(n=6, c=4, seed=0, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(n, c, generator=g), scale * torch.randn(n, c, generator=g)


# ------------------------------------------------------------------- formulas


def test_mart_loss_matches_float64_hand_formula():
    zn, za = _logits()
    y = torch.tensor([0, 1, 2, 3, 0, 2])
    beta = 6.0
    got = M.mart_loss(zn, za, y, beta)
    pn, pa = zn.double().softmax(1), za.double().softmax(1)
    total = 0.0
    for i in range(6):
        yi = int(y[i])
        others = [k for k in range(4) if k != yi]
        k_star = max(others, key=lambda k: float(pa[i, k]))  # largest wrong-class probability
        bce = -math.log(pa[i, yi]) - math.log(1.0001 - pa[i, k_star] + 1e-12)
        kl = sum(float(pn[i, k] * (math.log(pn[i, k] + 1e-12) - math.log(pa[i, k] + 1e-12))) for k in range(4))
        total += bce + beta * kl * (1 - float(pn[i, yi]))
    assert float(got) == pytest.approx(total / 6, rel=1e-5)
    # soft targets replace only the CE part
    soft = torch.full((6, 4), 0.1)
    soft[torch.arange(6), y] = 0.7
    diff = M.mart_loss(zn, za, y, beta, targets=soft, reduction="none") - M.mart_loss(zn, za, y, beta, reduction="none")
    ce_soft = -(soft.double() * pa.log()).sum(1)
    ce_hard = -pa.log()[torch.arange(6), y]
    assert torch.allclose(diff.double(), ce_soft - ce_hard, atol=1e-5)


def test_kd_terms_by_hand():
    zs, zt = _logits(seed=1)
    T = 2.0
    got = M.kd_terms(zs, {"t": zt}, T)["t"]
    p = (zt.double() / T).softmax(1)
    q = (zs.double() / T).softmax(1)
    want = T * T * (p * (p.log() - q.log())).sum(1)
    assert torch.allclose(got.double(), want, atol=1e-6)


def test_te_rampup_values():
    # exp(-5 (1 - (e - 90) / 60)^2) between 90 and 150 (dongyp13/memorization-AT)
    assert M.te_rampup(89, 90, 150) == 0.0
    assert M.te_rampup(90, 90, 150) == pytest.approx(math.exp(-5.0))
    assert M.te_rampup(120, 90, 150) == pytest.approx(math.exp(-5.0 * 0.25))
    assert M.te_rampup(150, 90, 150) == 1.0
    assert M.te_rampup(200, 90, 150) == 1.0
    z = torch.tensor([[0.0, 0.0]])
    assert float(M.te_consistency(z, torch.tensor([[1.0, 0.0]]))) == pytest.approx(0.25)


def test_sat_target_update_and_weights_by_hand():
    ema = M.EMATargets(5, 3, momentum=0.9, init="onehot", device="cpu")
    idx, y = torch.tensor([4, 1]), torch.tensor([2, 0])
    p1 = torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    t1 = ema.update(idx, y, p1)
    want1 = torch.tensor([[0.02, 0.03, 0.9 + 0.05], [0.9 + 0.06, 0.03, 0.01]])
    assert torch.allclose(t1, want1)
    p2 = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    t2 = ema.update(idx, y, p2)  # second touch: from the stored row, not one-hot again
    assert torch.allclose(t2, 0.9 * want1 + 0.1 * p2)
    w = M.sat_weights(t2)
    mx = t2.max(1).values
    assert torch.allclose(w, mx * 2 / mx.sum()) and float(w.mean()) == pytest.approx(1.0)
    te = M.EMATargets(5, 3, momentum=0.9, init="zeros", device="cpu")
    assert torch.allclose(te.update(idx, y, p1), 0.1 * p1)


def test_reweight_weights_by_hand():
    zn, za = _logits(seed=3)
    y = torch.tensor([0, 1, 2, 3, 0, 2])
    pa, pn = za.softmax(1), zn.softmax(1)
    assert torch.allclose(M.reweight_weights("prob", y, za, None), pa[torch.arange(6), y])
    assert torch.allclose(M.reweight_weights("comp_nat_prob", y, None, zn), 1 - pn[torch.arange(6), y])
    assert torch.allclose(M.reweight_weights("max_prob", y, za, None), pa.max(1).values)


def test_awp_per_layer_norm_ratio_is_gamma():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    proxy = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.BatchNorm1d(16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 3))

    def loss(m):
        return F.cross_entropy(m(x), y)

    diffs = M.awp_diffs(model, proxy, loss, gamma=0.01, lr=0.01)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # model untouched
    assert set(diffs) == {"0.weight", "3.weight"}  # matrices only: no biases, no BN
    params = dict(model.named_parameters())
    for name, d in diffs.items():
        assert float(d.norm() / params[name].detach().norm()) == pytest.approx(0.01, rel=1e-5)
    # the direction is one ascent step: parallel to +grad (plain SGD, no momentum)
    proxy.zero_grad()
    proxy.load_state_dict(model.state_dict())
    loss(proxy).backward()
    g = dict(proxy.named_parameters())["0.weight"].grad
    cos = F.cosine_similarity(diffs["0.weight"].flatten(), g.flatten(), dim=0)
    assert float(cos) == pytest.approx(1.0, abs=1e-5)
    M.add_to_weights(model, diffs, +1.0)
    M.add_to_weights(model, diffs, -1.0)
    assert torch.allclose(model[0].weight, before["0.weight"], atol=1e-7)


# ------------------------------------------------------------------- Trainer runs


METHODS = {
    "mart": dict(algorithm="mart", attack={"steps": 2, "random_start": "normal"}),
    "awp_pgd": dict(awp={"gamma": 0.01}),
    "awp_trades": dict(algorithm="trades", awp={"gamma": 0.005, "from_epoch": 2}),
    "swa": dict(swa={"from_epoch": 1}),
    "sat": dict(sat={"from_epoch": 1}),
    "sat_trades": dict(algorithm="trades", sat={"from_epoch": 2}),
    "te": dict(te={"from_epoch": 1, "ramp_until": 2}),
    "te_trades": dict(algorithm="trades", te={"from_epoch": 1, "ramp_until": 2}),
    "liu": dict(adaptive_target={"from_epoch": 1}, reweight={"mode": "nat_prob"}),
    "liu_trades_prob": dict(algorithm="trades", reweight={"mode": "prob"}),
    "mart_dpls_swa": dict(algorithm="mart", targets={"kind": "dpls", "lam": 0.5}, swa={"from_epoch": 2}),
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_each_method_trains_two_epochs(tiny_root, name):
    tr = Trainer(small_cfg(**METHODS[name]), data_root=tiny_root)
    w0 = {k: v.clone() for k, v in tr.model.state_dict().items()}
    rows = [tr.run_epoch(), tr.run_epoch()]
    assert all(np.isfinite(r["train_loss"]) for r in rows)
    assert any(not torch.equal(w0[k], v) for k, v in tr.model.state_dict().items())
    fin = tr.final_evaluation()
    assert 0.0 <= fin["clean_acc"] <= 1.0


def test_kd_needs_its_teachers_and_matches_ce_with_zero_weight(tiny_root):
    cfg = small_cfg(kd={"teachers": {"std": 0.1, "robust": 0.6}})
    with pytest.raises(KeyError, match=r"teachers \['robust', 'std'\]"):
        Trainer(cfg, data_root=tiny_root)
    base = Trainer(small_cfg(), data_root=tiny_root)
    teachers = {"std": base.model, "robust": base.model}
    tr = Trainer(cfg, data_root=tiny_root, teachers=teachers)
    row = tr.run_epoch()
    assert np.isfinite(row["train_loss"])
    # weight 0 on a teacher: exactly plain PGD-AT
    plain = Trainer(small_cfg(), data_root=tiny_root)
    zero = Trainer(small_cfg(kd={"teachers": {"t": 0.0}}), data_root=tiny_root, teachers={"t": base.model})
    assert strip(plain.run_epoch()) == strip(zero.run_epoch())


def test_kd_outer_loss_by_hand(tiny_root):
    teacher = Trainer(small_cfg(), data_root=tiny_root).model
    tr = Trainer(small_cfg(kd={"teachers": {"t": 0.6}, "temperature": 2.0}), data_root=tiny_root,
                 teachers={"t": teacher})
    ds = tr.base_train
    x, y = ds.images[:8].float() / 255, ds.labels[:8]
    b = M.Batch(x=x, y=y, index=ds.index[:8], epoch=1, targets=y, weights=None, x_adv=x.clone())
    loss, _ = tr.outer_loss(tr.model, b)
    with torch.no_grad():
        zs, zt = tr.model(x).double(), teacher.eval()(x).double()
    p, q = (zt / 2).softmax(1), (zs / 2).softmax(1)
    kd = 4 * (p * (p.log() - q.log())).sum(1)
    ce = -zs.log_softmax(1)[torch.arange(8), y]
    assert float(loss.detach()) == pytest.approx(float((0.4 * ce + 0.6 * kd).mean()), rel=1e-5)


def test_swa_average_is_the_mean_of_the_epoch_weights(tiny_root):
    tr = Trainer(small_cfg(epochs=3, swa={"from_epoch": 2}), data_root=tiny_root)
    saved = []
    for e in range(1, 4):
        tr.run_epoch()
        if e >= 2:
            saved.append({k: v.detach().clone() for k, v in tr.model.named_parameters()})
    avg = dict(tr.swa.averaged.module.named_parameters())
    for k in saved[0]:
        want = torch.stack([s[k].double() for s in saved]).mean(0)
        assert torch.allclose(avg[k].double(), want, atol=1e-6), k
    assert int(tr.swa.averaged.n_averaged) == 2
    # evaluations use the average; the best state and the exported model are the average's
    assert tr.eval_model() is tr.swa.averaged.module
    exported = tr.exported_model_state()
    assert all(torch.equal(exported[k], v.cpu()) for k, v in tr.swa.averaged.module.state_dict().items())


@pytest.mark.parametrize("name, over", [
    ("sat", dict(sat={"from_epoch": 1})),
    ("te", dict(te={"from_epoch": 1, "ramp_until": 3})),
    ("swa", dict(swa={"from_epoch": 1})),
    ("awp", dict(awp={"from_epoch": 1}, adaptive_target={"from_epoch": 2})),
])
def test_resume_is_bit_exact(tiny_root, name, over):
    cfg = small_cfg(epochs=3, **over)
    a = Trainer(cfg, data_root=tiny_root)
    rows_a = [strip(a.run_epoch()) for _ in range(3)]
    b = Trainer(cfg, data_root=tiny_root)
    rows_b = [strip(b.run_epoch())]
    buf = io.BytesIO()
    torch.save(b.state_dict(), buf)
    buf.seek(0)
    c = Trainer(cfg, data_root=tiny_root)
    c.load_state_dict(load_store_file(buf))
    rows_b += [strip(c.run_epoch()) for _ in range(2)]
    assert rows_a == rows_b
    sa, sc = a.state_dict(), c.state_dict()
    assert all(torch.equal(sa["model"][k], sc["model"][k]) for k in sa["model"])
    if name in sa.get("methods", {}) and sa["methods"][name]:
        for k, v in sa["methods"][name].items():
            assert (torch.equal(v, sc["methods"][name][k]) if isinstance(v, torch.Tensor)
                    else v == sc["methods"][name][k]), k
    assert a.final_evaluation() == c.final_evaluation()


# ------------------------------------------------------------------- config errors


@pytest.mark.parametrize("over, match", [
    (dict(swa={"from_epoch": 5}), "swa.from_epoch=5 is beyond epochs=2"),
    (dict(sat={"from_epoch": 3}), "sat.from_epoch=3 is beyond epochs=2"),
    (dict(te={"from_epoch": 2, "ramp_until": 2}), "te.ramp_until=2 must be after te.from_epoch=2"),
    (dict(te={"from_epoch": 1, "ramp_until": 9}), "te.ramp_until=9 is beyond epochs=2"),
    (dict(awp={"gamma": -1}), "greater than 0"),
    (dict(algorithm="std", awp={}), "awp is implemented for algorithm pgd / trades, not 'std'"),
    (dict(algorithm="trades", kd={"teachers": {"a": 0.5}}), "kd is implemented for algorithm pgd"),
    (dict(kd={"teachers": {"a": 0.7, "b": 0.6}}), "sum to at most 1"),
    (dict(kd={"teachers": {}}), "kd.teachers is empty"),
    (dict(sat={"from_epoch": 1}, targets={"kind": "ls", "lam": 0.9}), "cannot be combined with targets.kind='ls'"),
    (dict(sat={"from_epoch": 1}, adaptive_target={}), "sat and adaptive_target both replace the targets"),
    (dict(reweight={"mode": "bogus"}), "reweight.mode"),
    (dict(swa={"start": 1}), "swa"),
])
def test_method_config_errors(over, match):
    with pytest.raises(ValidationError, match=match):
        small_cfg(**over)


def test_defaults_keep_spec_hashes():
    from hardex.runs.spec import RunSpec
    plain = RunSpec(train=small_cfg())
    assert "awp" not in plain.identity()["train"] and "swa" not in plain.identity()["train"]
    assert RunSpec(train=small_cfg(swa={"from_epoch": 1})).hash != plain.hash


# ------------------------------------------------------------------- teachers through the store


def kd_train(kd, **kw):
    from hardex.config import TrainConfig
    from test_store import real_spec

    return TrainConfig.model_validate({**real_spec().train.model_dump(), "kd": kd, **kw})


def test_teachers_spec_hash_and_validation():
    from hardex.runs.spec import RunSpec, SpecError
    from test_store import real_spec

    std, rob = real_spec(algorithm="std"), real_spec(swa={"from_epoch": 2})
    kd = {"teachers": {"std": 0.1, "robust": 0.6}}
    with pytest.raises(SpecError, match=r"train.kd names teachers \['robust'\]"):
        RunSpec.from_dict({"train": {**real_spec().train.model_dump(), "kd": kd},
                           "teachers": {"std": {"run": std.model_dump()}}})
    with pytest.raises(ValidationError, match="which teachers does not define"):
        real_spec(kd=kd)  # a KD config without teachers
    train = kd_train(kd)
    mk = lambda which: RunSpec(train=train, teachers={"std": {"run": std}, "robust": {"run": rob, "which": which}})
    s_best, s_final = mk("best"), mk("final")
    assert s_best.hash != s_final.hash
    assert s_best.identity()["teachers"]["robust"] == {"run": rob.hash, "which": "best"}
    assert RunSpec.from_yaml(s_best.to_yaml()).hash == s_best.hash
    with pytest.raises(SpecError, match=r"teachers \['extra'\] are not used"):
        RunSpec.from_dict({"train": real_spec().train.model_dump(), "teachers": {"extra": {"run": std.model_dump()}}})


def test_ensure_trains_teachers_first_and_passes_their_models(tmp_path, tiny_cifar):
    from hardex.runs.spec import RunSpec
    from hardex.runs.plan import ensure
    from hardex.runs.training import load_teachers
    from test_store import real_spec, store_at

    std, rob = real_spec(algorithm="std"), real_spec(swa={"from_epoch": 2})
    kd = RunSpec(train=kd_train({"teachers": {"std": 0.1, "robust": 0.6}}, seed=3),
                 teachers={"std": {"run": std, "which": "best"}, "robust": {"run": rob}})
    store = store_at(tmp_path / "runs")
    (rec,) = ensure([kd], store, progress=False)
    assert rec.done and store.open(std) is not None and store.open(rob) is not None
    models = load_teachers(store, kd)
    from hardex.runs.files import load_checked
    best = load_checked(store.open(std).path / "best.pt")["model"]
    assert all(torch.equal(models["std"].state_dict()[k], v) for k, v in best.items())
    # "final" of an SWA run is the average (with its refreshed BN), not the last weights
    payload = load_checked(store.ckpt_path(rob, 3))
    swa = payload["trainer"]["methods"]["swa"]
    got = models["robust"].state_dict()
    assert all(torch.equal(got[k], swa["module." + k]) for k in got)
    assert not all(torch.equal(got[k], payload["trainer"]["model"][k]) for k in got)
    # the SWA run's final evaluation is of the average
    assert store.open(rob).final["final"]["epoch"] == 3
