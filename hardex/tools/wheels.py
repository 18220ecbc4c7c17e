"""The wheels a GPU machine needs to run `hardex gpu-check`, and installing the missing ones.

A CUDA machine is assumed to have a Python with torch, torchvision (and so pillow), numpy,
pandas (and so python-dateutil), scipy, pyyaml, tqdm and pytest (and so packaging,
pygments). Everything else hardex imports without the book's rendering stack is
:data:`GPU_WHEELS`, at the versions of ``requirements.lock``:

- ``make gpu-wheels`` (on a machine with pip and a network) downloads exactly these, for the
  GPU machine's Python (3.12 by default) and x86-64 Linux, into ``.gpu/wheels`` (git-ignored;
  carry ``.gpu/`` along), and drops files nothing imports (:data:`SLIM`);
- ``make gpu-install`` (``python -m hardex.tools.wheels install .gpu/wheels build/gpu-site-py312``, on the
  GPU machine, no network) installs those whose top-level modules that Python cannot import
  yet with ``pip install --no-index --no-deps --target``, leaving the machine's own packages in
  charge (the GPU image of this workplace has matplotlib, seaborn, cloudpickle, psutil; it
  lacks pydantic, submitit, pyautoattack and IPython).

Standard library only: it runs before any of hardex's dependencies are importable.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

GPU_WHEELS = (
    "pydantic", "pydantic-core", "annotated-types", "typing-inspection",  # hardex.config
    "submitit", "cloudpickle",  # hardex.runs.executors (imported by the run store's plan)
    "pyautoattack",  # hardex.attacks.autoattack (the bench's AutoAttack throughput)
    "matplotlib", "contourpy", "cycler", "fonttools", "kiwisolver", "pyparsing", "seaborn",  # the chapters' figures
    # the chapters' IPython.display, outside a kernel
    "ipython", "ipython-pygments-lexers", "jedi", "parso", "matplotlib-inline", "traitlets", "pexpect", "ptyprocess",
    "prompt-toolkit", "wcwidth", "stack-data", "executing", "asttokens", "pure-eval", "psutil", "pygments",
)
# Files of a downloaded wheel that nothing imports and that would not fit what a GPU session
# carries (64 MiB with the working tree): pyautoattack 0.2.0 ships a 44 MB example model.
SLIM = {"pyautoattack": ("pyautoattack/examples/",)}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.lower())


def pins(lock: Path) -> list[str]:
    """``name==version`` of each of :data:`GPU_WHEELS` as ``lock`` pins it; a package the
    lock does not pin is an error naming it."""
    found = {}
    for line in Path(lock).read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", line)
        if m:
            found[_norm(m.group(1))] = m.group(2)
    missing = [w for w in GPU_WHEELS if w not in found]
    if missing:
        raise ValueError(f"{lock}: no pin for {', '.join(missing)} (needed on the GPU machine; see GPU_WHEELS)")
    return [f"{w}=={found[w]}" for w in GPU_WHEELS]


def project_name(wheel: Path) -> str:
    return _norm(Path(wheel).name.split("-")[0])


def slim(wheel: Path, drop: tuple[str, ...]) -> int:
    """Rewrite ``wheel`` without the members under ``drop`` (and their RECORD lines);
    returns the bytes saved. pip installs the rest as before."""
    wheel = Path(wheel)
    before = wheel.stat().st_size
    tmp = wheel.with_suffix(".slim")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename.startswith(drop):
                continue
            data = src.read(info.filename)
            if info.filename.endswith(".dist-info/RECORD"):
                data = "".join(line for line in data.decode().splitlines(keepends=True)
                               if not line.startswith(drop)).encode()
            dst.writestr(info, data)
    os.replace(tmp, wheel)
    return before - wheel.stat().st_size


def top_level(wheel: Path) -> list[str]:
    """The importable top-level names a wheel installs (its members' first path parts;
    ``x.py`` -> ``x``; metadata, data and ``__pycache__`` folders left out)."""
    names = set()
    with zipfile.ZipFile(wheel) as z:
        for n in z.namelist():
            head = n.split("/", 1)[0]
            if head.endswith((".dist-info", ".data")) or head in ("__pycache__", ""):
                continue
            if "/" not in n and not n.endswith((".py", ".so")) and not n.endswith(".pth"):
                continue
            names.add(head.split(".")[0] if "/" not in n else head)
    return sorted(x for x in names if x.isidentifier())


def missing(wheels: list[Path]) -> list[Path]:
    """The wheels whose top-level modules this Python cannot import (any one missing)."""
    out = []
    for w in wheels:
        mods = top_level(w)
        if not mods or any(importlib.util.find_spec(m) is None for m in mods):
            out.append(w)
    return out


def install(folder: Path, target: Path) -> list[str]:
    """Install the wheels of ``folder`` that this Python lacks into ``target`` (pip, no index,
    no dependency resolution: the folder holds them all). Returns the project names installed."""
    wheels = sorted(Path(folder).glob("*.whl"))
    if not wheels:
        raise FileNotFoundError(f"no wheels in {folder}: run `make gpu-wheels` on a machine with pip and carry .gpu/")
    todo = missing(wheels)
    if todo:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--no-cache-dir", "--upgrade", "--target", str(target), *map(str, todo)], check=True)
    return [project_name(w) for w in todo]


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["pins"] and len(args) == 2:
        print("\n".join(pins(Path(args[1]))))
    elif args[:1] == ["slim"] and len(args) == 2:
        for w in sorted(Path(args[1]).glob("*.whl")):
            if project_name(w) in SLIM:
                saved = slim(w, SLIM[project_name(w)])
                print(f"{w.name}: {saved / 2**20:.1f} MiB of unused files dropped ({', '.join(SLIM[project_name(w)])})")
    elif args[:1] == ["install"] and len(args) == 3:
        done = install(Path(args[1]), Path(args[2]))
        print(f"gpu-install: {len(done)} wheels into {args[2]}" + (f": {', '.join(done)}" if done else
                                                                     " (this Python has every package already)"))
    else:
        print("usage: python -m hardex.tools.wheels pins LOCK | slim DIR | install DIR TARGET", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
