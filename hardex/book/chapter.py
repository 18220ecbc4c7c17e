"""What every chapter of the book does first and last, so the notebooks hold only their science.

``setup(globals(), "dpls", details=...)`` at the top of a chapter reads its parameters (``P``:
the profile's files and the notebook's ``overrides``, validated by the experiment's model,
:mod:`hardex.experiments.params`) and the build context (``book``, :class:`hardex.book.context.Context`:
the chapter trains, evaluates and saves its ledger only through it), opens the chapter's
:class:`~hardex.paper.ledger.Ledger` and shows the profile box (profile, data, model,
schedule, seeds; every parameter folded below it). ``note(...)`` keeps what belongs to one build only (wall times, run hashes) out of
the prose: ``finish(led)`` at the end shows the notes in a collapsed "Build details" box and
glues the chapter's verdicts at a glance (MyST-NB ``glue``, key :data:`GLANCE_KEY`), which the
chapter pastes under its title with

    ```{glue:md} verdicts-at-a-glance
    :format: myst
    ```

MyST-NB collects a notebook's glued outputs before it renders any cell, so the paste may
come before the glue. :func:`landing` writes the landing page's "does the paper hold?"
section from every saved ledger, one block per profile.

The summaries read a claim's ``item``, ``claim``, ``verdict`` and ``evidence`` and, where a
claim has them, its statistics (``effect``, ``lo``, ``hi``, ``level``, ``unit``, ``n``,
``seeds``, ``p``, ``method``): the effect with its interval and unit, examples and seeds, a
p-value only where it is one, the method as a numbered footnote under the table.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple

from hardex.book.context import Context
from hardex.paper.ledger import FAILS, HOLDS, NO_VERDICT, NOT_RUN, VERDICTS, Ledger, banner, data_label, label_eps
from hardex.paths import repo_root

GLANCE_KEY = "verdicts-at-a-glance"
# MyST-NB's glue: an output whose mime types carry this prefix is not shown where it is made.
_GLUE_PREFIX = "application/papermill.record/"
_MARK = {HOLDS: "✅ holds", FAILS: "❌ does not hold", NOT_RUN: "➖ not run", NO_VERDICT: "⚪ no verdict (smoke)",
         "inconclusive": "❔ inconclusive"}
_NOTES: list[str] = []  # this kernel's build notes (one chapter per kernel)


class Setup(NamedTuple):
    P: Any  # the chapter's parameters (a hardex.experiments.params.ChapterParams)
    SMOKE: bool  # no verdict from training: the smoke profile or a CPU rehearsal
    SMOKE_TAG: str  # " (smoke results)", " (CPU rehearsal results)" or ""
    DATA_LABEL: str
    led: Ledger
    book: Context


# ------------------------------------------------------------------------------------------
# the top of a chapter

def setup(g: Mapping[str, Any], chapter: str, details: str = "", data: str | None = None,
          smoke_caveat: str = "", show: bool = True) -> Setup:
    """The chapter's shared opening: ``P, SMOKE, SMOKE_TAG, DATA_LABEL, led, book``.

    ``g`` is the notebook's ``globals()`` after its parameters cell (``profile``, ``build``,
    ``overrides``); ``data`` names the data where the chapter has no baseline (theory);
    ``details`` (Markdown) says what else the reader needs to know about the setting."""
    from hardex.book.sources import load_params

    profile = g["profile"]
    book = Context.from_dict(g.get("build"))
    P = load_params(profile, chapter, Path(book.project) if book.project else None, g.get("overrides") or None)
    smoke = profile == "smoke" or book.rehearsal  # a CPU rehearsal's numbers mean nothing either
    base = getattr(P, "baseline", None)
    label = data if data is not None else data_label(base.dataset)
    led = Ledger(chapter, profile, label, rehearsal=book.rehearsal, directory=book.ledger_dir)
    _NOTES.clear()
    if show:
        show_profile(P, led, details, smoke_caveat)
    tag = " (CPU rehearsal results)" if profile != "smoke" and smoke else " (smoke results)" if smoke else ""
    return Setup(P, smoke, tag, label, led, book)


def show_profile(P: Any, led: Ledger, details: str = "", smoke_caveat: str = "") -> None:
    """Display the profile box (for chapters whose details are known only after ``setup``)."""
    from IPython.display import HTML, display

    display(HTML(profile_box(P, led.chapter, led.data, details, smoke_caveat, rehearsal=led.rehearsal)))


def _inline_md(text: str) -> str:
    """The little Markdown the chapters' details use (`code`, **bold**), as HTML."""
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k}: {_value(x)}" for k, x in v.items()) + "}"
    return str(v)


