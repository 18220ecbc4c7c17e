"""The built book in a real browser (headless Chromium via Playwright): tests/browser_check.py.

Needs a built book (``hardex book``; CI builds it with ``--strict``), Debian's ``chromium``
and the ``playwright`` package; skipped with a one-line reason when one is missing.
"""

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from hardex.paths import repo_root

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HTML = repo_root() / "_build" / "html"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _load_check():
    spec = importlib.util.spec_from_file_location("browser_check", Path(__file__).with_name("browser_check.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules["browser_check"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_book_in_chromium():
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("playwright is not installed (pip install playwright; the test extra)")
    if not Path(CHROMIUM).exists():
        pytest.skip("no chromium (apt-get install chromium)")
    if not (HTML / "index.html").exists():
        pytest.skip("no built book at _build/html (run hardex book first)")
    check = _load_check()
    report = check.check(HTML, repo_root() / "_build" / "screenshots", CHROMIUM)
    print(check.summary(report))
    assert report["chapters"] == len(check.chapter_pages()), report["first_screens"]
    assert report["images"] > 0 and report["internal_links"] > 0
    # offline: formulas typeset by the book's own MathJax, no request leaves the machine
    assert report["formulas"] > 0 and report["typeset"] == report["formulas"] and report["outside_requests"] == 0
    assert not report["failures"], "\n".join(report["failures"])
