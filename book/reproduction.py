# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Appendix: Paper vs reproduction
#
# Every table, figure and formal statement of the paper, the chapter of this book that
# rebuilds it, and what that chapter found: the paper's number, ours and the difference for
# each compared cell, and a verdict for each of the paper's qualitative claims, computed from
# the 95% interval of its effect (`hardex.paper.stats`): **holds** (the interval lies on the claimed
# side of zero), **does not hold** (entirely on the other side), **inconclusive** (it contains
# zero), **not run** (the runs it needs were not made on this profile, or its chapter did not
# run) or **no verdict (smoke)** (a claim that rests on the smoke profile's tiny models says
# nothing about the paper; its intervals are still computed and shown). Claims that train
# nothing (closed forms, seeded simulations: the theory chapter) get their verdict on every
# profile, smoke included. Each claim names its method: a paired bootstrap over test examples
# (with an exact McNemar test) for one training seed, the seed-level t-interval for several
# (calibrated below), an equivalence test (TOST) within a stated margin, an unpaired interval
# where only aggregate accuracies exist, or "exact" for deterministic facts. Nothing here is typed by hand: the list of items is the registry
# `hardex.paper.report.PAPER_ITEMS` (checked against the paper's list of experiments by the test
# suite), the paper's numbers come from `hardex/paper/paper_results.yaml`, and everything
# else from the ledgers the chapters saved when they ran in this build
# (`hardex.paper.ledger.load_ledgers`). Each row says on which profile and which copy of the data it
# was measured.

# %% [markdown]
# ## Verdicts at a glance
#
# ```{glue:md} verdicts-at-a-glance
# :format: myst
# ```

# %% tags=["parameters"]
# profile: the book's profile; build: how `hardex book` runs the chapter (hardex.book.context: its
# ledger_dir is where this build's chapters saved their ledgers; {} = _executed/ledger)
profile = "smoke"
build = {}
overrides = {}

# %%
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from hardex.paper import ledger

from hardex.paper import report
from hardex.book.chapter import GLANCE_KEY, glue_markdown, items_markdown
from hardex.book.context import Context
from hardex.paths import repo_root

pd.set_option("display.max_rows", None)
pd.set_option("display.max_colwidth", None)
pd.set_option("display.precision", 2)
book = Context.from_dict(build)
where = Path(book.ledger_dir) if book.ledger_dir else ledger.default_dir()
ledgers = ledger.load_ledgers(where)
existing = sorted(p.stem for p in (repo_root() / "book").glob("*.py"))
T = report.reproduction_tables(ledgers, existing)
profiles = sorted({led["profile"] for led in ledgers.values()})
here = where.resolve()
shown_where = here.relative_to(repo_root()) if here.is_relative_to(repo_root()) else here.name  # no machine paths
display(Markdown(
    f"This build (profile **{profile}**) found {len(ledgers)} chapter ledger(s) in `{shown_where}`"
    + (f", measured on profile(s) {', '.join(profiles)}" if profiles else "") + "."
    + (" **The ledgers come from different profiles: compare each row with its own profile.**"
       if len(profiles) > 1 else "")
    + (" On the smoke profile only the claims that train nothing (closed forms, seeded simulations) get a verdict."
       if profiles == ["smoke"] else "")))

# %% [markdown]
# ## The paper's items, by chapter
#
# How many of the paper's items each chapter owns (from the registry; this table does not
# depend on what ran).

# %%
# NBVAL_CHECK_OUTPUT
reg = report.paper_items()
kinds = pd.Series([i.split(" ")[0] for i in reg.index]).value_counts()
print(f"{len(reg)} items: " + ", ".join(f"{n} x {k}" for k, n in kinds.items()))
reg.assign(chapter=reg["chapter"].fillna("(none)")).groupby("chapter", sort=False).apply(
    lambda g: ", ".join(g.index), include_groups=False).rename("items").to_frame()

# %% [markdown]
# ## Summary: verdicts per chapter
#
# `state`: whether the chapter ran in this build and on which profile; `items not run`: its
# items with nothing measured (the reason is in the next table); `numbers compared`: cells
# with both the paper's number and ours; then the count of the chapter's claims per verdict.

# %%
T["summary"]

# %% [markdown]
# ## Every item
#
# One row per table, figure and statement of the paper, with the chapter that builds it, the
# key of its numbers in `paper_results.yaml`, its status (or why it was not run), the profile
# and data it was measured on, and the count of its claims per verdict.

# %%
T["items"].reset_index()

# %% [markdown]
# ### Where each item is shown
#
# ```{glue:md} items-shown-in
# :format: myst
# ```

# %% [markdown]
# ## The numbers: paper, ours, difference
#
# Every cell the chapters compared, in percent (ours minus the paper's in `diff`). An empty
# `ours` is a cell that was not run, never a number. `note` says where our measurement
# differs from the paper's (e.g. the robust column's attack).