def profile_box(P: Any, chapter: str, data: str, details: str = "", smoke_caveat: str = "",
                rehearsal: bool = False) -> str:
    """The compact profile box (HTML): profile, data, model, schedule, seeds, then every
    parameter of the chapter (dotted keys, as in its parameter files) in a folded list."""
    from hardex.experiments.params import flat

    profile = P.profile
    b = getattr(P, "baseline", None)
    rows: list[tuple[str, str]] = [("profile", f"<code>{html.escape(profile)}</code>")]
    sample = b.train_subset if b is not None else 0
    rows.append(("data", html.escape(data) + (f", a class-balanced sample of {sample:,} training images" if sample else "")))
    if b is not None:
        rows.append(("model", f"<code>{html.escape(b.model)}</code>"))
        sched = [f"{b.epochs} epochs"]
        if b.milestones:
            sched.append(f"lr decay after {_value(b.milestones)}")
        sched += [f"difficulty to T = {b.T}", label_eps(float(b.eps))]
        rows.append(("schedule", ", ".join(sched)))
        seeds = [f"seed = {b.seed}"]
        t3 = getattr(P, "table3", None)
        if t3 is not None:
            seeds.append(f"table3.seeds = {_value(t3.seeds)}")
        rows.append(("seeds", ", ".join(seeds)))
        rows.append(("device", f"device {html.escape(b.device or 'auto')}, precision {b.precision}"))
    if details:
        rows.append(("setting", _inline_md(details)))
    body = "".join(f"<tr><th style='text-align:left;padding-right:1em;vertical-align:top'>{k}</th><td>{v}</td></tr>"
                   for k, v in rows)
    caveat = ""
    if (profile == "smoke" or rehearsal) and b is not None:  # a chapter that trains (theory and performance do not)
        text = banner(profile, data, 0, "", smoke_caveat, rehearsal=rehearsal)
        start = text.index("**Smoke profile") if profile == "smoke" else text.index("**CPU rehearsal")
        caveat = f"<p style='margin:0.4em 0 0 0'>{_inline_md(text[start:])}</p>"
    values = flat(P)
    params = ""
    if values:
        items = "".join(f"<tr><td><code>{html.escape(k)}</code></td><td><code>{html.escape(_value(v))}</code></td></tr>"
                        for k, v in values.items())
        params = (f"<details><summary>All {len(values)} parameters (<code>params/{html.escape(profile)}/profile.yaml"
                  f"</code> and <code>{html.escape(chapter)}.yaml</code>)</summary><table>{items}</table></details>")
    return ("<div class='hardex-profile' style='border:1px solid #ccc;border-left:4px solid #4a7ab5;"
            "padding:0.5em 0.8em;margin:0.5em 0;font-size:0.9em'>"
            f"<table style='margin:0'>{body}</table>{caveat}{params}</div>")


def note(text: str) -> None:
    """Keep a line that belongs to this build only (a wall time, run hashes) for the
    collapsed "Build details" box that :func:`finish` shows."""
    _NOTES.append(str(text))


# ------------------------------------------------------------------------------------------
# headings and links

def _heading_text(title: str) -> str:
    """A heading's text as MyST slugs it: text and inline code, without math or markup."""
    title = re.sub(r"\$[^$]*\$", "", title)
    title = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)
    return title.replace("`", "").replace("**", "").replace("*", "")


def slugify(text: str) -> str:
    try:
        from myst_parser.mdit_to_docutils.base import default_slugify
    except ImportError:  # the same rule as MyST's (GitHub's)
        return re.sub(r"[^\w\- ]", "", text.lower().replace(" ", "-"))
    return default_slugify(text)


@dataclass(frozen=True)
class Heading:
    level: int
    title: str
    slug: str


