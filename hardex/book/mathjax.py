"""MathJax from the book's own static files, so formulas typeset offline (issue 25).

Sphinx loads MathJax from a CDN by default: on an air-gapped cluster, in CI, or for a reader
without a network the theory chapter then shows raw LaTeX. This Sphinx extension (listed in
``_config.yml``) serves the npm package ``mathjax`` instead, copied at build time and never
committed:

- :func:`fetch` runs ``npm pack mathjax@VERSION`` (the npm registry through its own client;
  npm checks the tarball against the registry's integrity and we check it against
  :data:`INTEGRITY`, pinned when the version was chosen), and unpacks its ``es5/`` and
  ``LICENSE`` into ``build/mathjax/<VERSION>/static/mathjax/`` of this checkout (git-ignored;
  shared by every book built from this checkout, the render-only copies included);
- at ``config-inited`` the extension fetches it when it is missing, adds that folder to
  ``html_static_path`` (so it lands in ``_build/html/_static/mathjax/``) and points
  ``mathjax_path`` at ``mathjax/es5/tex-mml-chtml.js``, the bundle Sphinx takes from the CDN.

Where the copy cannot be made (no npm, no registry and no npm cache) the build goes on with
the CDN and a Sphinx warning saying so, which a strict build (CI: ``--strict``, Sphinx -W)
turns into an error. To prepare a machine that will build offline: ``make mathjax`` (or
``python -m hardex.book.mathjax``) once where the registry is reachable, or copy
``build/mathjax/`` from such a machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from hardex.paths import repo_root

VERSION = "3.2.2"
# `npm pack mathjax@3.2.2 --json` -> "integrity" (sha512 of the tarball, as the registry states it)
INTEGRITY = "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw=="
ENTRY = "mathjax/es5/tex-mml-chtml.js"  # relative to _static, as mathjax_path wants it


class MathJaxError(RuntimeError):
    pass


def static_dir(root: Path | None = None) -> Path:
    """The folder added to ``html_static_path``: it holds ``mathjax/es5/...``."""
    return (root or repo_root()) / "build" / "mathjax" / VERSION / "static"


def present(root: Path | None = None) -> bool:
    return (static_dir(root) / ENTRY).is_file()


def fetch(root: Path | None = None, npm: str = "npm") -> Path:
    """``npm pack`` the pinned MathJax, check its integrity and unpack it (atomically) into
    :func:`static_dir`; returns that folder."""
    exe = shutil.which(npm)
    if exe is None:
        raise MathJaxError(f"{npm} is not on PATH (Debian: apt-get install npm)")
    dest = static_dir(root)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        r = subprocess.run([exe, "pack", f"mathjax@{VERSION}", "--json", "--pack-destination", tmp],
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            said = (r.stderr or r.stdout).strip().splitlines()
            raise MathJaxError(f"npm pack mathjax@{VERSION} failed: {said[-1] if said else f'exit {r.returncode}'}")
        info = json.loads(r.stdout)[0]
        if info.get("integrity") != INTEGRITY:
            raise MathJaxError(f"mathjax@{VERSION} has integrity {info.get('integrity')}, pinned {INTEGRITY}")
        unpacked = Path(tmp) / "static" / "mathjax"
        with tarfile.open(Path(tmp) / info["filename"]) as tar:
            members = [m for m in tar.getmembers()
                       if m.isfile() and (m.name.startswith("package/es5/") or m.name == "package/LICENSE")]
            for m in members:
                m.name = m.name.removeprefix("package/")
            kw = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(unpacked, members=members, **kw)
        if not (Path(tmp) / "static" / ENTRY).is_file():
            raise MathJaxError(f"mathjax@{VERSION} has no {ENTRY.removeprefix('mathjax/')}")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(Path(tmp) / "static", dest)
    return dest


def _configure(app, config) -> None:
    from sphinx.util import logging

    try:
        if not present():
            fetch()
    except (MathJaxError, OSError, subprocess.TimeoutExpired, ValueError, KeyError) as err:
        logging.getLogger(__name__).warning(
            f"hardex.book.mathjax: no local MathJax {VERSION} ({err}); formulas load from the CDN and need a network. "
            "Run `make mathjax` where the npm registry is reachable.")
        return
    config.html_static_path = [*config.html_static_path, str(static_dir())]
    config.mathjax_path = ENTRY


def setup(app) -> dict:
    app.connect("config-inited", _configure)
    return {"version": VERSION, "parallel_read_safe": True, "parallel_write_safe": True}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="fetch the pinned MathJax for the offline book (npm pack)")
    ap.add_argument("--force", action="store_true", help="fetch again even when a copy is present")
    args = ap.parse_args(argv)
    if present() and not args.force:
        print(f"MathJax {VERSION} already at {static_dir()}")
        return 0
    try:
        print(f"MathJax {VERSION} at {fetch()}")
    except MathJaxError as err:
        print(f"error: {err}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
