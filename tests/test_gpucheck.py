"""`hardex gpu-check`'s parts that run without a GPU, and the render-only build.

The whole script runs in CI as the CPU rehearsal (``make gpu-check DEVICE=cpu``); these
tests pin down its pieces: render-only records (``NoRecord``), the planner's stand-ins, the
wheel list, the evaluation-cost count, the export/import round trip, the percent-format
reader against jupytext, and the quick profile's plan.
"""

from __future__ import annotations

import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from hardex.book import sources
from hardex.book import build as book

from hardex.book import cells

from hardex.tools import gpucheck

from hardex.tools import wheels
from hardex.paths import repo_root
from hardex.book.context import Context
from hardex.runs import plan as runplan
from hardex.runs.describe import describe
from hardex.runs.errors import NoRecord
from hardex.runs.spec import RunSpec
from hardex.runs.store import RunStore
from test_store import FakeTrainer, child_of, spec


def test_cells_reader_agrees_with_jupytext_on_every_chapter():
    jupytext = pytest.importorskip("jupytext")
    for f in sorted((repo_root() / "book").glob("*.py")):
        a, b = jupytext.read(f), cells.read_notebook(f)
        assert [(c.cell_type, c.source, c.get("metadata", {}).get("tags", [])) for c in a.cells] == \
            [(c.cell_type, c.source, c.metadata.get("tags", [])) for c in b.cells], f.name


def test_cells_reader_on_a_hand_written_file(tmp_path):
    f = tmp_path / "x.py"
    f.write_text('# ---\n# jupyter:\n#   x: 1\n# ---\n\n# %% [markdown]\n# # Title\n#\n# text\n\n'
                 '# %% tags=["parameters"]\na = 1\n\n\n# %%\nprint(a)\n')
    nb = cells.read_notebook(f)
    assert [(c.cell_type, c.source, c.metadata.get("tags")) for c in nb.cells] == [
        ("markdown", "# Title\n\ntext", None), ("code", "a = 1", ["parameters"]), ("code", "print(a)", None)]
    f.write_text("# %% title=1\nx = 1\n")
    with pytest.raises(ValueError, match="only tags"):
        cells.read_notebook(f)


def test_render_only_ensure_returns_records_and_names_the_missing(tmp_path):
    store = RunStore(tmp_path / "runs", extra_roots=())
    parent = spec(epochs=3)
    [rec] = runplan.ensure([parent], store, progress=False, trainer=FakeTrainer)
    child = child_of(parent, 2, 0.9)
    FakeTrainer.constructed = 0
    book = Context(render_only=True, runs=str(tmp_path / "runs"))
    assert runplan.recorded([parent], store)[0].spec.hash == rec.spec.hash
    assert book.ensure([parent])[0].spec.hash == rec.spec.hash
    with pytest.raises(NoRecord, match=r"not run yet \(no record\): 1 of the 2 runs") as err:
        book.ensure([parent, child])
    assert child.short_hash[:12] in str(err.value) and FakeTrainer.constructed == 0


def test_render_only_evaluate_run_reads_its_cache_only(tmp_path):
    from hardex.evaluation import suite as evaluate

    store = RunStore(tmp_path / "runs", extra_roots=())
    [rec] = runplan.ensure([spec(epochs=2)], store, progress=False, trainer=FakeTrainer)
    f = evaluate.cache_file(rec, ("pgd20",), None)
    assert f.stem == evaluate.cache_key(["pgd20"], None, 0, "final", rec.spec.train.attack.eps, {})
    f.parent.mkdir()
    f.write_text(json.dumps({"key": f.stem, "clean_acc": 0.5}))
    book = Context(render_only=True, runs=str(tmp_path / "runs"))
    assert book.evaluate(rec, attacks=("pgd20",), n=None)["cached"] is True
    with pytest.raises(NoRecord, match="no cached evaluation"):
        book.evaluate(rec, attacks=("pgd20",), n=100)


