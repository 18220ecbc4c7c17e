"""The CPU rehearsal's stand-in of the quick profile keeps its structure.

`hardex gpu-check --device cpu --stand-in tests/quick_structure.yaml` (``make gpu-check
DEVICE=cpu``, run in CI) executes the quick profile's chapters, the export and the
render-only book on tiny data. That proves the GPU run's code only if the stand-in keeps
every key, list length, string and flag of ``params/quick`` and changes only sizes.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from hardex.book import sources

from hardex.tools import gpucheck
from hardex.paths import repo_root

STAND_IN = Path(__file__).with_name("quick_structure.yaml")
# sizes and the device/precision of a CPU (the GPU fast path is tested by tests/test_cuda.py)
SIZE_KEYS = {"device", "model", "fig1_model", "train_subset", "precision", "channels_last"}
# where 0 switches an item off (a size of 0 elsewhere means "the whole split", which may shrink)
SWITCH_KEYS = {"fig1_n_hard", "fig10_n_hard", "fig9_epochs"}


def test_stand_in_keeps_the_quick_structure(tmp_path):
    root = gpucheck.stand_in_project(STAND_IN, tmp_path / "project")
    chapters = {c.name: c for c in sources.toc_chapters(repo_root())}
    for name in gpucheck.QUICK_CHAPTERS:
        quick = yaml.safe_load((repo_root() / "params" / "quick" / f"{name}.yaml").read_text())
        stand = sources.load_params("quick", chapters[name], root)  # validated against the chapter
        assert set(stand) - {"profile"} == set(quick), name
        for k, v in quick.items():
            if isinstance(v, list):
                assert isinstance(stand[k], list) and len(stand[k]) == len(v), (name, k)
            elif isinstance(v, dict):
                assert isinstance(stand[k], dict) and set(stand[k]) == set(v), (name, k)
            elif isinstance(v, (str, bool)) and k not in SIZE_KEYS:
                assert stand[k] == v, (name, k)
            elif k in SWITCH_KEYS:
                assert (stand[k] == 0) == (v == 0), (name, k)
        assert stand["device"] == "cpu" and stand["model"] == "tiny_cnn", name
    # the chapters the quick profile does not run stay so in the copy
    not_run = [c for c in chapters.values() if sources.not_run_reason("quick", c, root)]
    assert {c.name for c in not_run} == set(chapters) - set(gpucheck.QUICK_CHAPTERS) - {"performance", "reproduction"}


def test_quick_params_share_one_prefix():
    """The quick profile's economy: the dpls chapter's Table 3 prefix is the hard_examples
    chapter's Table 1 baseline and eps-8 probe run, and Table 1's hard-pruning row is Table 3's
    pruning run: the keys that build them agree."""
    q = {n: yaml.safe_load((repo_root() / "params" / "quick" / f"{n}.yaml").read_text()) for n in ("dpls", "hard_examples")}
    d, h = q["dpls"], q["hard_examples"]
    shared = ["seed", "device", "precision", "channels_last", "dataset", "train_subset", "model", "epochs", "milestones",
              "T", "eps", "attack_steps", "lr", "weight_decay", "batch_size", "eval_subset", "eval_pgd_steps",
              "final_pgd_steps", "final_subset"]
    assert {k: d[k] for k in shared} == {k: h[k] for k in shared}
    assert (d["t3_epochs"], d["t3_milestones"], d["t3_T"]) == (h["fig_epochs"], h["fig_milestones"], h["fig_T"]) \
        == (h["epochs"], h["milestones"], h["T"])
    assert (d["t3_eval_subset"], d["t3_final_subset"], d["t3_final_pgd_steps"]) == \
        (h["eval_subset"], h["final_subset"], h["final_pgd_steps"])
    assert (d["t3_probe_k"], d["t3_probe_max"]) == (h["fig_k"], h["probe_max"])
    assert h["t1_fraction"] == d["t3_prune_fraction"] and h["eps"] in h["fig_eps"]
    assert h["t1_eval"] == "pgd20" and d["eval_n_per_attack"].get("pgd20", d["eval_n"]) == h["t1_eval_n"]
