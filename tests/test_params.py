"""A profile's parameters written once: shared blocks in profile.yaml, a chapter's own blocks in
its file, overrides on top; validation names the file and the dotted key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from hardex import experiments
from hardex.experiments import params
from hardex.experiments.params import Baseline, Block, ChapterParams, ParamsError, Schedule, flat, load
from hardex.paths import repo_root


class Table(Block):
    seeds: list[int]
    lam: float
    schedule: Schedule | None = None


class Chapter(ChapterParams):
    baseline: Baseline
    setup200: Schedule
    table: Table


def project(tmp_path: Path, own: str, shared: str | None = None) -> Path:
    src = repo_root() / "params" / "smoke" / "profile.yaml"
    folder = tmp_path / "params" / "smoke"
    folder.mkdir(parents=True)
    (folder / "profile.yaml").write_text(textwrap.dedent(shared) if shared is not None else src.read_text())
    (folder / "ch.yaml").write_text(textwrap.dedent(own))
    return tmp_path


OWN = """\
table:
  seeds: [0, 1]
  lam: 0.5
"""


def test_shared_blocks_then_the_chapters_own_then_overrides(tmp_path):
    root = project(tmp_path, OWN + "baseline: {epochs: 7}\n")
    p = load(Chapter, "smoke", "ch", root)
    smoke = yaml.safe_load((repo_root() / "params" / "smoke" / "profile.yaml").read_text())
    assert p.baseline.epochs == 7  # the chapter's file departs from the shared baseline in one key
    assert p.baseline.model == smoke["baseline"]["model"] and p.setup200.T == smoke["setup200"]["T"]
    assert p.table.seeds == [0, 1] and p.table.schedule is None
    q = load(Chapter, "smoke", "ch", root, overrides={"table": {"lam": 0.25}, "baseline": {"seed": 3}})
    assert (q.table.lam, q.table.seeds, q.baseline.seed, q.baseline.epochs) == (0.25, [0, 1], 3, 7)
    assert flat(q)["table.lam"] == 0.25 and "profile" not in flat(q)


@pytest.mark.parametrize("own, shared_edit, message", [
    (OWN + "typo: 1\n", None, "params/smoke/ch.yaml: unknown block 'typo'"),
    (OWN.replace("lam: 0.5", "lam: 0.5\n  k: 3"), None, "params/smoke/ch.yaml: unknown key 'table.k'"),
    (OWN.replace("  lam: 0.5\n", ""), None, "params/smoke/ch.yaml: missing key 'table.lam'"),
    (OWN.replace("lam: 0.5", "lam: half"), None, "params/smoke/ch.yaml: key 'table.lam' has str 'half'"),
    (OWN.replace("[0, 1]", "[0, x]"), None, "params/smoke/ch.yaml: key 'table.seeds[1]' has str 'x'"),
    (OWN + "baseline: {epochs: true}\n", None, "params/smoke/ch.yaml: key 'baseline.epochs' has bool True"),
    (OWN, ("  epochs: 5\n", "  epochs: 5.5\n"), "params/smoke/profile.yaml: key 'baseline.epochs' has float 5.5"),
    (OWN, ("  seed: 0\n", ""), "params/smoke/profile.yaml: missing key 'baseline.seed'"),
    (OWN, ("setup200:", "setup201:"), "params/smoke/profile.yaml: unknown block 'setup201'"),
])
def test_a_bad_value_is_one_line_naming_file_and_key(tmp_path, own, shared_edit, message):
    shared = (repo_root() / "params" / "smoke" / "profile.yaml").read_text()
    if shared_edit:
        assert shared_edit[0] in shared
        shared = shared.replace(shared_edit[0], shared_edit[1], 1)
    root = project(tmp_path, own, shared)
    with pytest.raises(ParamsError) as err:
        load(Chapter, "smoke", "ch", root)
    text = str(err.value)
    assert message in text and "\n" not in text, text


def test_an_override_error_names_the_override(tmp_path):
    root = project(tmp_path, OWN)
    with pytest.raises(ParamsError, match=r"override: key 'table.lam' has str 'x'"):
        load(Chapter, "smoke", "ch", root, overrides={"table": {"lam": "x"}})
    with pytest.raises(ParamsError, match=r"override: unknown block 'tabel'"):
        load(Chapter, "smoke", "ch", root, overrides={"tabel": {}})


def test_unknown_profile_and_a_chapter_not_run(tmp_path):
    root = project(tmp_path, "not_run: needs a GPU\n")
    with pytest.raises(ParamsError, match="unknown profile 'huge'"):
        load(Chapter, "huge", "ch", root)
    assert params.not_run_reason("smoke", "ch", root) == "needs a GPU"
    with pytest.raises(ParamsError, match="not run on profile 'smoke' \\(needs a GPU\\)"):
        load(Chapter, "smoke", "ch", root)


def test_every_shipped_parameter_file_validates_and_no_value_is_written_twice():
    """Each profile's files load with their chapters' models; a chapter's file never repeats a
    shared key with the value profile.yaml already gives it (it holds only what differs)."""
    root = repo_root()
    for profile in params.PROFILES:
        shared = yaml.safe_load((root / "params" / profile / "profile.yaml").read_text())
        for name in experiments.EXPERIMENTS:
            if params.not_run_reason(profile, name, root) is not None:
                continue
            load(experiments.module(name).Params, profile, name, root)
            own = yaml.safe_load((root / "params" / profile / f"{name}.yaml").read_text()) or {}
            for block in params.SHARED_BLOCKS:
                for key, value in (own.get(block) or {}).items():
                    assert shared[block][key] != value, f"params/{profile}/{name}.yaml repeats {block}.{key}"


def test_training_precision_is_one_setting_per_profile():
    """Precision and channels_last are the shared baseline's (one spec for a run several chapters
    share); GPU profiles use the fast path, smoke trains in fp32."""
    root = repo_root()
    for profile in params.PROFILES:
        seen = set()
        for name in experiments.TRAINING:
            if params.not_run_reason(profile, name, root) is None:
                b = load(experiments.module(name).Params, profile, name, root).baseline
                seen.add((b.precision, b.channels_last))
        assert seen == {("fp32", False) if profile == "smoke" else ("bf16", True)}, (profile, seen)