def test_the_planner_knows_every_round_without_running_a_chapter(tmp_path):
    """dpls on the smoke profile: round 1 plans the prefix, pruning and DPLS, with a stand-in for
    the LS run (its factor is the DPLS run's); once round 1 has records, LS is a real job; the
    planner's runs are the experiment's own (the notebook asks for the same)."""
    from fake_records import fake_record

    from hardex.book import planning
    from hardex.experiments import dpls
    from hardex.experiments.params import load

    store = RunStore(tmp_path / "runs", extra_roots=())
    [cp] = planning.plan_chapters(repo_root(), "smoke", ["dpls"], store)
    p = load(dpls.Params, "smoke", "dpls")
    first = dpls.runs(p)
    assert {j.spec.hash for j in cp.jobs} == {s.hash for s in first.specs.values()}
    assert [k[3] for k in cp.later] == ["ls"] and not cp.complete
    for job in cp.jobs:
        fake_record(store.root, job.spec)
    [cp2] = planning.plan_chapters(repo_root(), "smoke", ["dpls"], store)
    # round 2: the LS run (and its parent's branch checkpoint, which a fake record does not have)
    assert cp2.complete and cp2.done == len(cp.jobs)
    assert sorted(describe(j.spec).split()[0][:7] for j in cp2.jobs) == ["pgd", "pgd+ls("]
    assert {e.spec.hash for e in cp2.evaluations} >= {j.spec.hash for j in cp2.jobs}


def test_wheel_pins_slim_and_what_is_missing(tmp_path):
    pins = wheels.pins(repo_root() / "requirements.lock")
    assert [p.split("==")[0] for p in pins] == list(wheels.GPU_WHEELS)
    lock = tmp_path / "lock"
    lock.write_text("pydantic==2.0\n")
    with pytest.raises(ValueError, match="no pin for pydantic-core"):
        wheels.pins(lock)
    w = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(w, "w") as z:
        z.writestr("pkg/__init__.py", "x = 1\n")
        z.writestr("pkg/examples/big.pt", b"\0" * 100000)
        z.writestr("pkg-1.0.dist-info/RECORD", "pkg/__init__.py,,\npkg/examples/big.pt,,\n")
    assert wheels.slim(w, ("pkg/examples/",)) > 0
    with zipfile.ZipFile(w) as z:
        assert z.namelist() == ["pkg/__init__.py", "pkg-1.0.dist-info/RECORD"]
        assert z.read("pkg-1.0.dist-info/RECORD").decode() == "pkg/__init__.py,,\n"
    # top-level modules: a package, a single module, the metadata left out
    m = tmp_path / "yaml_like-1.0-py3-none-any.whl"
    with zipfile.ZipFile(m, "w") as z:
        z.writestr("json/__init__.py", "")  # a module this Python has
        z.writestr("onefile_mod_xyz.py", "")
        z.writestr("yaml_like-1.0.dist-info/METADATA", "")
    assert wheels.top_level(m) == ["json", "onefile_mod_xyz"] and wheels.top_level(w) == ["pkg"]
    assert wheels.missing([m, w]) == [m, w]  # onefile_mod_xyz and pkg are not importable here
    j = tmp_path / "j-1.0-py3-none-any.whl"
    with zipfile.ZipFile(j, "w") as z:
        z.writestr("json/__init__.py", "")
    assert wheels.missing([j]) == []


def test_eval_passes_by_hand():
    s = RunSpec(train={"model": {"name": "tiny_cnn"}, "epochs": 10, "schedule": {"milestones": [8]},
                       "tracking": {"until_epoch": 5}, "dataset": {"subset": {"n": 1000}},
                       "attack": {"steps": 4},
                       "eval": {"subset": 100, "pgd_steps": 3, "final_pgd_steps": [10], "final_subset": 200},
                       "probes": [{"name": "hard", "rule": {"k": 50}, "max_examples": 20},
                                  {"name": "q", "quantiles": {"n_bins": 5}, "metrics": ["clean_acc"]}]})
    per_epoch = 6 * 100 * (3 + 2)  # each trained epoch: clean + PGD-3 (+1: the last step's forward)
    probes = 6 * (20 * (1 + 5)) + 6 * 5 * (1000 / 5) * 1  # hard: clean + PGD-4; quintiles clean only
    final = 2 * 200 * (10 + 2)  # final and best models
    from hardex.experiments.cost import Estimator
    from hardex.experiments.params import Cost

    est = Estimator(Cost(minutes_per_epoch={}, model_scale={}, eval_passes_per_s=0.0, passes_per_example={}),
                    "tiny_cnn", 4)
    assert est.own_eval_passes(s, 6) == pytest.approx(per_epoch + probes + final)