# %%
cells = T["cells"]
if cells.empty:
    display(Markdown("No chapter recorded a comparison in this build."))
else:
    # a cell recorded under a label naming two items (e.g. "Table 2 / Table 7") is shown once, under its label
    once = cells.drop_duplicates(subset=["label", "chapter", "row", "metric"])
    display(once.drop(columns=["item"]).rename(columns={"label": "item"}).set_index(["item", "row", "metric"]))

# %% [markdown]
# ## What each profile can detect
#
# Stated by each chapter before anything trains: for its main comparisons, the minimum
# detectable effect (MDE, points: the true effect a 95% interval excludes zero for with 80%
# power, `hardex.paper.stats.mde`) on the profile's test examples and training seeds, next to the
# paper's effect; `can confirm` says whether the paper's effect is at least the MDE, i.e.
# whether this profile can confirm the paper at all. For equivalence claims the MDE column is
# the smallest margin the profile can confirm, next to the claim's margin. `discordance` and
# `seed sd` are the stated assumptions behind it.

# %%
power = T["power"]
if power.empty:
    display(Markdown("No chapter recorded a power calculation in this build."))
else:
    display(power.set_index(["chapter", "item"]))

# %% [markdown]
# ## The claims and their verdicts
#
# `effect [95% interval]`: the effect with its interval and unit (a "(90%)" tag marks an
# equivalence test's interval); `examples` and `seeds` what it rests on; `p` the exact McNemar
# p-value where a one-seed paired comparison has one; `method` in a few words (hover for the
# full description).

# %%
claims = T["claims"]
if claims.empty:
    display(Markdown("No chapter recorded a claim in this build."))
else:
    once = claims.drop_duplicates(subset=["label", "chapter", "claim"])
    shown = once.drop(columns=["item"]).rename(columns={"label": "paper"}).reset_index(drop=True)
    display(ledger.VerdictTable(shown[["chapter", "profile", *ledger.VERDICT_COLUMNS]],
                                shown["method (full)"].fillna("").tolist()))

# %% [markdown]
# ## How honest the intervals are with few seeds
#
# A 95% interval read one-sidedly promises a false "holds" in at most 2.5% of comparisons
# whose true effect is 0. With 2-5 training seeds the book's interval is a t-interval over the
# per-seed paired differences (k - 1 degrees of freedom), widened in quadrature by the
# test-set variance the seeds share (`hardex.paper.stats.seed_interval`). The table is its
# calibration by simulation (`hardex.paper.calibration`; stated model: 15% of test examples
# discordant, half of them shared by every seed, each seed's true effect moving with the stated
# sd): the rate of false "holds" in percent, with a 95% interval for the simulation error, per
# number of test examples, seeds and seed-to-seed sd (points). For comparison, the percentile
# hierarchical bootstrap the book used before, and one seed with the quick profile's *stated*
# seed sd of 0.5 points, which keeps the promise only while the true spread is no larger.
# Regenerate with `python -m hardex.paper.calibration` (a few minutes); `tests/test_stats.py`
# recomputes cells of it and checks the promise.

# %%
from hardex.paper import calibration

cal = calibration.load()
display(Markdown(f"Settings: {', '.join(f'{k} {v}' for k, v in cal['settings'].items())}; made by "
                 f"`{cal['generated by']}` in {cal['wall_s'] / 60:.0f} minutes."))
with pd.option_context("display.max_colwidth", None):
    display(calibration.frame(cal))

# %% [markdown]
# ## In short

# %%
items, summary = T["items"], T["summary"]
n_run = int((~items["status"].str.startswith("not run")).sum())
counts = {v: int(summary[v].sum()) for v in ledger.VERDICTS}
reasons = items.loc[items["status"].str.startswith("not run"), "status"].str.removeprefix("not run: ").value_counts()
SHORT = (
    f"Of the paper's {len(items)} items, **{n_run}** were built in this build and **{len(items) - n_run}** were not. "
    f"Claims: " + ", ".join(f"**{n}** {v}" for v, n in counts.items()) + ". "
    + ("Why items were not run: " + "; ".join(f"{r} ({n})" for r, n in reasons.items()) + "." if len(reasons) else ""))
display(Markdown(SHORT))


# %% tags=["remove-input"]
# the verdicts at a glance (pasted under the title): the short answer, per profile when ledgers of several exist
per_profile = [f"Profile `{p}`: " + ", ".join(f"{int((claims['profile'] == p).mul(claims['verdict'] == v).sum())} {v}"
                                           for v in ledger.VERDICTS) for p in profiles] if not claims.empty else []
glue_markdown(GLANCE_KEY, SHORT + ("\n\n" + "\n".join(f"- {line}" for line in per_profile) if len(profiles) > 1 else ""))
glue_markdown("items-shown-in", items_markdown(T["items"]))
