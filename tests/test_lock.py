"""requirements.lock: exact pins that satisfy pyproject.toml's ranges (hardex.tools.lockfile)."""

from __future__ import annotations

import re
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement

from hardex import provenance as lockfile
from hardex.paths import repo_root

ROOT = repo_root()


def pyproject_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in ("book", "test"):  # the book's environment: what make book / make test install
        reqs += project["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


def test_lock_pins_every_requirement_inside_its_range():
    pins = lockfile.read_lock()
    for req in pyproject_requirements():
        name = lockfile.normalize(req.name)
        assert name in pins, f"{req.name} is in pyproject.toml but not in requirements.lock (run make lock)"
        assert req.specifier.contains(pins[name], prereleases=True), \
            f"requirements.lock pins {req.name}=={pins[name]}, outside pyproject.toml's {req.specifier}"


def test_lock_pins_torch_as_the_makefile_says():
    pins = lockfile.read_lock()
    makefile = (ROOT / "Makefile").read_text()
    wanted = dict(re.findall(r"([a-z]+)==([0-9.]+)", re.search(r"^LOCK_PINS := (.*)$", makefile, re.M).group(1)))
    assert wanted.keys() == {"torch", "torchvision"}
    assert {k: pins[k] for k in wanted} == wanted


def test_environment_yml_installs_the_lock():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-r requirements.lock" in pip
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert python == "python=3.11"  # the interpreter the lock was resolved for


def test_read_lock_parses_exact_pins_and_rejects_ranges(tmp_path):
    f = tmp_path / "requirements.lock"
    f.write_text("# header\nPyYAML==6.0.2\n    # via hardex\ntyping_extensions==4.12.2  # comment\n\n")
    assert lockfile.read_lock(f) == {"pyyaml": "6.0.2", "typing-extensions": "4.12.2"}
    f.write_text("torch>=2.1\n")
    with pytest.raises(ValueError, match=r"requirements.lock:1: 'torch>=2.1' is not an exact pin"):
        lockfile.read_lock(f)
    f.write_text("torch==2.14.1\nTorch==2.14.1\n")
    with pytest.raises(ValueError, match="pinned twice"):
        lockfile.read_lock(f)


def test_differences_by_hand():
    pins = {"torch": "2.14.1", "numpy": "2.4.6", "scipy": "1.17.1"}
    have = {"torch": "2.11.0", "numpy": "2.4.6", "seaborn": "0.13.2", "pip": "26.3", "hardex": "0.1.0"}
    assert lockfile.differences(pins, have) == [
        "- scipy==1.17.1 (locked, not installed)",
        "+ seaborn==0.13.2 (installed, not in the lock)",
        "~ torch: locked 2.14.1, installed 2.11.0",
    ]
    assert lockfile.differences(pins, {**pins, "pip": "1"}) == []


def test_lock_provenance_names_the_lock_and_whether_this_environment_matches(tmp_path):
    (tmp_path / "requirements.lock").write_text("definitely-not-installed-pkg==1.0\n")
    prov = lockfile.lock_provenance(tmp_path)
    assert prov["sha256"] == lockfile.lock_sha256(tmp_path / "requirements.lock")
    assert len(prov["sha256"]) == 64 and prov["matches"] is False
    assert "- definitely-not-installed-pkg==1.0 (locked, not installed)" in prov["differences"]
    assert lockfile.lock_provenance(tmp_path / "missing") is None
