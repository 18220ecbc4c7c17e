"""RunSpec: validation, YAML round-trip, a hash that is stable where it should be."""

from __future__ import annotations

import random

import pytest
import yaml

from hardex.config import TrainConfig
from hardex.runs.spec import SHORT_HASH_LEN, RunSpec, SpecError

MINIMAL = {"train": {"epochs": 4, "model": {"name": "tiny_cnn"}, "schedule": {"milestones": [2]},
                     "tracking": {"until_epoch": 2}}}


def _spec(**train) -> RunSpec:
    return RunSpec.from_dict({"train": {**MINIMAL["train"], **train}})


def _shuffled(obj, rng):
    if isinstance(obj, dict):
        items = list(obj.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(obj, list):
        return [_shuffled(v, rng) for v in obj]
    return obj


def test_yaml_round_trip(tmp_path):
    parent = _spec()
    child = RunSpec(train=TrainConfig.model_validate({**parent.train.model_dump(), "targets": {"kind": "dpls", "lam": 0.9}}),
                    start_from={"parent": parent, "epoch": 2}, checkpoints={"at": [3, 1], "every": 2})
    f = tmp_path / "child.yaml"
    child.to_yaml(f)
    back = RunSpec.from_yaml(f)
    assert back == child and back.hash == child.hash
    assert back.checkpoints.at == (1, 3)
    assert RunSpec.from_yaml(child.to_yaml()) == child  # YAML text works too


def test_unknown_field_fails_naming_field_and_file(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump({**MINIMAL, "chekpoints": {"every": 1}}))
    with pytest.raises(SpecError, match=r"bad\.yaml: unknown field 'chekpoints'"):
        RunSpec.from_yaml(f)
    f.write_text(yaml.safe_dump({"train": {**MINIMAL["train"], "optimizer": {"lr": 0.1, "moment": 0.9}}}))
    with pytest.raises(SpecError, match=r"bad\.yaml: unknown field 'train\.optimizer\.moment'"):
        RunSpec.from_yaml(f)


def test_hash_stable_under_key_order_and_written_out_defaults():
    s = RunSpec.from_dict(MINIMAL)
    full = yaml.safe_load(s.to_yaml())  # every default written out
    assert full != MINIMAL
    rng = random.Random(0)
    for _ in range(5):
        assert RunSpec.from_dict(_shuffled(full, rng)).hash == s.hash
        assert RunSpec.from_dict(_shuffled(MINIMAL, rng)).hash == s.hash
    assert len(s.hash) == 64 and s.short_hash == s.hash[:SHORT_HASH_LEN]
    # a default written with another spelling (int for float) is still the default
    assert _spec(beta=6).hash == s.hash
    assert _spec(seed=1).hash != s.hash


def test_new_defaulted_field_keeps_old_hashes():
    class LaterRunSpec(RunSpec):
        note: str = ""

    s = RunSpec.from_dict(MINIMAL)
    assert LaterRunSpec.from_dict(MINIMAL).hash == s.hash
    assert LaterRunSpec.from_dict({**MINIMAL, "note": "x"}).hash != s.hash


def test_checkpoint_policy_is_not_part_of_the_hash_but_evaluation_is():
    s = RunSpec.from_dict(MINIMAL)
    assert RunSpec.from_dict({**MINIMAL, "checkpoints": {"at": [2], "every": 3, "last": False}}).hash == s.hash
    assert RunSpec.from_dict({**MINIMAL, "evaluation": {"which": ["final"]}}).hash != s.hash


def test_parent_hash_is_part_of_the_child_hash():
    p1, p2 = _spec(seed=0), _spec(seed=1)
    c1 = RunSpec(train=p1.train, start_from={"parent": p1, "epoch": 2})
    c2 = RunSpec(train=p1.train, start_from={"parent": p2, "epoch": 2})
    c3 = RunSpec(train=p1.train, start_from={"parent": p1, "epoch": 3})
    assert len({c1.hash, c2.hash, c3.hash, p1.hash}) == 4
    assert c1.identity()["start_from"] == {"parent": p1.hash, "epoch": 2}
    assert [x.hash for x in c1.lineage()] == [p1.hash, c1.hash]


def test_branch_validation():
    p = _spec()
    with pytest.raises(ValueError, match="beyond the parent's 4 epochs"):
        RunSpec(train=p.train, start_from={"parent": p, "epoch": 5})
    other_model = TrainConfig.model_validate({**p.train.model_dump(), "model": {"name": "preact_resnet18"}})
    with pytest.raises(ValueError, match="train.model differs"):
        RunSpec(train=other_model, start_from={"parent": p, "epoch": 2})
    other_opt = TrainConfig.model_validate({**p.train.model_dump(), "optimizer": {"lr": 0.01}})
    with pytest.raises(ValueError, match="train.optimizer differs"):
        RunSpec(train=other_opt, start_from={"parent": p, "epoch": 2})
    with pytest.raises(SpecError, match="every"):
        RunSpec.from_dict({**MINIMAL, "checkpoints": {"every": 0}})
