"""The Slurm cluster itself (tools/single-node-slurm; CI starts one): a one-CPU batch job runs.

Marked ``slurm``: skipped with a one-line reason where no controller answers (a failure with
HARDEX_REQUIRE_SLURM=1, as in CI).
"""

from __future__ import annotations

import subprocess

import pytest

pytestmark = pytest.mark.slurm


def test_a_one_cpu_batch_job_completes(slurm_partition, tmp_path):
    out = tmp_path / "job.out"
    r = subprocess.run(["sbatch", "--wait", "-c1", "--time=2", "-p", slurm_partition, "-o", str(out),
                        "--wrap", "echo ok"], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"sbatch --wait exit {r.returncode}: {r.stdout} {r.stderr}"
    assert r.stdout.startswith("Submitted batch job"), r.stdout
    assert out.read_text().strip() == "ok"
