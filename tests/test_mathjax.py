"""hardex.book.mathjax: the book's own MathJax (issue 25), without a network: the extension
points Sphinx at a copy that is present, and says so (a warning, the CDN kept) when none can
be had."""

import types
from pathlib import Path

import pytest

from hardex.book import mathjax


def _config():
    return types.SimpleNamespace(html_static_path=["book/_static"], mathjax_path="https://cdn.example/mathjax.js")


def test_a_present_copy_is_served_from_static(tmp_path, monkeypatch):
    static = tmp_path / "static"
    (static / Path(mathjax.ENTRY).parent).mkdir(parents=True)
    (static / mathjax.ENTRY).write_text("// MathJax")
    monkeypatch.setattr(mathjax, "static_dir", lambda root=None: static)
    monkeypatch.setattr(mathjax, "fetch", lambda *a, **k: pytest.fail("a present copy is not fetched again"))
    cfg = _config()
    mathjax._configure(None, cfg)
    assert cfg.html_static_path == ["book/_static", str(static)] and cfg.mathjax_path == "mathjax/es5/tex-mml-chtml.js"


def test_without_npm_the_build_warns_and_keeps_the_cdn(tmp_path, monkeypatch):
    monkeypatch.setattr(mathjax, "static_dir", lambda root=None: tmp_path / "static")
    with pytest.raises(mathjax.MathJaxError, match="not on PATH"):
        mathjax.fetch(npm="no-such-npm-here")
    real_fetch = mathjax.fetch
    monkeypatch.setattr(mathjax, "fetch", lambda *a, **k: real_fetch(npm="no-such-npm-here"))
    cfg = _config()
    from sphinx.util import logging as sphinx_logging

    warned = []
    monkeypatch.setattr(sphinx_logging, "getLogger", lambda name: types.SimpleNamespace(warning=warned.append))
    mathjax._configure(None, cfg)
    assert cfg.mathjax_path.startswith("https://") and cfg.html_static_path == ["book/_static"]
    assert len(warned) == 1 and "no local MathJax" in warned[0] and "make mathjax" in warned[0]
