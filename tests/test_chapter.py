"""hardex.book.chapter: the chapters' shared setup, verdicts at a glance, the landing page; and the
reader tags `hardex book` puts on executed notebooks."""

import nbformat
import pytest

from hardex.book import execute

from hardex.book import chapter
from hardex.paper.ledger import NO_VERDICT, NOT_RUN


def test_setup_returns_the_names_chapters_use_and_shows_the_profile_box(tmp_path):
    g = {"profile": "smoke", "build": {"ledger_dir": str(tmp_path), "rehearsal": False},
         "overrides": {"baseline": {"dataset": "svhn"}, "table3": {"seeds": [0, 1]}}}
    P, SMOKE, SMOKE_TAG, DATA_LABEL, led, book = chapter.setup(g, "dpls", show=False)
    assert P.baseline.dataset == "svhn" and P.table3.seeds == [0, 1] and P.baseline.model == "tiny_cnn"
    assert SMOKE and SMOKE_TAG == " (smoke results)" and DATA_LABEL == "SVHN"
    assert (led.chapter, led.profile, led.data, led.directory) == ("dpls", "smoke", "SVHN", tmp_path)
    assert book.ledger_dir == str(tmp_path) and not book.render_only
    box = chapter.profile_box(P, "dpls", DATA_LABEL, "branch at `T`")
    for text in ("<code>smoke</code>", "SVHN", "<code>tiny_cnn</code>", "5 epochs", "eps 8/255", "seed = 0",
                 "table3.seeds = [0, 1]", "<code>T</code>", "Smoke profile: plumbing only", "All ",
                 "<code>table3.prune_fraction</code>"):
        assert text in box, text
    _, SMOKE, _, label, led, _ = chapter.setup({"profile": "fast"}, "theory", data="no data", show=False)
    assert not SMOKE and label == led.data == "no data"
    _, SMOKE, tag, *_ = chapter.setup({"profile": "quick", "build": {"rehearsal": True}}, "dpls", show=False)
    assert SMOKE and tag == " (CPU rehearsal results)"


def test_glance_is_readable_and_links_sections():
    """The glance table: the effect with its interval and unit, examples and seeds, a p-value
    only where it is one, the method as a numbered footnote; no raw field names."""
    from hardex.paper.ledger import Ledger

    led = Ledger("dpls", "fast", "CIFAR-10")
    led.compare("Fig. 9", "gap shrinks", "1" * 60 + "0" * 40, "1" * 40 + "0" * 60, evidence="e")
    led.compare("Fig. 9", "per seed", ["1" * 60 + "0" * 40] * 3, ["1" * 40 + "0" * 60] * 3)
    led.fact("Table 9", "exact fact", True, "exact (deterministic: closed form or seeded simulation)", "41 of 41")
    old = {"item": "Table 3 (cifar10, eps 8/255)", "claim": "DPLS | helps", "verdict": NO_VERDICT, "evidence": "A3: 1 vs 2"}
    text = chapter.glance_markdown([old, *led.claims, {"item": "Table 99", "claim": "c", "verdict": NOT_RUN}], "dpls")
    assert text.startswith("5 claims of the paper: **3 hold**, **0 do not hold**, 1 not run, 1 without a verdict")
    rows = text.splitlines()[4:]
    assert "DPLS \\| helps" in rows[0] and "A3: 1 vs 2" in rows[0] and "(#table-3-with-table-9s-factors)" in rows[0]
    c = led.claims[0]
    assert f"| {c['effect']:+.2f} [{c['lo']:+.2f}, {c['hi']:+.2f}] points; 100 examples, 1 seed; McNemar p" in rows[1]
    assert "¹ |" in rows[1] and "(#fig-9-" in rows[1]
    assert "+20.00 [" in rows[2] and "100 examples, 3 seeds" in rows[2] and "McNemar" not in rows[2] and "²" in rows[2]
    assert "| exact³ | 41 of 41 |" in rows[3]
    for raw in ("level:", "computed verdict", "direction", "seeds:", "n:"):
        assert raw not in text
    notes = rows[5]
    assert notes.startswith("<small>Methods: ¹ paired bootstrap over test examples") and "² seed-level t-interval" in notes
    assert rows[7] == "::::{dropdown} 1 claim not run here"  # folded below the judged ones
    assert "(#verdicts)" in rows[10] and rows[11] == "::::"  # an item no section names: the chapter's verdicts
    assert chapter.glance_markdown([], "dpls") == "No claim of the paper is judged here."


def test_every_paper_item_links_to_a_section_that_names_it():
    """A verdict's "shown in" link leads to the section whose heading names its item (Theorems 6
    and 7 once fell back to the chapter's verdicts, their section named only Eqs. 8, 9). Figs. 11
    and 12 extend Figs. 3 and 4 in the paper's appendix; the chapter has no section for them."""
    from hardex.paper.report import PAPER_ITEMS, refs

    extensions = {"Fig. 11", "Fig. 12"}
    unnamed = []
    for row in PAPER_ITEMS:
        if not row["chapter"] or row["item"] in extensions:
            continue
        h = chapter.section_for(row["item"], chapter.headings(row["chapter"]))
        if h is None or not set(refs(row["item"])) & set(refs(h.title)):
            unnamed.append((row["chapter"], row["item"], h.title if h else None))
    assert unnamed == []


