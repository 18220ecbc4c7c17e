"""The fast profile's chapter code, run end to end on tiny data.

CI executes the book on the smoke profile only, and the chapters branch on the profile
(Fig. 10, the eps sweeps, every row of the comparison tables, standard AutoAttack, ...), so
without this test the fast and paper branches would first run on a GPU, hours into a build.
`tests/fast_structure.yaml` keeps every key and every list of `params/fast/` and shrinks only
sizes (tiny CNN, 60 images, 5 epochs, 1-2 attack steps, CPU); the book is executed with
profile "fast" into a temporary folder whose numbers nobody reads.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from structure import check_structure, profile_chapters, stand_in

from hardex.book import build as book
from hardex.paths import data_root

STAND_IN = Path(__file__).with_name("fast_structure.yaml")


def test_overrides_keep_the_fast_structure(tmp_path):
    root = stand_in(STAND_IN, "fast", tmp_path / "project")
    chapters = profile_chapters("fast")
    assert len(chapters) == 7
    assert check_structure("fast", root, chapters) == []


@pytest.mark.slow
@pytest.mark.data
def test_fast_profile_chapters_run_on_tiny_data(tmp_path, capsys, chapter_times):
    if not (data_root() / "cifar10" / "train").is_dir():
        pytest.skip("needs $HARDEX_DATA/cifar10 (offline CIFAR-10 copy)")
    root = stand_in(STAND_IN, "fast", tmp_path / "project")
    out = tmp_path / "executed"
    chapters = [*profile_chapters("fast"), "reproduction"]
    status = book.build("fast", chapters, html=False, out=out, root=root, progress=False, runs=tmp_path / "runs")
    printed = capsys.readouterr().out
    chapter_times += [("fast-structure", line) for line in printed.splitlines() if " done in " in line]
    assert status == 0, printed
    for name in chapters:
        assert (out / f"{name}.ipynb").exists(), name
    assert {p.stem for p in (out / "ledger").glob("*.json")} >= set(profile_chapters("fast"))
