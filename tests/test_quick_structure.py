"""The CPU rehearsal's stand-in of the quick profile keeps its structure.

`hardex gpu-check --device cpu --stand-in tests/quick_structure.yaml` (``make gpu-check
DEVICE=cpu``, run in CI) executes the quick profile's chapters, the export and the
render-only book on tiny data. That proves the GPU run's code only if the stand-in keeps
every key, list length, string and flag of ``params/quick`` and changes only sizes.
"""

from __future__ import annotations

from pathlib import Path

from structure import check_structure, profile_chapters

from hardex import experiments
from hardex.experiments import dpls, hard_examples
from hardex.experiments.params import load, not_run_reason
from hardex.paths import repo_root
from hardex.tools import gpucheck

STAND_IN = Path(__file__).with_name("quick_structure.yaml")


def test_stand_in_keeps_the_quick_structure(tmp_path):
    root = gpucheck.stand_in_project(STAND_IN, tmp_path / "project")
    assert set(profile_chapters("quick")) == set(gpucheck.QUICK_CHAPTERS)
    assert check_structure("quick", root, list(gpucheck.QUICK_CHAPTERS)) == []
    # the chapters the quick profile does not run stay so in the copy
    assert [c for c in experiments.TRAINING if not_run_reason("quick", c, root)] == \
        [c for c in experiments.TRAINING if c not in gpucheck.QUICK_CHAPTERS]


def test_quick_params_share_one_prefix():
    """The quick profile's economy: the dpls chapter's Table 3 prefix is the hard_examples chapter's
    Table 1 baseline and eps-8 probe run, Table 1's hard-pruning row is Table 3's pruning run,
    and Table 1's PGD-20 evaluation is Table 3's: the two experiments ask for the same runs."""
    d = load(dpls.Params, "quick", "dpls", repo_root())
    h = load(hard_examples.Params, "quick", "hard_examples", repo_root())
    t3, t1 = dpls.runs(d), hard_examples.runs(h)
    b = d.baseline
    assert t3.specs[("t3", "pgd", b.eps, "", b.seed)].hash == t1.specs[("table1", "none")].hash \
        == t1.specs[("figs34", b.eps)].hash
    assert t3.specs[("t3", "pgd", b.eps, "pruning", b.seed)].hash == t1.specs[("table1", "hard_pruning")].hash
    in_t3 = {s.hash for s in t3.specs.values()}
    shared = {(r.spec.hash, r.attacks, r.n) for r in t1.evaluations if r.spec.hash in in_t3}
    assert len(shared) == 2 and shared <= {(r.spec.hash, r.attacks, r.n) for r in t3.evaluations}
