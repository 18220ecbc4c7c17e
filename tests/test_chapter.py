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


def test_glance_reads_claims_generically_and_links_sections():
    old = {"item": "Table 3 (cifar10, eps 8/255)", "claim": "DPLS | helps", "verdict": NO_VERDICT, "evidence": "A3: 1 vs 2"}
    new = {"item": "Fig. 9", "claim": "gap shrinks", "verdict": "holds", "evidence": "e",
           "effect": 0.0123, "interval": [0.001, 0.02], "method": "paired bootstrap", "n": 300}
    text = chapter.glance_markdown([old, new, {"item": "Table 99", "claim": "c", "verdict": NOT_RUN}], "dpls")
    assert text.startswith("3 claims of the paper: **1 holds**, **0 do not hold**, 1 not run, 1 without a verdict")
    rows = text.splitlines()[4:]
    assert "DPLS \\| helps" in rows[0] and "A3: 1 vs 2" in rows[0] and "(#table-3-with-table-9s-factors)" in rows[0]
    assert "+0.0123 95% CI [+0.001, +0.02] (paired bootstrap) n: 300" in rows[1] and "(#fig-9-" in rows[1]
    assert rows[3] == "::::{dropdown} 1 claim not run here"  # folded below the judged ones
    assert "(#verdicts)" in rows[6] and rows[7] == "::::"  # an item no section names: the chapter's verdicts
    assert chapter.glance_markdown([], "dpls") == "No claim of the paper is judged here."


def test_landing_keeps_profiles_apart():
    claim = {"item": "Fig. 9", "claim": "c", "verdict": "holds", "evidence": "e"}
    ledgers = {"dpls": {"chapter": "dpls", "profile": "fast", "data": "CIFAR-10", "claims": [claim]},
               "theory": {"chapter": "theory", "profile": "smoke", "data": "none",
                          "claims": [dict(claim, item="Theorem 2", verdict=NO_VERDICT)]}}
    text = chapter.landing(ledgers, "smoke", ["theory", "dpls"])
    this, earlier = text.split("### Earlier records, profile `fast`")
    assert this.startswith("### This build, profile `smoke`") and "theory.ipynb" in this and "dpls.ipynb" not in this
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


def test_effect_text_shows_a_stats_interval_as_an_interval():
    from hardex.book.chapter import effect_text

    claim = {"item": "Table 3", "claim": "c", "verdict": "holds", "evidence": "", "effect": 2.0, "lo": 0.0,
             "hi": 6.0, "level": 0.95, "method": "paired bootstrap", "n": 50}
    assert effect_text(claim) == "+2 [+0, +6] (95% interval) (paired bootstrap) n: 50"