def headings(chapter: str, root: Path | None = None, max_level: int = 3) -> list[Heading]:
    """The headings of ``book/<chapter>.py``'s Markdown cells with their MyST anchors."""
    path = (root or repo_root()) / "book" / f"{chapter}.py"
    out: list[Heading] = []
    seen: set[str] = set()
    in_md = False
    for line in path.read_text().splitlines() if path.exists() else []:
        if line.startswith("# %%"):
            in_md = "[markdown]" in line
            continue
        m = re.match(r"^# (#{1,6}) (.+?)\s*$", line) if in_md else None
        if not m or len(m.group(1)) > max_level:
            continue
        base = slug = slugify(_heading_text(m.group(2)))
        i = 1
        while slug in seen:
            slug, i = f"{base}-{i}", i + 1
        seen.add(slug)
        out.append(Heading(len(m.group(1)), m.group(2), slug))
    return out


def section_for(item: str, hs: list[Heading]) -> Heading | None:
    """The first section (level 2 or 3) whose heading names one of the paper items ``item``
    names; else the chapter's "Verdicts" section."""
    from hardex.paper.report import refs

    wanted = refs(item)
    for ref in wanted:
        for h in hs:
            if h.level >= 2 and ref in refs(h.title):
                return h
    return next((h for h in hs if h.title.lower().startswith("verdicts") and h.slug != GLANCE_KEY), None)


# ------------------------------------------------------------------------------------------
# verdicts at a glance

def _cell(text: Any) -> str:
    s = _value(text) if not isinstance(text, str) else text
    s = " ".join(s.split())
    return s.replace("|", "\\|").replace("<", "&lt;").replace("*", "\\*").replace("$", "\\$")


_SUP = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def _marker(i: int) -> str:
    """The i-th footnote marker (1-based): ¹, ², ... ¹⁰."""
    return str(i).translate(_SUP)


def measured_text(claim: Mapping[str, Any]) -> str:
    """What a claim measured, in words a reader scans: the effect with its interval and unit
    (``+2.10 [+0.40, +3.80] points``, an equivalence test's 90% interval tagged), the test
    examples and seeds, and a p-value only where the claim has one (McNemar); ``exact`` for a
    computed fact; "-" for a claim without statistics (not run, or an older ledger)."""
    from hardex.paper.ledger import interval_text, method_short, p_text, p_value

    parts = []
    text = interval_text(claim, unit=True)
    if text != "-":
        parts.append(text)
    elif claim.get("method"):
        parts.append(method_short(claim) or "-")
    n, k = claim.get("n"), claim.get("seeds")
    if isinstance(n, int) and n:
        parts.append(f"{n:,} examples" + (f", {k} seed{'s' if k != 1 else ''}" if isinstance(k, int) and k else ""))
    pv = p_text(p_value(claim))
    if pv:
        parts.append(f"McNemar {pv}")
    return "; ".join(parts) if parts else "-"


def effect_text(claim: Mapping[str, Any]) -> str:
    """:func:`measured_text`, with the method in words after it (for plain-text summaries)."""
    from hardex.paper.ledger import method_short

    m = method_short(claim)
    text = measured_text(claim)
    return text if not m or text.startswith(m) else f"{text} ({m})"


def counts_text(claims: Iterable[Mapping[str, Any]]) -> str:
    from hardex.paper.ledger import INCONCLUSIVE

    claims = list(claims)
    if not claims:
        return "No claim of the paper is judged here."
    n = {v: sum(c.get("verdict") == v for c in claims) for v in VERDICTS}
    other = len(claims) - sum(n.values())
    parts = [f"**{n[HOLDS]} hold{'s' if n[HOLDS] == 1 else ''}**", f"**{n[FAILS]} do{'es' if n[FAILS] == 1 else ''} not hold**"]
    if n[INCONCLUSIVE]:
        parts.append(f"{n[INCONCLUSIVE]} inconclusive")
    parts.append(f"{n[NOT_RUN]} not run")
    if n[NO_VERDICT]:
        parts.append(f"{n[NO_VERDICT]} without a verdict (they rest on smoke-scale training)")
    if other:
        parts.append(f"{other} other")
    return f"{len(claims)} claim{'s' if len(claims) != 1 else ''} of the paper: " + ", ".join(parts) + "."