def test_export_import_round_trip(tmp_path):
    """A gpu-check's OUT (records.tar.gz of compact records, bench, summary) into results/."""
    store = RunStore(tmp_path / "runs", extra_roots=())
    recs = runplan.ensure([spec(epochs=3)], store, progress=False, trainer=FakeTrainer)
    out = tmp_path / "out"
    out.mkdir()
    staged = store.export([r.spec.short_hash for r in recs], tmp_path / "stage")
    with tarfile.open(out / "records.tar.gz", "w:gz") as tar:
        for d in staged:
            tar.add(d, arcname=d.name)
    (out / "bench.json").write_text("{}")
    (out / "summary.json").write_text(json.dumps({"environment": {"gpu": "NVIDIA H200", "date": "2026-12-02T10:00"}}))
    root = tmp_path / "proj"
    got = gpucheck.import_out(out, root)
    h = recs[0].spec.short_hash
    assert got == [f"results/{h}", "results/bench/h200-2026-12-02.json", "results/gpu-check/h200-2026-12-02.json"]
    assert not list((root / "results" / h).rglob("*.pt"))
    ro = RunStore(tmp_path / "fresh", extra_roots=[root / "results"])
    FakeTrainer.constructed = 0
    assert runplan.ensure([recs[0].spec], ro, progress=False, trainer=FakeTrainer)[0].final == recs[0].final
    assert FakeTrainer.constructed == 0
    assert gpucheck.import_out(out, root)[0].startswith("results/bench")  # records already there: left as they are


def test_not_run_chapters_and_profiles():
    assert sources.not_run_reason("quick", "memorization") and not sources.not_run_reason("quick", "dpls")
    assert sources.not_run_reason("quick", "theory") is None  # no GPU needed: every profile runs it
    assert sources.not_run_reason("smoke", "memorization") is None
    with pytest.raises(sources.ParamsError, match="not run on profile 'quick'"):
        sources.load_params("quick", "memorization")
    assert "quick" in sources.PROFILES


