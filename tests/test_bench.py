"""`hardex bench`: arithmetic against hand computation, FLOP counting, and a CPU --quick
run end to end (< 60 s) that writes a JSON report with every documented field."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch

from hardex import models

from hardex.tools import bench


def _get(d, dotted):
    for part in dotted.split("."):
        assert isinstance(d, dict) and part in d, f"missing {dotted!r} (at {part!r})"
        d = d[part]
    return d


def test_throughput_by_hand():
    # 10 steps of 128 images in 2 s: 640 img/s, 50,000 / 640 = 78.125 s per epoch
    assert bench.throughput(2.0, 10, 128) == {"images_per_s": 640.0, "s_per_epoch": 78.125}
    assert bench.throughput(1.0, 1, 100, epoch_images=1000)["s_per_epoch"] == 10.0
    with pytest.raises(ValueError, match="seconds > 0"):
        bench.throughput(0.0, 10, 128)


def test_forward_equivalents_match_the_issue():
    # issue 9: a PGD-10 epoch is ~23 forward-equivalents per image
    assert bench.forward_equivalents("pgd", 10, tracking=False) == 23
    assert bench.forward_equivalents("pgd", 10, tracking=True) == 24
    assert bench.forward_equivalents("trades", 10, tracking=False) == 27
    assert bench.forward_equivalents("trades", 10, tracking=True) == 27  # tracked from its attack
    with pytest.raises(ValueError, match="allowed: pgd, trades"):
        bench.forward_equivalents("fgsm", 1, tracking=False)
    # ... which is 1.28 PFLOP per 50k-image epoch for PreActResNet-18 (1.11 GFLOP forward)
    fwd = models.forward_flops(models.build_model("preact_resnet18"))
    assert abs(fwd * 23 * 50_000 / 1e15 - 1.28) < 0.01


def test_count_flops_by_hand():
    lin = torch.nn.Linear(64, 32, bias=False)
    x = torch.randn(8, 64, requires_grad=True)
    fwd = 2 * 8 * 64 * 32
    assert bench.count_flops(lambda: lin(x)) == fwd
    # full backward: input and weight gradients, 2 x forward
    assert bench.count_flops(lambda: lin(x).sum().backward()) == 3 * fwd
    # input-only gradient (what hardex's attacks take): 1 x forward
    assert bench.count_flops(lambda: torch.autograd.grad(lin(x).sum(), [x])) == 2 * fwd
    # operators, views not counted: mm; then mm, sum, ones_like (the seed gradient), mm
    assert bench.count_work(lambda: lin(x)) == {"flops": fwd, "ops": 1}
    assert bench.count_work(lambda: torch.autograd.grad(lin(x).sum(), [x]))["ops"] == 4
    assert bench.count_work(lambda: x.detach().sign())["ops"] == 1


def test_reference_pgd_takes_parameter_gradients():
    """The reference-style attack really does a full backward (the cost it is there to show)."""
    m = models.build_model("tiny_cnn")
    opt = torch.optim.SGD(m.parameters(), lr=0.0)
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    flops = bench.count_flops(lambda: bench.reference_pgd_at_step(m, opt, x, y, 8 / 255, 2 / 255, 2,
                                                                  {"loss": 0.0, "acc": 0.0}))
    fwd = models.forward_flops(m) * 4
    # 2 x (forward + full backward = 3) + bookkeeping forward (1) + forward + full backward (3)
    # = 10, less the first conv's input gradient in the training step (not needed)
    assert 9.5 * fwd < flops <= 10 * fwd
    # hardex's input-only attack: 2 x (forward + input backward) = 4 forward-equivalents
    from hardex import attacks

    pgd_flops = bench.count_flops(lambda: attacks.pgd(m, x, y, 8 / 255, 2 / 255, 2))
    assert pgd_flops == pytest.approx(4 * fwd, rel=0.01)


def test_unknown_algorithm_is_one_error_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "hardex.cli", "bench", "--quick", "--device", "cpu",
                           "--algorithms", "fgsm", "--out", str(tmp_path / "x.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "unknown algorithm(s) ['fgsm']; allowed: pgd, trades" in proc.stderr
    assert not (tmp_path / "x.json").exists()


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "tmp.json"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "hardex.cli", "bench", "--quick", "--device", "cpu",
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), elapsed, proc.stdout


def test_quick_bench_runs_and_prints_its_table(quick_report):
    # no time limit here: speed belongs in the bench report, not in a timed test (CI runs
    # this beside the nbval book on 2 cores); the time is printed for people to see
    _, elapsed, stdout = quick_report
    print(f"hardex bench --quick took {elapsed:.0f} s")
    assert "speedup" in stdout and "wrote" in stdout


def test_quick_report_has_every_documented_field(quick_report):
    rep, _, _ = quick_report
    for key in bench.REPORT_FIELDS:
        _get(rep, key)
    assert rep["environment"]["device"] == "cpu" and rep["synthetic_data"] is True
    assert rep["environment"]["torch"] == torch.__version__
    assert rep["settings"]["quick"] is True and rep["settings"]["models"] == ["tiny_cnn"]
    assert "CPU" in rep["label"]
    assert len(rep["results"]) == 2 and len(rep["eval"]) == 1
    for r in rep["results"]:
        for key in bench.RESULT_FIELDS:
            _get(r, key)
        assert _get(r, "hardex.no_tracking.epochs_timed") == 1
    for e in rep["eval"]:
        for key in bench.EVAL_FIELDS:
            _get(e, key)
    assert rep["checks"]["pgd_host_syncs"] == 0
    assert rep["paper_timings"]["wrn28_10/pgd"]["s_per_epoch"] == pytest.approx(47 * 3600 / 200)


def test_quick_report_arithmetic(quick_report):
    rep, _, _ = quick_report
    s = rep["settings"]
    peak = rep["peak"]["tflops"]
    for r in rep["results"]:
        entries = [r["reference"], r["hardex"]["tracking"], r["hardex"]["no_tracking"]]
        for e in entries:
            ips = s["steps"] * s["batch_size"] / e["seconds"]
            assert e["images_per_s"] == pytest.approx(ips)
            assert e["s_per_epoch"] == pytest.approx(50_000 / ips)
            assert e["seconds"] == pytest.approx(sorted(e["repeat_seconds"])[len(e["repeat_seconds"]) // 2])
            assert e["tflops"] == pytest.approx(e["flops_per_image"] * ips / 1e12)
            assert e["peak_fraction"] == pytest.approx(e["tflops"] / peak)
        ref, on, off = entries
        assert r["speedup"] == pytest.approx(on["images_per_s"] / ref["images_per_s"])
        assert r["speedup_no_tracking"] == pytest.approx(off["images_per_s"] / ref["images_per_s"])
        assert r["tracking_overhead"] == pytest.approx(on["seconds"] / off["seconds"] - 1)
        # counted FLOPs agree with the model-FLOPs estimate: tracking adds one forward to
        # PGD-AT and none to TRADES (its attack's clean forward is the tracking forward),
        # input-only attack gradients keep hardex near 2k + 3 forward-equivalents
        mf = r["model_flops"]
        fwd = mf["forward_flops_per_image"]
        extra = fwd if r["algorithm"] == "pgd" else 0.0
        assert on["flops_per_image"] - off["flops_per_image"] == pytest.approx(extra, rel=1e-6, abs=1e-6)
        assert on["flops_per_image"] == pytest.approx(fwd * mf["forward_equivalents"], rel=0.02)
        assert ref["flops_per_image"] > on["flops_per_image"]  # the reference does more work
        assert mf["epoch_pflop"] == pytest.approx(fwd * mf["forward_equivalents"] * 50_000 / 1e15)


def test_latest_reports_reads_committed_ones(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"created": "2026-01-01T00:00:00+00:00", "label": "old"}))
    (tmp_path / "b.json").write_text(json.dumps({"created": "2026-02-01T00:00:00+00:00", "label": "new"}))
    assert [r["label"] for r in bench.latest_reports(tmp_path)] == ["new", "old"]
