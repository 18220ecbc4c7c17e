"""`hardex eval` for any model (issue 24): state dicts with --arch, TorchScript, RobustBench's
model folder offline, eps sweeps, intervals, --compare, the direct-AutoAttack check, one-line
errors, and files whose pickle would run code refused with nothing run. Tiny models and a
handful of synthetic images: the long third-party evaluation is a committed record
(results/eval/), not a test."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hardex import models
from hardex.cli import main
from hardex.evaluation import anymodel
from hardex.evaluation.suite import evaluate_model
from hardex.paper import stats
from hardex.safeload import UnsafeFileError, load_tensors
from test_store import tiny_cifar  # noqa: F401 (fixture: 20 synthetic test images, HARDEX_DATA set)

QUICK = ["--attacks", "pgd2,fgsm", "--n", "8", "--no-masking", "--runs", "unused-runs"]


def _tiny(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return models.build_model("tiny_cnn", 10, 32).eval()


class _Marker:
    """A pickle that would create a marker file when loaded with weights_only=False."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1, err
    return errors[0]


def test_parse_eps_fractions_lists_and_errors() -> None:
    assert anymodel.parse_eps("8/255") == [8 / 255]
    assert anymodel.parse_eps("0.5/255, 1/255,2/255") == [0.5 / 255, 1 / 255, 2 / 255]
    assert anymodel.parse_eps(0.03) == [0.03]
    for bad, msg in (("2", r"eps must lie in \[0, 1\].*got 2"), ("-1/255", r"eps must lie in \[0, 1\]"),
                     ("abc", "eps 'abc' is not a number or a fraction"), ("1/0", "not a number"),
                     ("", "no eps given"), ("1/255,1/255", "eps listed twice")):
        with pytest.raises(ValueError, match=msg):
            anymodel.parse_eps(bad)


def test_state_dict_cli_sweep_intervals_and_json(tmp_path, tiny_cifar, capsys) -> None:  # noqa: F811
    model = _tiny(0)
    f = tmp_path / "weights.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 3}, f)
    out = tmp_path / "report.json"
    assert main(["eval", str(f), "--arch", "tiny_cnn", "--strip-prefix", "module.", "--eps", "2/255,8/255",
                 "--out", str(out), *QUICK]) == 0
    text = capsys.readouterr().out
    assert text.count("95% CI (exact)") == 2 and "CIFAR-10 (image-folder copy)" in text
    rep = anymodel.read_report(out)
    assert rep["complete"] and rep["eps"] == [2 / 255, 8 / 255] and rep["models"][0]["state_key"] == "state_dict"
    assert rep["provenance"]["command"].startswith("hardex eval ") and rep["provenance"]["cpu_model"]
    (r2, r8), (i2, i8) = rep["results"]["weights.pt"], rep["intervals"]["weights.pt"]
    # the same 8 examples at both eps; per-example worst case = AND of clean and every attack
    assert r2["per_example"]["index"] == r8["per_example"]["index"] and r2["n"] == 8
    for res, iv in ((r2, i2), (r8, i8)):
        pe = {k: stats.as_outcomes(v) for k, v in res["per_example"].items() if k not in ("index", "labels")}
        assert np.array_equal(pe["worst_case"], pe["clean"] & pe["pgd2"] & pe["fgsm"])
        for key in ("clean", "pgd2", "fgsm", "worst_case"):
            k = int(pe[key].sum())
            assert iv[key]["k"] == k and iv[key]["lo"] <= 100 * k / 8 <= iv[key]["hi"]
        assert res["cost"]["pgd2"]["forward"] == 2 * 8 and res["cost"]["pgd2"]["backward"] == 2 * 8
    # evaluate_model directly on the same examples gives the same outcomes
    from hardex import data
    from hardex.evaluation.suite import subset_test_split

    sub = subset_test_split(data.load_dataset("cifar10", "test"), 8, 0)
    direct = evaluate_model(model, sub, ["pgd2", "fgsm"], 8 / 255, masking=False)
    assert direct["per_example"] == r8["per_example"]
    assert len(anymodel.report_frames(rep)["accuracy"]) == 2 * 4


