"""Check the built book (``_build/html``) in a real browser: headless Chromium through Playwright.

    python tests/browser_check.py [_build/html] [--screenshots _build/screenshots] [--chromium /usr/bin/chromium]

The pages are served over HTTP from a local thread (as a reader's server would) and each is
loaded in Chromium, offline: every request for anything but the local server is counted and
aborted, and the book fails when there is one (it must render on an air-gapped machine:
MathJax comes from its own ``_static/mathjax``, :mod:`hardex.book.mathjax`). A page fails when
it logs a console error or an uncaught exception, when a request for one of the book's own
files fails, when an image it shows is missing, empty or does not decode, when one of its
links to the book points at a missing page or a missing anchor, or when a formula is not
typeset (every Sphinx ``.math`` element must hold MathJax's output, ``mjx-container``, and
no ``mjx-merror``); the theory chapter must show formulas. Each chapter's first screen (1400x900, not scrolled) must show the chapter's title and
the start of its verdicts at a glance (the section MyST-NB renders from the pasted glue) and
no code cell's source; a screenshot of it is written to ``--screenshots/<chapter>.png``, and
of the theory chapter's verdicts at a glance to ``theory-verdicts.png``.

Playwright drives the system browser (``executable_path``): it cannot download its own here.
Prints one summary line (counts and wall time) and, with ``--json``, the whole report; exits
1 when anything failed.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from hardex.book.sources import EXECUTED_DIR, toc_chapters

VIEWPORT = {"width": 1400, "height": 900}
GLANCE_ID = "verdicts-at-a-glance"
ROOT = Path(__file__).resolve().parent.parent


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no access log on stderr
        pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # a browser closing a connection early is not an error
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def serve(directory: Path) -> tuple[ThreadingHTTPServer, str]:
    server = _Server(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def chapter_pages(root: Path = ROOT) -> dict[str, str]:
    """Chapter name -> page (relative to the HTML folder), in the order of ``_toc.yml``."""
    return {c.name: f"{EXECUTED_DIR}/{c.name}.html" for c in toc_chapters(root)}


_IDS = re.compile(r"""\b(?:id|name)\s*=\s*["']([^"']+)["']""")


@functools.lru_cache(maxsize=None)
def _ids(path: Path) -> frozenset[str]:
    return frozenset(_IDS.findall(path.read_text(errors="replace")))


def _local(url: str, base: str, html_dir: Path) -> tuple[Path, str] | None:
    """The file and fragment a same-origin URL names; None for other origins."""
    if not url.startswith(base):
        return None
    parts = urlsplit(url)
    rel = unquote(parts.path[len(urlsplit(base).path):])
    path = html_dir / rel
    if not rel or rel.endswith("/"):
        path = path / "index.html"
    return path, unquote(parts.fragment)


def _console(msg, errors: list[str], base: str) -> None:
    """A console error is the book's, except the one Chromium logs for an outside request the
    check itself aborted (that request is counted as such)."""
    if msg.type != "error":
        return
    url = (msg.location or {}).get("url", "")
    if _outside(url) and "Failed to load resource" in msg.text:
        return
    errors.append(f"console {msg.type}: {msg.text}")


def _outside(url: str) -> bool:
    """A request that would leave the machine (any scheme with a host that is not local)."""
    parts = urlsplit(url)
    return bool(parts.netloc) and parts.scheme not in ("data", "blob") and parts.hostname not in ("127.0.0.1", "localhost", "::1")


# MathJax's first typesetting is done when its startup promise resolves; then every Sphinx math
# element (inline span / display div, class "math") must hold MathJax's output.
_FORMULAS = """async () => {
    const mj = window.MathJax;
    if (mj && mj.startup && mj.startup.promise) { try { await mj.startup.promise; } catch (e) {} }
    const maths = [...document.querySelectorAll('span.math, div.math')];
    const raw = maths.filter(e => !e.querySelector('mjx-container'));
    return {formulas: maths.length, typeset: maths.length - raw.length, mathjax: !!(mj && mj.version),
            version: mj && mj.version ? mj.version : null, errors: document.querySelectorAll('mjx-merror').length,
            raw: raw.slice(0, 3).map(e => e.textContent.slice(0, 60))};
}"""


def check(html_dir: Path, screenshots: Path | None, chromium: str = "/usr/bin/chromium",
          root: Path = ROOT) -> dict:
    from playwright.sync_api import sync_playwright

    html_dir = html_dir.resolve()
    t0 = time.perf_counter()
    pages = sorted(p.relative_to(html_dir).as_posix() for p in html_dir.rglob("*.html")
                   if not p.relative_to(html_dir).parts[0].startswith("_") or p.relative_to(html_dir).parts[0] == "_executed")
    chapters = chapter_pages(root)
    failures: list[str] = []
    outside: list[str] = []  # requests that would have left the machine (aborted)
    math: dict[str, dict] = {}  # page -> its formulas, where it has any
    n_images = n_links = n_external = 0
    targets: set[tuple[str, str]] = set()
    firsts: dict[str, dict] = {}
    if screenshots:
        screenshots.mkdir(parents=True, exist_ok=True)
    server, base = serve(html_dir)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            context = browser.new_context(viewport=VIEWPORT)

            def offline(route, request):
                if _outside(request.url):
                    outside.append(request.url)
                    return route.abort("internetdisconnected")
                return route.continue_()

            context.route("**/*", offline)
            for rel in pages:
                page = context.new_page()
                errors: list[str] = []
                page.on("console", lambda m, e=errors: _console(m, e, base))
                page.on("pageerror", lambda exc, e=errors: e.append(f"uncaught: {exc}"))
                page.on("requestfailed", lambda r, e=errors: e.append(f"request failed: {r.url} ({r.failure})")
                        if r.url.startswith(base) else None)
                page.on("response", lambda r, e=errors: e.append(f"HTTP {r.status}: {r.url}")
                        if r.url.startswith(base) and r.status >= 400 else None)
                page.goto(base + rel, wait_until="load")
                page.wait_for_load_state("networkidle")
                formulas = page.evaluate(_FORMULAS)
                failures += [f"{rel}: {e}" for e in errors]
                if formulas["formulas"]:
                    math[rel] = formulas
                    if formulas["typeset"] < formulas["formulas"]:
                        failures.append(f"{rel}: {formulas['formulas'] - formulas['typeset']} of {formulas['formulas']} "
                                        f"formulas not typeset (MathJax {'loaded' if formulas['mathjax'] else 'missing'}; "
                                        f"e.g. {formulas['raw']})")
                    if formulas["errors"]:
                        failures.append(f"{rel}: {formulas['errors']} formulas with a TeX error (mjx-merror)")

                images = page.eval_on_selector_all(
                    "img", "els => els.map(e => ({src: e.currentSrc || e.src, ok: e.complete && e.naturalWidth > 0}))")
                for img in images:
                    n_images += 1
                    local = _local(img["src"], base, html_dir)
                    if local is None:
                        failures.append(f"{rel}: image from outside the book: {img['src']}")
                    elif not local[0].is_file() or local[0].stat().st_size == 0:
                        failures.append(f"{rel}: image missing or empty: {img['src']}")
                    elif not img["ok"]:
                        failures.append(f"{rel}: image does not decode: {img['src']}")

                for href in page.eval_on_selector_all("a[href]", "els => els.map(e => e.href)"):
                    if not href.startswith(("http:", "https:")):
                        continue  # mailto:, javascript:
                    local = _local(href, base, html_dir)
                    if local is None:
                        n_external += 1
                        continue
                    n_links += 1
                    path, frag = local
                    targets.add((path.as_posix(), frag))
                    if not path.is_file():
                        failures.append(f"{rel}: link to a missing page: {href}")
                    elif frag and path.suffix == ".html" and frag not in _ids(path):
                        failures.append(f"{rel}: link to a missing anchor: {href}")

                name = next((n for n, p in chapters.items() if p == rel), None)
                if name is not None:
                    page.evaluate("window.scrollTo(0, 0)")
                    first = page.evaluate("""([glance, h]) => {
                        const onScreen = e => { if (!e || !e.checkVisibility()) return false;
                            const r = e.getBoundingClientRect(); return r.height > 0 && r.bottom > 0 && r.top < h; };
                        const whole = e => { const r = e.getBoundingClientRect(); return r.top >= 0 && r.bottom <= h; };
                        const title = [...document.querySelectorAll('article h1, main h1')].find(e => e.checkVisibility());
                        const sec = document.getElementById(glance);
                        const summary = sec ? sec.querySelector('p, table') : null;
                        const code = [...document.querySelectorAll('.cell_input, div.cell div.highlight')]
                            .filter(e => !e.closest('.cell_output') && onScreen(e));
                        return {title: title ? title.innerText.replace(/[#¶]/g, '').trim() : null,
                                title_on_screen: !!title && onScreen(title) && whole(title),
                                glance_on_screen: !!sec && onScreen(sec.querySelector('h2') || sec),
                                summary_on_screen: !!summary && onScreen(summary) && summary.getBoundingClientRect().top < h - 20,
                                summary_text: summary ? summary.innerText.slice(0, 160) : null,
                                code_cells_on_screen: code.length};
                    }""", [GLANCE_ID, VIEWPORT["height"]])
                    firsts[name] = first
                    if not first["title_on_screen"]:
                        failures.append(f"{rel}: first screen: no chapter title")
                    if not (first["glance_on_screen"] and first["summary_on_screen"]):
                        failures.append(f"{rel}: first screen: no verdicts at a glance")
                    if first["code_cells_on_screen"]:
                        failures.append(f"{rel}: first screen: {first['code_cells_on_screen']} code cell(s) shown")
                    if screenshots:
                        page.screenshot(path=str(screenshots / f"{name}.png"))
                        if name == "theory" and page.locator(f"#{GLANCE_ID}").count():
                            # the theme's sticky header would cover the table's first rows in an element shot
                            page.add_style_tag(content=".bd-header, .bd-header-article, .skip-link "
                                                       "{ display: none !important; }")
                            page.locator(f"#{GLANCE_ID}").screenshot(path=str(screenshots / "theory-verdicts.png"))
                page.close()
            browser.close()
    finally:
        server.shutdown()
    missing = [n for n, p in chapters.items() if p not in pages]
    failures += [f"{p}: chapter page not built" for p in (chapters[n] for n in missing)]
    theory = chapters.get("theory")
    if theory in pages and theory not in math:
        failures.append(f"{theory}: the theory chapter shows no formula")
    failures += [f"a request would have left the machine: {u}" for u in dict.fromkeys(outside)]
    return {"pages": len(pages), "images": n_images, "internal_links": n_links, "link_targets": len(targets),
            "external_links": n_external, "outside_requests": len(outside),
            "outside_hosts": sorted({urlsplit(u).netloc for u in outside}),
            "formulas": sum(m["formulas"] for m in math.values()), "typeset": sum(m["typeset"] for m in math.values()),
            "pages_with_formulas": len(math), "mathjax": sorted({m["version"] for m in math.values() if m["version"]}),
            "chapters": len(firsts), "first_screens": firsts, "failures": failures,
            "wall_s": round(time.perf_counter() - t0, 1)}


def summary(report: dict) -> str:
    return (f"browser check: {report['pages']} pages, {report['images']} images, {report['internal_links']} internal "
            f"links ({report['link_targets']} distinct targets; {report['external_links']} external links not followed), "
            f"{report['typeset']} of {report['formulas']} formulas typeset on {report['pages_with_formulas']} pages "
            f"(MathJax {', '.join(report['mathjax']) + ', from the book' if report['mathjax'] else 'not loaded'}), {report['outside_requests']} requests "
            f"leaving the machine{' (' + ', '.join(report['outside_hosts']) + ')' if report['outside_hosts'] else ''}, "
            f"{report['chapters']} chapter first screens; {len(report['failures'])} failures; {report['wall_s']} s")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html", nargs="?", default=str(ROOT / "_build" / "html"))
    ap.add_argument("--screenshots", default=str(ROOT / "_build" / "screenshots"))
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--json", action="store_true", help="print the whole report as JSON")
    args = ap.parse_args(argv)
    report = check(Path(args.html), Path(args.screenshots) if args.screenshots else None, args.chromium)
    if args.json:
        print(json.dumps(report, indent=1))
    for f in report["failures"]:
        print("FAIL", f)
    print(summary(report))
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
