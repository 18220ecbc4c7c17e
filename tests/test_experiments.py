"""hardex.experiments: spec builders shared by chapters, and run counting."""

from __future__ import annotations

import pytest

from hardex import experiments as ex

P = dict(dataset="cifar10", train_subset=100, model="tiny_cnn", epochs=4, milestones=[2, 3], T=2,
         eps=0.031, attack_steps=2, lr=0.1, weight_decay=5e-4, batch_size=32, seed=0, device="cpu",
         eval_subset=16, eval_pgd_steps=1, final_pgd_steps=[2], final_subset=0)


def test_baseline_reads_params_and_overrides():
    b = ex.baseline(P)
    t = b.train
    assert (t.algorithm, t.model.name, t.epochs, t.schedule.milestones, t.tracking.until_epoch) == \
        ("pgd", "tiny_cnn", 4, (2, 3), 2)
    assert t.dataset.subset.n == 100 and t.dataset.subset.balanced
    assert t.eval.final_subset is None and t.eval.subset == 16 and t.device == "cpu"
    std = ex.baseline(P, eps=0.0)
    assert std.train.algorithm == "std" and std.train.attack.eps == 0.031  # evaluated at the profile's eps
    other = ex.baseline(P, eps=0.0155, epochs=6, milestones=[4], T=3, attack={"step_size": 0.0035})
    assert other.train.attack.eps == 0.0155 and other.train.attack.step_size == 0.0035
    assert other.train.attack.steps == 2 and other.train.epochs == 6
    assert ex.baseline(P).hash == b.hash  # same params, same run
    assert ex.baseline({**P, "train_subset": 0}).train.dataset.subset is None
    # the training precision keys are optional; absent = TrainConfig's fp32 / NCHW defaults
    assert (t.precision, t.channels_last) == ("fp32", False)
    fast = ex.baseline({**P, "precision": "bf16", "channels_last": True}).train
    assert (fast.precision, fast.channels_last) == ("bf16", True)
    assert ex.baseline({**P, "precision": "fp32", "channels_last": False}).hash == b.hash


def test_continuation_and_pruning():
    b = ex.baseline(P)
    assert ex.continuation(b, 2) is b  # an un-edited continuation is the parent's own run
    hard = ex.prune_from(b, 2, "hard", 10)
    easy = ex.prune_from(b, 2, "easy", 10)
    assert hard.start_from.parent.hash == b.hash and hard.start_from.epoch == 2
    [e] = hard.train.edits
    assert (e.kind, e.from_epoch, e.rule.which, e.rule.k, e.rule.source) == ("prune", 3, "hard", 10, "self")
    assert len({b.hash, hard.hash, easy.hash}) == 3
    with pytest.raises(ValueError):
        ex.continuation(b, 2, model={"name": "resnet18"})  # a child must keep the parent's model


def test_count_runs_counts_parents_and_sources_once():
    b = ex.baseline(P)
    cells = {"none": ex.continuation(b, 2), "easy": ex.prune_from(b, 2, "easy", 10),
             "hard": ex.prune_from(b, 2, "hard", 10)}
    # naive: every cell trains its own baseline (1 + 2 + 2); here: the baseline once + 2 children
    assert ex.count_runs(cells) == (3, 5)
    assert ex.count_runs(list(cells.values()) + [b]) == (3, 6)
    src = ex.baseline(P, eps=0.0)
    keep = ex.keep_indices(P, [3, 1, 2])
    assert keep.train.edits[0].indices == (1, 2, 3)
    from hardex.config import TrainConfig
    from hardex.runs.spec import RunSpec
    tr = TrainConfig.model_validate({**b.train.model_dump(),
                                     "edits": [{"kind": "keep", "rule": {"k": 5, "source": "s"}}]})
    with_src = RunSpec(train=tr, scores_from={"s": ex.scores_source(src, 2)})
    child = ex.prune_from(with_src, 2, "hard", 1)
    assert ex.count_runs([child]) == (3, 3)  # child, its parent, the parent's score source
    assert ex.count_runs([child, with_src, src]) == (3, 3 + 2 + 1)
    assert {s.hash for s in ex.distinct_runs([child])} == {child.hash, with_src.hash, src.hash}


def test_from_source_edits_rank_by_the_source_run():
    b = ex.baseline(P)
    kept = ex.from_source(P, b, edits=[ex.by_difficulty("keep", "easy", k=10)], eps=0.0)
    [e] = kept.train.edits
    assert (e.kind, e.from_epoch, e.rule.which, e.rule.k, e.rule.source) == ("keep", 1, "easy", 10, "source")
    assert kept.train.algorithm == "std" and kept.scores_from["source"].run.hash == b.hash
    rl = ex.from_source(P, b, edits=[ex.by_difficulty("random_labels", "hard", k=10, seed=3)])
    assert rl.train.edits[0].kind == "random_labels" and rl.train.edits[0].seed == 3
    assert len({kept.hash, rl.hash, b.hash}) == 3
    assert ex.count_runs([kept, rl]) == (3, 4)  # the source run is shared
    with pytest.raises(ValueError):  # the rule names a source the spec does not define
        ex.from_source(P, b, edits=[ex.by_difficulty("keep", "easy", k=10, source="other")])