def test_torchscript_file_equals_its_state_dict(tmp_path, tiny_cifar, capsys) -> None:  # noqa: F811
    model = _tiny(1)
    torch.jit.save(torch.jit.trace(model, torch.rand(2, 3, 32, 32)), tmp_path / "model.ts")
    torch.save(model.state_dict(), tmp_path / "model.pt")
    reports = []
    for f, extra in (("model.ts", []), ("model.pt", ["--arch", "tiny_cnn"])):
        assert main(["eval", str(tmp_path / f), *extra, "--eps", "4/255", "--json", *QUICK]) == 0
        reports.append(json.loads(capsys.readouterr().out))
    assert reports[0]["models"][0]["kind"] == "torchscript" and reports[1]["models"][0]["kind"] == "state_dict"
    a, b = (r["results"][lab][0]["per_example"] for r, lab in zip(reports, ("model.ts", "model.pt")))
    assert a == b


def test_compare_two_models_on_the_same_examples(tmp_path, tiny_cifar, capsys) -> None:  # noqa: F811
    for s in (0, 1):
        torch.save(_tiny(s).state_dict(), tmp_path / f"m{s}.pt")
    out = tmp_path / "cmp.json"
    assert main(["eval", "--compare", str(tmp_path / "m0.pt"), str(tmp_path / "m1.pt"), "--arch", "tiny_cnn",
                 "--eps", "4/255", "--out", str(out), *QUICK]) == 0
    text = capsys.readouterr().out
    assert "A = m0.pt, B = m1.pt" in text and "McNemar p" in text
    rep = anymodel.read_report(out)
    (cmp,) = rep["comparisons"]
    ra, rb = rep["results"]["m0.pt"][0], rep["results"]["m1.pt"][0]
    assert ra["per_example"]["index"] == rb["per_example"]["index"]
    for row in cmp["rows"]:
        a, b = stats.as_outcomes(ra["per_example"][row["row"]]), stats.as_outcomes(rb["per_example"][row["row"]])
        mc = stats.mcnemar_exact(a, b)
        assert row["effect"] == pytest.approx(100 * (a.mean() - b.mean()))
        assert (row["a_only"], row["b_only"], row["p"]) == (mc["n10"], mc["n01"], pytest.approx(mc["p"]))
        assert row["lo"] <= row["effect"] <= row["hi"]
    # two architectures: --arch once per model
    torch.save(models.build_model("preact_resnet18", 10, 32).state_dict(), tmp_path / "big.pt")
    assert main(["eval", "--compare", str(tmp_path / "m0.pt"), str(tmp_path / "big.pt"), "--arch", "tiny_cnn",
                 "--arch", "preact_resnet18", "--eps", "1/255", "--json", "--attacks", "fgsm", "--n", "2",
                 "--no-masking"]) == 0
    assert len(json.loads(capsys.readouterr().out)["comparisons"]) == 1


def test_bad_input_is_one_line(tmp_path, tiny_cifar, capsys) -> None:  # noqa: F811
    model = _tiny(0)
    f = tmp_path / "w.pt"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, f)
    torch.save(models.build_model("preact_resnet18", 10, 32).state_dict(), tmp_path / "other.pt")
    cases = [
        (["eval", str(f), "--arch", "nonet", "--eps", "1/255"], "unknown model 'nonet'; allowed: preact_resnet18"),
        (["eval", str(f), "--arch", "tiny_cnn", "--eps", "1/255"],
         "does not fit --arch tiny_cnn:.*missing keys.*add --strip-prefix module."),
        (["eval", str(tmp_path / "other.pt"), "--arch", "tiny_cnn", "--eps", "1/255"], "does not fit --arch tiny_cnn"),
        (["eval", str(f), "--arch", "tiny_cnn", "--strip-prefix", "module.", "--eps", "1.5"],
         r"eps must lie in \[0, 1\].*1.5"),
        (["eval", str(f), "--eps", "1/255"], "is a state dict file: give its architecture with --arch"),
        (["eval", str(f), "--arch", "no_such_pkg.mod:make", "--eps", "1/255"], "cannot import 'no_such_pkg.mod'"),
        (["eval", str(f), "--arch", "tiny_cnn", "--strip-prefix", "module."], "give --eps"),
        (["eval", str(f), "--arch", "tiny_cnn", "--strip-prefix", "module.", "--eps", "1/255", "--mean", "0.5,0.5,0.5"],
         "--mean and --std come together"),
        (["eval", str(f), "--arch", "tiny_cnn", "--strip-prefix", "module.", "--eps", "1/255", "--dataset", "mnist"],
         "unknown dataset 'mnist'; allowed: cifar10"),
        (["eval", "--compare", str(f), str(f), str(f)], "give either one MODEL or --compare A B, not both"),
    ]
    for argv, msg in cases:
        assert main([*argv, "--attacks", "fgsm", "--n", "2", "--runs", str(tmp_path / "runs")]) == 2, argv
        line = _one_error_line(capsys)
        assert __import__("re").search(msg, line), (msg, line)
    # inputs outside [0, 1]: refused by evaluate_model, with what is allowed
    with pytest.raises(ValueError, match=r"inputs must lie in \[0, 1\].*got values in \[0, 255\].*Normalize"):
        evaluate_model(model, (torch.full((2, 3, 32, 32), 255.0).index_fill_(0, torch.tensor([0]), 0.0),
                               torch.zeros(2, dtype=torch.long)), ["fgsm"], 1 / 255)