class _Methods:
    """The methods a table names, numbered in order of first use, for its footnotes."""

    def __init__(self) -> None:
        self.order: list[str] = []

    def mark(self, claim: Mapping[str, Any]) -> str:
        method = " ".join(str(claim.get("method") or "").split())
        if not method:
            return ""
        if method not in self.order:
            self.order.append(method)
        return _marker(self.order.index(method) + 1)

    def footnotes(self) -> list[str]:
        if not self.order:
            return []
        return ["", "<small>Methods: " + "; ".join(f"{_marker(i)} {_cell(m)}" for i, m in enumerate(self.order, 1))
                + ".</small>"]


def _link(c: Mapping[str, Any], hs: list[Heading], link_prefix: str) -> str:
    h = section_for(str(c.get("item", "")), hs)
    return f"[{_cell(_heading_text(h.title))}]({link_prefix}#{h.slug})" if h else ""


def _claims_table(claims: list[Mapping[str, Any]], hs: list[Heading], link_prefix: str,
                  methods: _Methods | None = None) -> list[str]:
    lines = ["| paper | claim | verdict | measured | evidence | shown in |", "|---|---|---|---|---|---|"]
    for c in claims:
        verdict = _MARK.get(c.get("verdict"), _cell(c.get("verdict", "")))
        mark = methods.mark(c) if methods is not None else ""
        lines.append(f"| {_cell(c.get('item', ''))} | {_cell(c.get('claim', ''))} | {verdict} | "
                     f"{_cell(measured_text(c))}{mark} | {_cell(c.get('evidence') or '')} | {_link(c, hs, link_prefix)} |")
    return lines


def glance_markdown(claims: Iterable[Mapping[str, Any]], chapter: str, link_prefix: str = "",
                    root: Path | None = None) -> str:
    """The claims as MyST Markdown: a count per verdict, then a table (where in the paper, the
    claim, the verdict, what was measured (:func:`measured_text`, with a footnote marker for
    its method, the methods listed under the table), the evidence, a link to the section that
    shows it: ``link_prefix`` + ``#slug``); the claims not run here are folded into a dropdown."""
    claims = list(claims)
    hs = headings(chapter, root)
    lines = [counts_text(claims)]
    if not claims:
        return lines[0]
    judged = [c for c in claims if c.get("verdict") != NOT_RUN]
    not_run = [c for c in claims if c.get("verdict") == NOT_RUN]
    if judged:
        methods = _Methods()
        lines += ["", *_claims_table(judged, hs, link_prefix, methods), *methods.footnotes()]
    if not_run:
        lines += ["", f"::::{{dropdown}} {len(not_run)} claim{'s' if len(not_run) != 1 else ''} not run here",
                  *_claims_table(not_run, hs, link_prefix), "::::"]
    return "\n".join(lines)


def glue_markdown(key: str, text: str) -> None:
    """MyST-NB's ``glue(key, Markdown(text), display=False)``, without importing myst_nb."""
    from IPython.display import display

    display({_GLUE_PREFIX + "text/markdown": text, _GLUE_PREFIX + "text/plain": text}, raw=True,
            metadata={"scrapbook": {"name": key, "mime_prefix": _GLUE_PREFIX}})


def glue_figure(key: str, fig) -> None:
    """MyST-NB's ``glue(key, fig, display=False)`` for a matplotlib figure (then closed), for a
    numbered, captioned ``{glue:figure}`` in the Markdown cell that follows."""
    import matplotlib.pyplot as plt
    from IPython import get_ipython
    from IPython.display import display

    shell = get_ipython()
    if shell is None:  # outside a kernel (hardex book's planning pass runs chapters so): no page to glue to
        plt.close(fig)
        return
    data, meta = shell.display_formatter.format(fig)
    plt.close(fig)
    display({_GLUE_PREFIX + k: v for k, v in data.items()}, raw=True,
            metadata={**{_GLUE_PREFIX + k: v for k, v in meta.items()},
                      "scrapbook": {"name": key, "mime_prefix": _GLUE_PREFIX}})