def test_landing_keeps_profiles_apart_and_leads_with_the_disagreements():
    claim = {"item": "Fig. 9", "claim": "c", "verdict": "holds", "evidence": "e"}
    ledgers = {"dpls": {"chapter": "dpls", "profile": "fast", "data": "CIFAR-10", "claims": [claim]},
               "theory": {"chapter": "theory", "profile": "smoke", "data": "none",
                          "claims": [dict(claim, item="Theorem 2", verdict=NO_VERDICT),
                                     dict(claim, item="Corollary 2", claim="rises iff n^3 <= beta m^3",
                                          verdict="does not hold", evidence="73.2% of 14400 grid points",
                                          method="exact (deterministic: closed form or seeded simulation)")]}}
    text = chapter.landing(ledgers, "smoke", ["theory", "dpls"])
    head, rest = text.split("### This build, profile `smoke`")
    this, earlier = rest.split("### Earlier records, profile `fast`")
    assert head.startswith("### Where our checks disagree with the paper")
    assert "**This build, profile `smoke`**: 1 claim of the paper does not hold." in head
    row = next(line for line in head.splitlines() if line.startswith("| Corollary 2"))
    assert "| exact¹ | 73.2% of 14400 grid points | [Corollary 2: overall standard accuracy](../_executed/theory.ipynb#corollary-2" in row
    assert "**Earlier records, profile `fast`**: no claim of the paper gets" in head
    assert "theory.ipynb" in this and "dpls.ipynb" not in this and "1 does not hold" in this
    assert "../_executed/dpls.ipynb#fig-9-" in earlier and "theory.ipynb" not in earlier
    assert "No chapter has been executed" in chapter.landing({}, "smoke", [])


def test_reader_tags():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("a = 1", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("a = 2", metadata={"tags": ["injected-parameters"]}),
                nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_code_cell("show()", metadata={"tags": ["remove-input", "hide-output"]}),
                nbformat.v4.new_markdown_cell("# t")]
    execute.tag_for_reader(nb)
    tags = [c.metadata.get("tags") for c in nb.cells]
    assert tags == [["parameters", "remove-cell"], ["injected-parameters", "remove-cell"], ["hide-input"],
                    ["remove-input", "hide-output"], []]


@pytest.mark.parametrize("title, slug", [("Table 3 (with Table 9's factors)", "table-3-with-table-9s-factors"),
                                         ("Tables 16 and 17: the smoothing factor λ", "tables-16-and-17-the-smoothing-factor-λ")])
def test_slugs_are_mysts(title, slug):
    assert chapter.slugify(chapter._heading_text(title)) == slug


def test_captioned_table_colours_differences_and_keeps_the_numbers_as_text():
    from hardex.paper.report import captioned, compare

    t = compare({"a": {"std": 0.5, "pgd": 0.3}}, {"a": {"std": 48.0, "pgd": 33.0}, "b": {"std": 40.0, "pgd": 20.0}})
    shown = captioned(t, "Table 3, CIFAR-10, eps 8/255: the paper and ours", "table-3-x")
    html = shown._repr_html_()
    assert html.startswith('<div id="table-3-x"') and "<caption>Table 3, CIFAR-10, eps 8/255" in html
    assert "rgba(46, 160, 67" in html and "rgba(207, 34, 46" in html  # +2.0 green, -3.0 red
    assert "not run" in html  # row b: ours missing
    assert html == captioned(t, "Table 3, CIFAR-10, eps 8/255: the paper and ours", "table-3-x")._repr_html_()
    assert repr(shown).splitlines()[0].startswith("Table 3") and "48.0" in repr(shown)


def test_glue_figure_outside_a_kernel_closes_the_figure_and_glues_nothing(capsys):
    # hardex book's planning pass runs chapter code in a plain Python process (no IPython shell)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hardex.book.chapter import glue_figure

    fig = plt.figure()
    glue_figure("fig-x", fig)
    assert not plt.fignum_exists(fig.number) and capsys.readouterr().out == ""


def test_measured_text_reads_older_ledgers_and_other_units():
    from hardex.book.chapter import effect_text, measured_text

    claim = {"item": "Table 3", "claim": "c", "verdict": "holds", "evidence": "", "effect": 2.0, "lo": 0.0,
             "hi": 6.0, "level": 0.95, "method": "paired bootstrap", "n": 50}  # an older ledger: no unit, no short name
    assert measured_text(claim) == "+2.00 [+0.00, +6.00] points; 50 examples"
    assert effect_text(claim) == "+2.00 [+0.00, +6.00] points; 50 examples (paired bootstrap)"
    el2n = dict(claim, effect=0.0123, lo=0.004, hi=0.02, unit="EL2N", level=0.9, n=None, p=1.0)
    assert measured_text(el2n) == "+0.0123 [+0.004, +0.02] EL2N (90%)"  # a p that is no McNemar p is not shown
    assert measured_text({"item": "x", "claim": "c", "verdict": "not run"}) == "-"