def test_prune_fraction_from():
    b = ex.baseline(P)
    assert ex.prune_fraction_from(b, 2, "hard", 0) is b
    c = ex.prune_fraction_from(b, 2, "easy", 0.2)
    [e] = c.train.edits
    assert (e.kind, e.from_epoch, e.rule.which, e.rule.fraction, e.rule.k) == ("prune", 3, "easy", 0.2, None)
    assert c.start_from.parent.hash == b.hash


def test_cost_estimate_inputs():
    b = ex.baseline(P)  # 100 of 50,000 images, 4 epochs
    assert ex.epochs_trained(b) == 4
    assert ex.training_fraction(b) == pytest.approx(100 / 50000)
    hard = ex.prune_from(b, 2, "hard", 10)  # prune 10 of the 100 from epoch 3
    assert ex.epochs_trained(hard) == 2
    assert ex.training_fraction(hard) == pytest.approx(90 / 50000)
    kept = ex.keep_indices({**P, "train_subset": 0}, range(500))
    assert ex.training_fraction(kept) == pytest.approx(500 / 50000)
    frac = ex.prune_fraction_from(b, 2, "easy", 0.25)
    assert ex.training_fraction(frac) == pytest.approx(75 / 50000)


def test_difficulty_probes_and_sharing():
    p = ex.difficulty_probes(0.031, 10, 5)
    assert [q["name"] for q in p] == ["hard", "easy", "all"]
    assert p[0]["rule"] == {"which": "hard", "k": 10, "source": "self"} and p[0]["max_examples"] == 5
    assert "adv_acc" in p[0]["metrics"] and "adv_acc" not in ex.difficulty_probes(0.0, 10)[0]["metrics"]
    src = ex.difficulty_probes(0.031, 10, 0, source="source", sets=("hard",))
    assert src[0]["rule"]["source"] == "source" and src[0]["max_examples"] is None
    # two chapters building their difficulty run with the same parameters get the same run
    a = ex.baseline(P, probes=ex.difficulty_probes(0.031, 10, 5))
    assert a.hash == ex.baseline(P, probes=ex.difficulty_probes(0.031, 10, 5)).hash
    assert a.hash != ex.baseline(P, probes=ex.difficulty_probes(0.031, 20, 5)).hash
    with pytest.raises(ValueError, match="'medium'"):
        ex.difficulty_probes(0.031, 10, sets=("medium",))


def test_gpu_hours_by_hand():
    """The estimator's training hours: each run's own epochs times its share of the split."""
    from hardex.experiments.cost import Estimator
    from hardex.experiments.params import Cost

    full = {**P, "train_subset": 0}
    b = ex.baseline(full)  # 4 epochs on 50,000 images
    hard = ex.prune_from(b, 2, "hard", 5000)  # 2 epochs on 45,000
    keep = ex.keep_indices(full, range(10000))  # 4 epochs on 10,000
    no_eval = Cost(minutes_per_epoch={"pgd": 0.5}, model_scale={}, eval_passes_per_s=0.0, passes_per_example={})
    est = Estimator(no_eval, P["model"], P["attack_steps"])  # 0.5 minutes per full epoch, evaluation not counted
    assert est.hours([b]) == pytest.approx(4 * 0.5 / 60)
    # the parent is counted once, however many children share it
    assert est.hours(ex.distinct_runs([hard, hard, b])) == pytest.approx((4 + 2 * 0.9) * 0.5 / 60)
    assert est.hours([keep]) == pytest.approx(4 * 0.2 * 0.5 / 60)
    assert est.hours([hard]) == pytest.approx(2 * 0.9 * 0.5 / 60)  # the child alone


def test_continuation_carries_and_adds_teachers():
    from hardex.experiments import baseline, continuation

    base = baseline(P)
    std = baseline(P, eps=0)
    teachers = {"std": {"run": std, "which": "final"}}
    kd = {"kd": {"teachers": {"std": 0.3}, "temperature": 2.0}}
    child = continuation(base, P["T"], teachers=teachers, **kd)
    assert child.teachers["std"].run.hash == std.hash
    # a continuation of the KD run keeps its teachers (its config still distils)
    grandchild = continuation(child, P["T"] + 1, targets={"kind": "ls", "lam": 0.9})
    assert grandchild.teachers == child.teachers
    assert continuation(base, P["T"]) is base  # nothing changed: the parent itself
