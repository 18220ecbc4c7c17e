"""RunSpec.scores_from: difficulty from another run (or an external .npz) through the store."""

from __future__ import annotations

import numpy as np
import pytest

from hardex import difficulty
from hardex.config import TrainConfig
from hardex.runs.spec import RunSpec, SpecError
from hardex.runs.plan import ensure
from test_store import needs_trainer, real_spec, store_at, tiny_cifar  # noqa: F401 (fixture)
from test_spec import MINIMAL


def with_edit(base: RunSpec, rule: dict, scores_from: dict, **spec_kw) -> RunSpec:
    train = TrainConfig.model_validate({**base.train.model_dump(), "seed": 1,
                                        "edits": [{"kind": "keep", "rule": rule}]})
    return RunSpec.model_validate({"train": train, "scores_from": scores_from, **spec_kw})


def training_indices(rec) -> np.ndarray:
    return np.flatnonzero(rec.difficulty["labels"] >= 0)  # -1 outside the training set


def test_missing_source_fails_naming_it():
    train = {**MINIMAL["train"], "edits": [{"kind": "keep", "rule": {"k": 5, "source": "base"}}]}
    with pytest.raises(SpecError, match=r"edit 'keep' reads difficulty source 'base'.*scores_from"):
        RunSpec.from_dict({"train": train})
    other = RunSpec.from_dict(MINIMAL)
    with pytest.raises(SpecError, match=r"source 'base'"):
        RunSpec.from_dict({"train": train, "scores_from": {"basee": {"run": other.model_dump()}}})


def test_hash_covers_sources_and_keeps_old_hashes(tmp_path):
    s = RunSpec.from_dict(MINIMAL)
    assert "scores_from" not in s.identity()
    # the hash of MINIMAL before scores_from existed (a spec without it keeps its hash)
    assert s.hash == "c093e3b59f36120c8bc9c4275c4b79ad6cac32de9fb83f60d657f20ab09a0f24"
    rule = {"k": 5, "source": "base"}
    a = with_edit(s, rule, {"base": {"run": s}})
    s2 = RunSpec.from_dict({"train": {**MINIMAL["train"], "seed": 7}})
    b = with_edit(s, rule, {"base": {"run": s2}})
    c = with_edit(s, rule, {"base": {"run": s, "epoch": 2}})
    assert len({a.hash, b.hash, c.hash}) == 3
    assert RunSpec.from_yaml(c.to_yaml()).hash == c.hash

    f = tmp_path / "c.npz"
    np.savez(f, scores=np.arange(4.0))
    ext = {"k": 5, "measure": "external", "source": "cs"}
    d1 = with_edit(s, ext, {"cs": {"file": str(f)}})
    assert RunSpec.from_yaml(d1.to_yaml()).hash == d1.hash  # sha256 stored in spec.yaml
    g = tmp_path / "moved.npz"
    g.write_bytes(f.read_bytes())
    assert with_edit(s, ext, {"cs": {"file": str(g)}}).hash == d1.hash  # content, not path
    np.savez(f, scores=np.arange(4.0) + 1)
    assert with_edit(s, ext, {"cs": {"file": str(f)}}).hash != d1.hash


@needs_trainer
def test_keep_hardest_of_a_source_run(tmp_path, tiny_cifar):
    from hardex.train import Trainer

    built: list[str] = []

    def factory(cfg, scores=None):
        built.append(cfg.seed)
        return Trainer(cfg, scores=scores)

    source = real_spec()
    rule = {"k": 20, "source": "base"}
    final = with_edit(source, rule, {"base": {"run": source}})
    at2 = with_edit(source, rule, {"base": {"run": source, "epoch": 2}})
    store = store_at(tmp_path / "runs")
    rec_final, rec_at2 = ensure([final, at2], store, progress=False, trainer=factory)
    # the source once (plus one rebuild to read its checkpoint at epoch 2), each consumer once
    assert built.count(0) == 2 and built.count(1) == 2
    src = store.open(source)
    assert src is not None and store.ckpt_path(source, 2).exists()
    want = np.sort(difficulty.select(src.difficulty["zero_one"], k=20, which="hard"))
    assert all(r["n_train"] == 20 for r in rec_final.metrics)
    assert np.array_equal(training_indices(rec_final), want)
    # tracking.until_epoch=2: the arrays at epoch 2 are the final ones
    assert np.array_equal(training_indices(rec_at2), want)

    # a child branched from the consumer names the same source (scores_from is not inherited)
    child = RunSpec.model_validate({"train": final.train.model_copy(update={"epochs": 3}),
                                    "start_from": {"parent": final, "epoch": 1},
                                    "scores_from": {"base": {"run": source}}})
    built.clear()
    [c] = ensure([child], store, progress=False, trainer=factory)
    assert np.array_equal(training_indices(c), want) and len(c.metrics) == 3


@needs_trainer
def test_external_npz_source(tmp_path, tiny_cifar):
    from hardex import data

    labels = data.load_dataset("cifar10", "train").labels.numpy()
    cs = np.random.default_rng(0).random(len(labels))
    f = tmp_path / "cscores.npz"
    np.savez(f, scores=cs, labels=labels)
    base = real_spec(epochs=1, schedule={"milestones": []}, tracking={"until_epoch": 1})
    s = with_edit(base, {"k": 20, "measure": "external", "source": "cs"},
                  {"cs": {"file": str(f), "lower_is_harder": True}})
    [rec] = ensure([s], store_at(tmp_path / "runs"), progress=False)
    assert rec.metrics[0]["n_train"] == 20
    assert np.array_equal(training_indices(rec), np.sort(np.argsort(cs)[:20]))  # lowest = hardest

    np.savez(f, scores=cs[::-1], labels=labels)  # changed after the spec was made
    with pytest.raises(RuntimeError, match="sha256"):
        ensure([s], store_at(tmp_path / "other"), progress=False)
