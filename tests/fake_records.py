"""Deterministic fake finished records, so that every round of an experiment can be listed
without training (tests/test_spec_hashes.py).

A fake record has the spec, one metrics row per epoch (DPLS's recorded average factor derived
from the spec's hash), a difficulty.npz (every training example in the set, 0-1 losses drawn
from a generator seeded by the hash) and a final.json: enough for the experiments' later
rounds (LS at the DPLS run's factor, Fig. 1's subsets, Fig. 8's indicator files), nothing more.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np


def fake_record(root, spec, n_train: int = 50000) -> bool:
    """Write a fake finished record of ``spec`` under ``root``; False when one is there already."""
    d = Path(root) / spec.short_hash
    if (d / "final.json").exists():
        return False
    d.mkdir(parents=True, exist_ok=True)
    (d / "spec.yaml").write_text(spec.to_yaml())
    h = int(hashlib.sha256(spec.hash.encode()).hexdigest()[:8], 16)
    avg = 0.8 + (h % 100) / 1000
    rows = [{"epoch": e, "targets": {"kind": spec.train.targets.kind, "active": True, "avg_factor": avg},
             "train_adv_acc": 0.5, "train_clean_acc": 0.6, "test_clean_acc": 0.5, "test_pgd_acc": 0.4,
             "seconds": 1.0, "probes": {}} for e in range(1, spec.train.epochs + 1)]
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    rng = np.random.default_rng(h)
    buf = io.BytesIO()
    np.savez(buf, zero_one=rng.integers(0, 5, n_train).astype(np.float32), in_train=np.ones(n_train, bool))
    (d / "difficulty.npz").write_bytes(buf.getvalue())
    (d / "final.json").write_text(json.dumps({"epochs": spec.train.epochs, "final": {
        "clean_acc": 0.5, "n": 100, "pgd10_acc": 0.4, "pgd20_acc": 0.4, "pgd5_acc": 0.4}}))
    return True
