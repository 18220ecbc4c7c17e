"""The fast profile's chapter code, run end to end on tiny data.

CI executes the book on the smoke profile only, and the chapters branch on the profile
(Fig. 10, the eps sweeps, every row of the comparison tables, standard AutoAttack, ...), so
without this test the fast and paper branches would first run on a GPU, hours into a build.
`tests/fast_structure.yaml` keeps every key and every list of `params/fast/<chapter>.yaml`
and shrinks only sizes (tiny CNN, 100 images, 5 epochs, 1-3 attack steps, CPU); the book is executed with
profile "fast" into a temporary folder whose numbers nobody reads.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from hardex.book import sources
from hardex.book import build as book
from hardex.paths import data_root, repo_root

OVERRIDES = Path(__file__).with_name("fast_structure.yaml")
# sizes that may change; any other key must keep the fast profile's value or list length
SIZE_KEYS = {"device", "model", "fig1_model", "train_subset"}


def fast_structure_params() -> dict[str, dict[str, Any]]:
    """{chapter: fast params with the overrides applied} for the chapters the file lists."""
    spec = yaml.safe_load(OVERRIDES.read_text())
    common = spec.pop("_all")
    out = {}
    for chapter, over in spec.items():
        fast = yaml.safe_load((repo_root() / "params" / "fast" / f"{chapter}.yaml").read_text())
        unknown = sorted(set(over) - set(fast))
        if unknown:
            raise KeyError(f"{OVERRIDES.name}: {chapter}: keys not in params/fast/{chapter}.yaml: {unknown}")
        out[chapter] = {**fast, **{k: v for k, v in common.items() if k in fast}, **over}
    return out


def test_overrides_keep_the_fast_structure():
    fast_chapters = {c.name for c in sources.toc_chapters()}
    params = fast_structure_params()
    assert {"hard_examples", "memorization", "label_smoothing", "dpls", "ablations", "comparisons",
            "evaluation"} <= set(params) <= fast_chapters
    for chapter, p in params.items():
        fast = yaml.safe_load((repo_root() / "params" / "fast" / f"{chapter}.yaml").read_text())
        assert set(p) == set(fast), chapter
        for k, v in fast.items():
            if isinstance(v, list):  # same number of eps values, ratios, T values, steps, ...
                assert isinstance(p[k], list) and len(p[k]) == len(v), (chapter, k)
            elif isinstance(v, (str, bool)) and k not in SIZE_KEYS:
                assert p[k] == v, (chapter, k)  # algorithms, attack versions, flags: unchanged
        assert p["device"] == "cpu" and p["model"] == "tiny_cnn", chapter


@pytest.mark.slow
@pytest.mark.data
def test_fast_profile_chapters_run_on_tiny_data(tmp_path, monkeypatch, capsys, chapter_times):
    if not (data_root() / "cifar10" / "train").is_dir():
        pytest.skip("needs $HARDEX_DATA/cifar10 (offline CIFAR-10 copy)")
    root = repo_root()
    proj = tmp_path / "project"
    (proj / "params" / "fast").mkdir(parents=True)
    shutil.copy(root / "_toc.yml", proj / "_toc.yml")
    shutil.copytree(root / "book", proj / "book")
    params = fast_structure_params()
    for chapter in sources.toc_chapters(root):
        src = root / "params" / "fast" / f"{chapter.name}.yaml"
        text = yaml.safe_dump(params[chapter.name]) if chapter.name in params else src.read_text()
        (proj / "params" / "fast" / f"{chapter.name}.yaml").write_text(text)
    out = tmp_path / "executed"
    monkeypatch.setenv("HARDEX_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("HARDEX_LEDGER_DIR", str(out / "ledger"))  # restored afterwards (build sets it)
    monkeypatch.setenv("PATH", os.environ["PATH"])  # restored afterwards (build prepends to it)
    chapters = [c.name for c in sources.toc_chapters(root) if c.name in params] + ["reproduction"]
    status = book.build("fast", chapters, html=False, out=out, root=proj, progress=False)
    printed = capsys.readouterr().out
    chapter_times += [("fast-structure", line) for line in printed.splitlines() if " done in " in line]
    assert status == 0, printed
    for name in chapters:
        assert (out / f"{name}.ipynb").exists(), name
    assert {p.stem for p in (out / "ledger").glob("*.json")} >= set(params)