def test_normalize_layer_is_applied(tmp_path, tiny_cifar) -> None:  # noqa: F811
    torch.save(_tiny(0).state_dict(), tmp_path / "w.pt")
    lm = anymodel.load_target(str(tmp_path / "w.pt"), arch="tiny_cnn", mean="0.5,0.4,0.3", std="0.2,0.2,0.25")
    assert isinstance(lm.model, nn.Sequential) and isinstance(lm.model[0], models.Normalize)
    x = torch.rand(2, 3, 32, 32)
    mean, std = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1), torch.tensor([0.2, 0.2, 0.25]).view(1, 3, 1, 1)
    assert torch.allclose(lm.model(x), lm.model[1]((x - mean) / std))


def test_refused_pickles_run_nothing(tmp_path, tiny_cifar, capsys) -> None:  # noqa: F811
    from hardex.runs.files import CorruptCheckpoint, load_checked, save_checked

    marker = tmp_path / "MARKER"
    evil = {"conv.weight": torch.zeros(1), "payload": _Marker(marker)}
    f = tmp_path / "evil.pt"
    torch.save(evil, f)
    # a state dict from elsewhere
    assert main(["eval", str(f), "--arch", "tiny_cnn", "--eps", "1/255", *QUICK]) == 2
    line = _one_error_line(capsys)
    assert "refused to load state dict" in line and str(f) in line and "posix.system" in line and "nothing of it" in line
    # a store checkpoint with a valid checksum sidecar: refused as unsafe, not as corrupt
    ck = tmp_path / "run" / "ckpt" / "epoch-001.pt"
    save_checked(evil, ck)
    with pytest.raises(UnsafeFileError, match=r"refused to load run-store checkpoint .*epoch-001.pt.*posix.system"):
        load_checked(ck)
    with pytest.raises(UnsafeFileError):
        load_tensors(f, trusted=())
    assert not isinstance(UnsafeFileError("x"), CorruptCheckpoint)
    assert not marker.exists()


def test_store_checkpoints_with_numpy_state_still_load(tmp_path) -> None:
    """What Trainer.state_dict() holds today (numpy arrays, numpy's RNG state tuple, numpy
    scalars, a Counter in the scheduler state) loads with weights_only=True and the store's
    allowlist; a plain load without it refuses the numpy reconstruction."""
    from collections import Counter

    from hardex.runs.files import load_checked, save_checked

    rng = np.random.default_rng(0)
    state = {"rng": {"numpy": np.random.get_state(), "torch": torch.get_rng_state()},
             "scheduler": {"milestones": Counter([2, 3])},
             "arrays": [rng.random(3).astype(d) for d in ("f8", "f4", "i8", "i4", "u1", "?", "u4")],
             "best": {"acc": np.float64(0.5), "epoch": np.int64(3)}, "model": {"w": torch.ones(2)}}
    f = tmp_path / "ckpt" / "epoch-001.pt"
    save_checked(state, f)
    back = load_checked(f)
    assert back["rng"]["numpy"][0] == "MT19937" and np.array_equal(back["rng"]["numpy"][1], state["rng"]["numpy"][1])
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(back["arrays"], state["arrays"]))
    assert back["best"]["acc"] == 0.5 and back["scheduler"]["milestones"] == Counter([2, 3])
    with pytest.raises(UnsafeFileError, match="numpy"):
        load_tensors(f)