def glue_not_run(key: str, text: str) -> None:
    """Glue a small figure that says ``text`` under ``key``, for a ``{glue:figure}`` whose
    item this profile does not build (the page then still has the figure it names)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 0.8))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    glue_figure(key, fig)


def records_table(records: Iterable[Any]):
    """Where and when each run record was made (``provenance.json``), one row per distinct run:
    its short hash, what it is, device, the date training ended, the code's commit, wall
    minutes, and whether the record is in the run store or among the committed ``results/``."""
    import pandas as pd

    from hardex.runs.describe import describe

    rows, seen = [], set()
    for rec in records:
        h = rec.spec.short_hash
        if h in seen:
            continue
        seen.add(h)
        prov = rec.provenance or {}
        commit = prov.get("git_commit") or "-"
        where = "results/" if "results" in Path(rec.path).parts else "run store"
        rows.append({"run": h[:10], "what": describe(rec.spec), "device": prov.get("device") or "-",
                     "trained": str(prov.get("end") or "-")[:10], "commit": commit[:10] + ("-dirty" if commit.endswith("-dirty") else ""),
                     "wall (min)": round(float(prov.get("wall_s") or 0.0) / 60, 1), "record": where})
    return pd.DataFrame(rows).set_index("run") if rows else pd.DataFrame(columns=["what"])


def build_details_html(notes: Iterable[str]) -> str:
    items = "".join(f"<li>{_inline_md(n)}</li>" for n in notes)
    return ("<details class='hardex-build-details'><summary>Build details (this build only: wall times, "
            f"run hashes)</summary><ul>{items}</ul></details>")


def finish(led: Ledger) -> None:
    """The chapter's last cell: glue its verdicts at a glance and show the build notes."""
    from IPython.display import HTML, display

    glue_markdown(GLANCE_KEY, glance_markdown(led.claims, led.chapter))
    if _NOTES:
        display(HTML(build_details_html(_NOTES)))


# ------------------------------------------------------------------------------------------
# the landing page

PROFILE_NOTE = {
    "smoke": "plumbing only: a tiny CNN for a few epochs on a small sample, so no claim that rests on its training gets "
             "a verdict; the claims that train nothing (closed forms, seeded simulations: the theory chapter) get theirs",
    "quick": "one GPU for ten minutes (`make gpu-check`): Table 3 at eps 8/255 for PGD-AT and Table 1 / Figs. 3-4, "
             "PreActResNet-18 on a 10,000-image sample with a 30-epoch schedule of the paper's shape, one seed",
    "fast": "one GPU, PreActResNet-18, compressed schedules with the paper's shape",
    "paper": "the paper's settings (WRN-28-10, 110/200 epochs)",
}


def _ordered_profiles(ledgers: Mapping[str, Mapping[str, Any]], profile: str, order: list[str]) -> dict[str, list[str]]:
    by_profile: dict[str, list[str]] = {}
    for ch in sorted(ledgers, key=lambda c: order.index(c) if c in order else len(order)):
        by_profile.setdefault(str(ledgers[ch].get("profile")), []).append(ch)
    return {p: by_profile[p] for p in [profile, *sorted(x for x in by_profile if x != profile)] if p in by_profile}


def disagreements(ledgers: Mapping[str, Mapping[str, Any]], profile: str, chapters: Iterable[str],
                  link_base: str = "../_executed/", root: Path | None = None) -> str:
    """The landing page's "Where our checks disagree with the paper" (MyST Markdown): every
    claim whose verdict is "does not hold", with what was measured, its evidence and a link to
    the section that shows it, per profile (this build's first), never mixed."""
    by_profile = _ordered_profiles(ledgers, profile, list(chapters))
    out = []
    for prof, chs in by_profile.items():
        rows = [(ch, c) for ch in chs for c in ledgers[ch].get("claims", []) if c.get("verdict") == FAILS]
        label = ("this build" if prof == profile else "earlier records") + f", profile `{prof}`"
        if not rows:
            out += [f"**{label[0].upper() + label[1:]}**: no claim of the paper gets \"does not hold\".", ""]
            continue
        out += [f"**{label[0].upper() + label[1:]}**: {len(rows)} claim{'s' if len(rows) != 1 else ''} of the paper "
                f"{'do' if len(rows) != 1 else 'does'} not hold.", "",
                "| paper | claim | measured | evidence | shown in |", "|---|---|---|---|---|"]
        methods = _Methods()
        for ch, c in rows:
            hs = headings(ch, root)
            title = next((h.title for h in hs if h.level == 1), ch)
            where = _link(c, hs, f"{link_base}{ch}.ipynb") or f"[{_cell(_heading_text(title))}]({link_base}{ch}.ipynb)"
            out.append(f"| {_cell(c.get('item', ''))} | {_cell(c.get('claim', ''))} | {_cell(measured_text(c))}"
                       f"{methods.mark(c)} | {_cell(c.get('evidence') or '')} | {where} |")
        out += [*methods.footnotes(), ""]
    return "\n".join(out).rstrip() if out else "No chapter has been executed in this build."


