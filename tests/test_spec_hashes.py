"""Every spec hash of every profile stays what it was (tests/spec_hashes.json): the experiments
ask for exactly the runs the chapters asked for before, in every round, so existing run stores
and the committed results/ stay valid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fake_records import fake_record
from hardex import experiments
from hardex.experiments import params
from hardex.experiments.rounds import rounds
from hardex.runs.plan import plan
from hardex.runs.store import RunStore

EXPECTED = json.loads((Path(__file__).parent / "spec_hashes.json").read_text())
CASES = [(p, ch) for p, chapters in EXPECTED.items() if not p.startswith("_") for ch in chapters]


def asked_for(profile: str, chapter: str, store_root: Path) -> list[str]:
    """Every run the chapter's experiment asks for, all rounds, its needs included, with fake
    records standing in for finished runs."""
    mod = experiments.module(chapter)
    p = params.load(mod.Params, profile, chapter)
    store = RunStore(store_root, extra_roots=())
    asked: set[str] = set()

    def fake_ensure(specs):
        for level in plan(store, specs):
            for job in level:
                asked.add(job.spec.hash)
                fake_record(store.root, job.spec)
        asked.update(s.hash for s in specs)
        return [store.open(s) for s in specs]

    rounds(lambda recs: mod.runs(p, recs, workdir=store.root), fake_ensure)
    return sorted(asked)


@pytest.mark.parametrize("profile,chapter", CASES)
def test_every_spec_hash_is_unchanged(profile, chapter, tmp_path):
    got = asked_for(profile, chapter, tmp_path)
    want = EXPECTED[profile][chapter]
    assert got == want, (f"{profile}/{chapter}: {len(set(got) - set(want))} new runs, "
                         f"{len(set(want) - set(got))} runs no longer asked for")


def test_the_list_covers_every_training_chapter_of_every_profile():
    for profile in params.PROFILES:
        run = [c for c in experiments.TRAINING if params.not_run_reason(profile, c) is None]
        assert sorted(EXPECTED[profile]) == sorted(run), profile