def test_worker_refuses_a_job_file_it_did_not_get(tmp_path) -> None:
    import hashlib

    from hardex.runs import worker

    marker = tmp_path / "MARKER"
    jobs = tmp_path / "_jobs"
    jobs.mkdir()
    import cloudpickle

    blob = cloudpickle.dumps(_Marker(marker))
    f = jobs / "abcdef012345.pkl"
    f.write_bytes(blob)
    other = hashlib.sha256(b"what the executor wrote").hexdigest()
    assert worker.main([str(f), other]) == 2  # changed since the executor wrote it
    elsewhere = tmp_path / "abcdef012345.pkl"
    elsewhere.write_bytes(blob)
    assert worker.main([str(elsewhere), hashlib.sha256(blob).hexdigest()]) == 2  # not in a store's _jobs/
    assert worker.main([str(f)]) == 2  # no digest
    assert not marker.exists()
    assert worker.read_job_file(f, hashlib.sha256(blob).hexdigest()) == blob


def test_agreement_and_direct_autoattack_on_a_tiny_model(tmp_path, tiny_cifar, capsys) -> None:  # noqa: F811
    torch.save(_tiny(0).state_dict(), tmp_path / "w.pt")
    out = tmp_path / "r.json"
    assert main(["eval", str(tmp_path / "w.pt"), "--arch", "tiny_cnn", "--eps", "2/255", "--n", "6", "--no-masking",
                 "--attacks", "a3,autoattack", "--autoattack-attacks", "apgd-ce", "--direct-autoattack",
                 "--out", str(out), "--runs", str(tmp_path / "runs")]) == 0
    assert "equal on every example" in capsys.readouterr().out
    rep = anymodel.read_report(out)
    (d,) = rep["direct_autoattack"]
    res = rep["results"]["w.pt"][0]
    assert d["equal"] and d["robust"] == res["per_example"]["autoattack"] and d["version"] == "custom"
    (a,) = rep["agreement"]
    ra, rb = stats.as_outcomes(res["per_example"]["a3"]), stats.as_outcomes(res["per_example"]["autoattack"])
    assert (a["only_a_breaks"], a["only_b_breaks"]) == (int((~ra & rb).sum()), int((ra & ~rb).sum()))
    assert a["agreement"] == pytest.approx(float((ra == rb).mean()))
    cost = res["cost"]
    assert a["cost_ratio_passes"] == pytest.approx((cost["a3"]["forward"] + cost["a3"]["backward"])
                                                   / (cost["autoattack"]["forward"] + cost["autoattack"]["backward"]))
    with pytest.raises(ValueError, match="no n_iter / n_restarts overrides"):
        anymodel.evaluate_targets([anymodel.load_target(str(tmp_path / "w.pt"), arch="tiny_cnn")], ["autoattack"],
                                  [1 / 255], n=2, direct_autoattack_check=True, masking=False,
                                  autoattack_options={"n_iter": 5})


def test_the_third_party_model_loads_as_published(tmp_path) -> None:
    """pyautoattack's example ResNet-18 (model_test.pt) loads with weights_only=True into its
    own ResNet18 through --arch package.module:callable, and into hardex's resnet18 (the
    same CIFAR ResNet-18): identical logits."""
    try:
        f, factory = anymodel.autoattack_example_model()
    except FileNotFoundError as err:
        pytest.skip(str(err))
    theirs = anymodel.load_target(str(f), arch=factory).model
    ours = anymodel.load_target(str(f), arch="resnet18").model
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(theirs(x), ours(x), atol=1e-5)


def _robustbench_entry():
    anymodel._alias_autoattack()  # robustbench 1.1.1 imports pyautoattack as `autoattack`
    pytest.importorskip("robustbench")
    from robustbench.model_zoo import model_dicts
    from robustbench.model_zoo.enums import BenchmarkDataset, ThreatModel

    return model_dicts[BenchmarkDataset("cifar10")][ThreatModel("Linf")]


RB_NAME = "Wong2020Fast"  # a PreActResNet-18 entry of RobustBench's CIFAR-10 Linf zoo


