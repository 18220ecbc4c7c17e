"""The api.py docstring example runs as written, and the API computes Algorithm 2."""

import re

import numpy as np
import pytest
import torch

import hardex.api as api


def _docstring_example() -> str:
    doc = api.__doc__
    block = doc.split("::\n", 1)[1]
    lines = []
    for line in block.splitlines()[1:]:
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines).strip() + "\n"


def test_docstring_example_runs_exactly(capsys):
    code = _docstring_example()
    assert "DPLS(tracker.scores(\"zero_one\"), lam=0.5, num_classes=C)" in code
    ns: dict = {}
    exec(compile(code, "hardex/api.py:example", "exec"), ns)
    out = capsys.readouterr().out
    m = re.search(r"average smoothing factor (\d\.\d+)", out)
    assert m, out
    tracker, dpls = ns["tracker"], ns["dpls"]
    assert (tracker.counts == 3).all()  # tracked on epochs 1-3 only
    s = tracker.scores("zero_one")
    assert dpls.average_factor == pytest.approx(float(m.group(1)), abs=5e-4)
    assert 0.5 <= dpls.average_factor < 1.0
    h, e = int(np.argmax(s)), int(np.argmin(s))
    y = ns["y"]
    t = dpls.targets(y[[h, e]], [h, e])
    assert float(t[0, y[h]]) == pytest.approx(0.5) and float(t[1, y[e]]) == 1.0


def test_api_matches_hand_computation():
    tr = api.DifficultyTracker(4, 4)
    logits = torch.eye(4) * 5
    tr.update([0, 1, 2, 3], logits, torch.tensor([0, 1, 0, 0]))  # examples 2, 3 wrong
    tr.update([0, 1, 2, 3], logits, torch.tensor([0, 0, 2, 0]))  # examples 1, 3 wrong
    s = tr.scores("zero_one")
    np.testing.assert_array_equal(s, [0.0, 0.5, 0.5, 1.0])
    dpls = api.DPLS(s, lam=0.7, num_classes=4)
    np.testing.assert_allclose(dpls.factors, [1.0, 0.85, 0.85, 0.7])
    t = dpls.targets(torch.tensor([0, 1, 2, 3]), torch.arange(4)).double()
    np.testing.assert_allclose(t[3].numpy(), [0.1, 0.1, 0.1, 0.7], atol=1e-7)
    np.testing.assert_allclose(t[1].numpy(), [0.05, 0.85, 0.05, 0.05], atol=1e-7)
    z = torch.randn(4, 4)
    expected = -(t.float() * torch.log_softmax(z, 1)).sum(1).mean()
    assert torch.allclose(dpls.loss(z, torch.tensor([0, 1, 2, 3]), torch.arange(4)), expected)
    assert dpls.average_factor == pytest.approx(0.85)
    dpr = api.DPR(s, lam=0.0)  # lam 0: the hardest example is pruned from the loss
    np.testing.assert_allclose(dpr.weights, [1.0, 0.5, 0.5, 0.0])
    y = torch.tensor([0, 1, 2, 3])
    ce = torch.nn.functional.cross_entropy(z, y, reduction="none")
    assert torch.allclose(dpr.loss(z, y, torch.arange(4)),
                          (ce * torch.tensor([1.0, 0.5, 0.5, 0.0])).sum() / 4)
    with pytest.raises(ValueError, match="outside"):
        api.DPLS(s, lam=0.2, num_classes=4)