def test_stand_in_rejects_unknown_keys(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("profile: {baseline: {device: cpu}}\ndpls: {table3: {no_such_key: 1}}\n")
    with pytest.raises(ValueError, match="no key table3.'no_such_key'"):
        gpucheck.stand_in_project(f, tmp_path / "p")


@pytest.mark.slow
def test_quick_plan_shares_one_prefix_and_fits_six_minutes(tmp_path):
    """The quick profile's plan (no training, no chapter executed): dpls plans the prefix,
    pruning, DPLS and (a stand-in for) LS; hard_examples adds only STD and easy pruning (its
    baseline and hard-pruning row are dpls's runs); from the stated per-epoch times it fits ~6
    minutes."""
    check = gpucheck.Check(tmp_path, tmp_path, repo_root(), "cpu", 1e18)
    plan = gpucheck.plan_quick(check, None, gpu=True)
    jobs = {n: [j["what"] for j in ch["jobs"]] for n, ch in plan["chapters"].items()}
    assert len(jobs["dpls"]) == 3 and plan["chapters"]["dpls"]["later"] == 1
    assert len(jobs["hard_examples"]) == 2 and any(j.startswith("std ") for j in jobs["hard_examples"])
    assert plan["epochs"] == 30 + 3 * 10 + 30 + 10
    total_min = (plan["train_s"] + plan["eval_s"]) / 60
    print(f"\nquick plan: {plan['runs']} runs, {plan['epochs']} epochs, est. {total_min:.1f} min")
    assert 3 < total_min <= 6.5
    assert any("not measured" in s for s in plan["train_source"])


def _chapter(path: Path, body: str) -> None:
    path.write_text('# %% [markdown]\n# # Chapter ' + path.stem + '\n\n# %% tags=["parameters"]\nprofile = "smoke"\n'
                    'build = {}\noverrides = {}\n\n# %%\n' + body + "\n")


@pytest.mark.slow
def test_render_only_build_pages(tmp_path, monkeypatch):
    """hardex book --render-only on a three-chapter project: the chapter whose run has a
    record renders it, the one whose run has none gets a "not run yet (no record)" page
    naming the run, and the chapter the profile does not run says so; nothing trains."""
    pytest.importorskip("papermill")  # the book's rendering stack (not on a GPU machine)
    proj = tmp_path / "proj"
    (proj / "book").mkdir(parents=True)
    (proj / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n"
                                   "  - file: _executed/have\n  - file: _executed/missing\n  - file: _executed/skipped\n")
    store = RunStore(tmp_path / "runs", extra_roots=())
    have, missing = spec(epochs=2), spec(epochs=3)
    runplan.ensure([have], store, progress=False, trainer=FakeTrainer)
    for name, s in (("have", have), ("missing", missing)):
        (proj / f"{name}.yaml").write_text(s.to_yaml())
        _chapter(proj / "book" / f"{name}.py", "from hardex.runs import RunSpec\n"
                 "from hardex.book.context import Context\n"
                 f"[rec] = Context.from_dict(build).ensure([RunSpec.from_yaml({str(proj / (name + '.yaml'))!r})])\n"
                 "print('epochs', len(rec.metrics))")
    _chapter(proj / "book" / "skipped.py", "raise RuntimeError('never executed')")
    for prof in ("quick",):
        (proj / "params" / prof).mkdir(parents=True)
        (proj / "params" / prof / "skipped.yaml").write_text("not_run: too long for this profile\n")
    out = tmp_path / "executed"
    assert book.build("quick", html=False, out=out, root=proj, progress=False, render_only=True,
                      runs=tmp_path / "runs") == 0
    text = {n: (out / f"{n}.ipynb").read_text() for n in ("have", "missing", "skipped")}
    assert "epochs 2" in text["have"] and "Not run yet" not in text["have"]
    assert "Not run yet (no record)" in text["missing"] and missing.short_hash[:12] in text["missing"]
    assert "# Chapter missing" in text["missing"]
    assert "Not run on the `quick` profile:** too long for this profile" in text["skipped"]
    assert not (tmp_path / "runs" / missing.short_hash).exists()  # nothing trained
    assert not (out / "missing.failed.ipynb").exists()
    # the appendix and the landing page say "not run on quick" for the skipped chapter's items
    from hardex.book.chapter import landing
    from hardex.paper.ledger import load_ledgers
    from hardex.paper.report import reproduction_tables

    leds = load_ledgers(out / "ledger")
    assert leds["skipped"]["not_run"] == "too long for this profile"
    assert "**: not run on profile `quick`." in landing(leds, "quick", ["have", "missing", "skipped"], root=proj)
    mem = {"skipped": {**leds["skipped"], "chapter": "memorization"}}
    items = reproduction_tables({"memorization": mem["skipped"]}, ["memorization"])["items"]
    assert (items[items["chapter"] == "memorization"]["status"] == "not run on profile quick: too long for this profile").all()
    from hardex.book.chapter import items_markdown

    md = items_markdown(items[items["chapter"] == "memorization"])
    assert "memorization.ipynb)" in md and "memorization.ipynb#" not in md  # its page has no sections to link


def test_actual_line_against_the_records(tmp_path):
    from hardex.book.planning import ChapterPlan, actual_line

    class Timed(FakeTrainer):
        def run_epoch(self) -> dict:
            return {**super().run_epoch(), "seconds": 1.5}

    class Minute:  # an estimator that says one minute per run's training, no evaluation
        def train_seconds(self, spec, n):
            return 60.0

        def eval_seconds(self, spec, n):
            return 0.0

    store = RunStore(tmp_path / "runs", extra_roots=())
    parent = spec(epochs=3)
    child = child_of(parent, 2, 0.9)
    jobs = [j for lv in runplan.plan(store, [child]) for j in lv] + [runplan.Job(spec(epochs=9))]
    runplan.ensure([parent, child], store, progress=False, trainer=Timed)
    line = actual_line([ChapterPlan("x", jobs=jobs, estimator=Minute())], store)
    # parent: 3 epochs x 1.5 s; child: only its own epoch 3 (its record starts with the parent's 1-2)
    assert line.startswith("training: estimated 2.0 min, actual 6 s for the 2 planned runs that finished")
    assert actual_line([ChapterPlan("x", jobs=jobs[2:], estimator=Minute())], store) is None


def test_run_cmd_stops_a_step_cleanly_at_its_deadline(tmp_path):
    """Past its time a step gets SIGTERM (hardex.book.execute turns it into KeyboardInterrupt, as
    Ctrl-C: training keeps its last checkpoint) and may finish cleanly; the check goes on."""
    import sys
    import time

    check = gpucheck.Check(tmp_path, tmp_path, tmp_path, "cpu", 1e18)
    code = ("import signal, sys, time\nfrom hardex.book.execute import _on_term\nsignal.signal(signal.SIGTERM, _on_term)\n"
            "try:\n    print('started', flush=True)\n    time.sleep(60)\n"
            "except KeyboardInterrupt:\n    print('stopped cleanly', flush=True)\n    sys.exit(130)\n")
    t0 = time.time()
    rc, late = gpucheck.run_cmd(check, [sys.executable, "-c", code], tmp_path / "log", timeout=2.0)
    assert (rc, late) == (130, True) and time.time() - t0 < 20
    assert "stopped cleanly" in (tmp_path / "log").read_text()
    rc, late = gpucheck.run_cmd(check, [sys.executable, "-c", "print('quick')"], tmp_path / "log", timeout=30.0)
    assert (rc, late) == (0, False)
