"""`hardex book`: parameter validation before execution, failure handling, chapter selection."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hardex.book import sources
from hardex.paths import repo_root

NOTEBOOK = '''\
# %% [markdown]
# # {title}

# %% tags=["parameters"]
profile = "smoke"
build = {{}}
overrides = {{}}

# %%
{body}
'''


def make_project(tmp_path: Path, chapters: dict[str, str], params: dict[str, str] | None = None) -> Path:
    """A project whose chapters are the given code; params/smoke is the checkout's (a chapter
    named as a real one is validated by its model), with ``params`` replacing files."""
    (tmp_path / "book").mkdir()
    shutil.copytree(repo_root() / "params", tmp_path / "params")
    toc = "format: jb-book\nroot: book/intro\nchapters:\n" + "".join(f"  - file: _executed/{c}\n" for c in chapters)
    (tmp_path / "_toc.yml").write_text(toc)
    for name, body in chapters.items():
        (tmp_path / "book" / f"{name}.py").write_text(NOTEBOOK.format(title=name, body=body))
    for name, text in (params or {}).items():
        (tmp_path / "params" / "smoke" / f"{name}.yaml").write_text(textwrap.dedent(text))
    return tmp_path


def run_cli(root: Path, *args: str):
    return subprocess.run([sys.executable, "-m", "hardex.cli", "book", "--root", str(root), "--no-html", "--quiet",
                           "--no-plan", *args], capture_output=True, text=True)


DPLS = (repo_root() / "params" / "smoke" / "dpls.yaml").read_text()


@pytest.mark.parametrize(
    "file, text, message",
    [
        ("dpls", DPLS + "typo: 1\n", "params/smoke/dpls.yaml: unknown block 'typo'"),
        ("dpls", DPLS.replace("  prune_fraction: 0.1\n", ""), "params/smoke/dpls.yaml: missing key 'table3.prune_fraction'"),
        ("dpls", DPLS.replace("seeds: [0]", "seeds: [zero]"), "params/smoke/dpls.yaml: key 'table3.seeds[0]' has str"),
        ("dpls", DPLS.replace("enabled: true", "enabled: 1"), "params/smoke/dpls.yaml: key 'fig9.enabled' has int 1"),
        ("profile", (repo_root() / "params" / "smoke" / "profile.yaml").read_text().replace("  epochs: 5\n", "  epochs: five\n", 1),
         "params/smoke/profile.yaml: key 'baseline.epochs' has str 'five'"),
    ],
)
def test_bad_params_fail_before_execution_with_one_line(tmp_path, file, text, message):
    # The chapter would create a file if it ran; it must not run.
    root = make_project(tmp_path, {"dpls": "open('RAN', 'w').close()"}, {file: text})
    result = run_cli(root)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (root / "RAN").exists()


def test_failing_chapter_stops_build_and_keeps_others(tmp_path):
    root = make_project(tmp_path, {"ok": "print('fine', profile)", "bad": "raise RuntimeError('boom in chapter')",
                                   "later": "print(1)"})
    result = run_cli(root)
    assert result.returncode == 1
    assert "boom in chapter" in result.stderr and "RuntimeError" in result.stderr
    out = root / "_executed"
    assert (out / "ok.ipynb").exists() and (out / "bad.failed.ipynb").exists()
    assert not (out / "bad.ipynb").exists() and not (out / "later.ipynb").exists()
    assert "[1/3] ok done" in result.stdout


def test_unknown_chapter_and_profile(tmp_path):
    root = make_project(tmp_path, {"a": "pass"})
    result = run_cli(root, "--chapters", "nope")
    assert result.returncode == 2 and "unknown chapter 'nope'" in result.stderr
    with pytest.raises(sources.ParamsError, match="unknown profile"):
        sources.load_params("huge", "dpls", root)


def test_every_shipped_params_file_validates():
    root = repo_root()
    for chapter in sources.toc_chapters(root):
        for profile in sources.PROFILES:
            if sources.not_run_reason(profile, chapter.name, root) is None:  # quick runs three chapters
                sources.load_params(profile, chapter, root)


def test_a_build_leaves_the_environment_as_it_found_it(tmp_path):
    """Modes travel as the chapters' ``build`` parameter, not through environment variables: the
    calling process's environment is the same after a build (render-only and rehearsal included)."""
    from hardex.book import build

    root = make_project(tmp_path, {"a": "print(build)"})
    before = dict(os.environ)
    assert build.build("smoke", html=False, root=root, progress=False, render_only=True, rehearsal=True,
                       runs=tmp_path / "runs", device="cpu") == 0
    assert build.build("smoke", html=False, root=root, progress=False, plan=True, runs=tmp_path / "runs") == 0
    assert dict(os.environ) == before
    import nbformat

    nb = nbformat.read(root / "_executed" / "a.ipynb", as_version=4)
    injected = next(c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert '"ledger_dir"' in injected.source and '"runs"' in injected.source


def test_executed_notebook_is_tagged_for_reading(tmp_path):
    """The parameters cells (the chapter's and papermill's injected one) are removed from the
    page; other code cells fold their source unless the chapter tagged them."""
    import nbformat

    root = make_project(tmp_path, {"a": "print(profile)"})
    assert run_cli(root).returncode == 0
    nb = nbformat.read(root / "_executed" / "a.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    by_role = {("injected" if "injected-parameters" in c.metadata.tags else
                "parameters" if "parameters" in c.metadata.tags else "body"): c.metadata.tags for c in code}
    assert "remove-cell" in by_role["parameters"] and "remove-cell" in by_role["injected"]
    assert by_role["body"] == ["hide-input"]