def landing(ledgers: Mapping[str, Mapping[str, Any]], profile: str, chapters: Iterable[str],
            link_base: str = "../_executed/", root: Path | None = None) -> str:
    """The landing page's answer to "does the paper hold?" (MyST Markdown): first where our
    checks disagree with the paper (:func:`disagreements`), then, for the profile that built
    the book, every chapter's claims with verdict, what was measured and a link to the section
    that shows it; ledgers of other profiles follow, each under its own label, never mixed."""
    order = list(chapters)
    by_profile = _ordered_profiles(ledgers, profile, order)
    if not by_profile:
        return "No chapter has been executed in this build, so no claim has a verdict yet."
    out = ["### Where our checks disagree with the paper", "",
           "Every claim of the paper whose computed verdict is **does not hold**: the interval of its effect lies "
           "entirely on the other side, or the exact computation contradicts it.", "",
           disagreements(ledgers, profile, order, link_base, root), ""]
    for prof, chs in by_profile.items():
        claims = [c for ch in chs for c in ledgers[ch].get("claims", [])]
        label = ("This build" if prof == profile else "Earlier records") + f", profile `{prof}`"
        out += [f"### {label}", "",
                f"Profile `{prof}`: {PROFILE_NOTE.get(prof, '')}. " + counts_text(claims), ""]
        if prof != profile:
            out += [f"These chapters' records were left by an earlier build on profile `{prof}`; "
                    f"they are not part of the `{profile}` results above.", ""]
        for ch in chs:
            led = ledgers[ch]
            title = next((h.title for h in headings(ch, root) if h.level == 1), ch)
            if led.get("not_run"):  # hardex book's record of a chapter this profile does not run
                out += [f"**[{_cell(_heading_text(title))}]({link_base}{ch}.ipynb)**: not run on profile `{prof}`.", ""]
                continue
            out += [f"**[{_cell(_heading_text(title))}]({link_base}{ch}.ipynb)** (data: {_cell(led.get('data', ''))})", "",
                    glance_markdown(led.get("claims", []), ch, link_prefix=f"{link_base}{ch}.ipynb", root=root), ""]
    return "\n".join(out)


def items_markdown(items, root: Path | None = None) -> str:
    """The appendix's "where each item is shown" (MyST Markdown): one row per paper item (a
    :func:`hardex.paper.report.reproduction_tables` ``items`` table), linked to the section of its
    chapter that names it, with its status."""
    lines = ["| paper item | shown in | status |", "|---|---|---|"]
    cache: dict[str, list[Heading]] = {}
    for item, row in items.iterrows():
        ch = row.get("chapter")
        where = "-"
        status = str(row.get("status", ""))  # a placeholder or "not run on <profile>" page has no sections to link
        executed = "no ledger" not in status and not status.startswith("not run on profile")
        if ch and ch != "-" and (root or repo_root()).joinpath("book", f"{ch}.py").exists():
            hs = cache.setdefault(ch, headings(ch, root))
            h = section_for(str(item), hs)
            title = next((x.title for x in hs if x.level == 1), ch)
            where = (f"[{_cell(_heading_text(title))}]({ch}.ipynb)" + (f", [{_cell(_heading_text(h.title))}]({ch}.ipynb#{h.slug})"
                                                                      if h and executed and not h.title.lower().startswith("verdicts")
                                                                      else ""))
        lines.append(f"| {_cell(str(item))} | {where} | {_cell(str(row.get('status', '')))} |")
    return "\n".join(lines)