def test_robustbench_offline_from_its_model_folder(tmp_path, tiny_cifar, capsys) -> None:  # noqa: F811
    """A state dict placed where RobustBench looks (<model dir>/cifar10/Linf/NAME.pt, random
    weights: no download) is loaded by RobustBench's own loader and evaluated by
    `hardex eval robustbench:NAME`; a missing file is one line naming that path; a file
    whose pickle would run code is refused and nothing runs."""
    zoo = _robustbench_entry()
    model_dir = tmp_path / "models"
    common = ["--model-dir", str(model_dir), "--eps", "1/255", "--runs", str(tmp_path / "runs")]
    assert main(["eval", f"robustbench:{RB_NAME}", *common, "--attacks", "fgsm", "--n", "2"]) == 2
    line = _one_error_line(capsys)
    where = model_dir / "cifar10" / "Linf" / f"{RB_NAME}.pt"
    assert f"no weights at {where}" in line and "downloads nothing" in line
    assert main(["eval", "robustbench:NoSuchModel", *common]) == 2
    assert "no such entry for cifar10 / Linf" in _one_error_line(capsys)
    net = zoo[RB_NAME]["model"]()
    torch.manual_seed(0)
    where.parent.mkdir(parents=True)
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, where)
    out = tmp_path / "rb.json"
    assert main(["eval", f"robustbench:{RB_NAME}", *common, "--attacks", "pgd1", "--n", "3", "--no-masking",
                 "--out", str(out)]) == 0
    rep = anymodel.read_report(out)
    src = rep["models"][0]
    assert src["kind"] == "robustbench" and src["name"] == RB_NAME and src["files"] == [str(where)]
    res = rep["results"][f"robustbench:{RB_NAME}"][0]
    # the model RobustBench loaded is the one we saved: the same predictions
    from hardex import data
    from hardex.evaluation.suite import subset_test_split

    sub = subset_test_split(data.load_dataset("cifar10", "test"), 3, 0)
    with torch.no_grad():
        pred = net.eval()(sub.images.float() / 255).argmax(1)
    assert "".join("1" if b else "0" for b in (pred == sub.labels).tolist()) == res["per_example"]["clean"]
    marker = tmp_path / "MARKER"
    torch.save({"state_dict": net.state_dict(), "x": _Marker(marker)}, where)
    assert main(["eval", f"robustbench:{RB_NAME}", *common, "--attacks", "fgsm", "--n", "2"]) == 2
    assert "refused to load" in _one_error_line(capsys) and not marker.exists()


def test_merge_per_eps_reports_equals_one_sweep_and_the_book_view(tmp_path, tiny_cifar) -> None:  # noqa: F811
    """Reports made one eps at a time (side by side) merge into the report of one sweep;
    the chapter's view of a record shows its table, agreement and direct check."""
    torch.save(_tiny(0).state_dict(), tmp_path / "w.pt")
    lm = anymodel.load_target(str(tmp_path / "w.pt"), arch="tiny_cnn")
    from hardex.evaluation.a3 import default_schedule

    kw = {"n": 4, "masking": False, "autoattack_options": {"version": "custom", "attacks_to_run": ["apgd-ce"]},
          "a3_options": {"schedule": default_schedule()[:3], "min_keep": 4}}
    attacks = ["fgsm", "a3", "autoattack"]
    parts = [anymodel.evaluate_targets([lm], attacks, [e], direct_autoattack_check=True, **kw) for e in (4 / 255, 1 / 255)]
    whole = anymodel.evaluate_targets([lm], attacks, [1 / 255, 4 / 255], direct_autoattack_check=True, **kw)
    merged = anymodel.merge_reports(parts)
    assert merged["eps"] == whole["eps"] and merged["complete"]
    strip = lambda rs: [{k: v for k, v in r.items() if k != "cost"} for r in rs]  # noqa: E731 (seconds differ)
    assert strip(merged["results"]["w.pt"]) == strip(whole["results"]["w.pt"])
    assert merged["intervals"] == whole["intervals"]
    drop = lambda rows: [{k: v for k, v in r.items() if "seconds" not in k and "cost" not in k} for r in rows]  # noqa: E731
    assert drop(merged["agreement"]) == drop(whole["agreement"])
    assert drop(merged["direct_autoattack"]) == drop(whole["direct_autoattack"])
    assert len(merged["provenance"]["parts"]) == 2
    with pytest.raises(ValueError, match="eps .* is in two reports"):
        anymodel.merge_reports([parts[0], parts[0]])
    other = anymodel.evaluate_targets([lm], ["fgsm"], [2 / 255], n=4, masking=False)
    with pytest.raises(ValueError, match="reports differ in .*attacks"):
        anymodel.merge_reports([parts[0], other])
    f = tmp_path / "record.json"
    f.write_text(json.dumps(merged))
    view = anymodel.third_party_view(f)
    assert "n = 4" in view["caption"] and "2 processes, each for the eps it finished" in view["caption"]
    assert len(view["accuracy"]) == 2 * 5 and len(view["agreement"]) == 2 and view["direct"]["equal per example"].all()
    assert "missing" in anymodel.third_party_view(tmp_path / "nothing.json")
