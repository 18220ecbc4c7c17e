"""`hardex book`: parameter validation before execution, failure handling, chapter selection."""

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
n = 3
scale = 1.5
name = "x"
flags = [1, 2]

# %%
{body}
'''


def make_project(tmp_path: Path, chapters: dict[str, str], params: dict[str, str]) -> Path:
    (tmp_path / "book").mkdir()
    (tmp_path / "params" / "smoke").mkdir(parents=True)
    toc = "format: jb-book\nroot: book/intro\nchapters:\n" + "".join(f"  - file: _executed/{c}\n" for c in chapters)
    (tmp_path / "_toc.yml").write_text(toc)
    for name, body in chapters.items():
        (tmp_path / "book" / f"{name}.py").write_text(NOTEBOOK.format(title=name, body=body))
    for name, text in params.items():
        (tmp_path / "params" / "smoke" / f"{name}.yaml").write_text(textwrap.dedent(text))
    return tmp_path


GOOD = "n: 4\nscale: 2\nname: y\nflags: [3]\n"


def run_cli(root: Path, *args: str):
    return subprocess.run([sys.executable, "-m", "hardex.cli", "book", "--root", str(root), "--no-html", "--quiet", *args],
                          capture_output=True, text=True)


def test_parameters_cell_is_read(tmp_path):
    root = make_project(tmp_path, {"a": "print(n)"}, {"a": GOOD})
    chapter = sources.toc_chapters(root)[0]
    assert sources.notebook_parameters(chapter.source) == {"profile": "smoke", "n": 3, "scale": 1.5, "name": "x", "flags": [1, 2]}
    assert sources.load_params("smoke", chapter, root) == {"n": 4, "scale": 2, "name": "y", "flags": [3], "profile": "smoke"}


@pytest.mark.parametrize(
    "text, message",
    [
        (GOOD + "typo: 1\n", "params/smoke/a.yaml: unknown key 'typo'"),
        ("n: 4\nscale: 2\nname: y\n", "params/smoke/a.yaml: missing key 'flags'"),
        ("n: four\nscale: 2\nname: y\nflags: [3]\n", "params/smoke/a.yaml: key 'n' has type str"),
        ("n: 4\nscale: 2\nname: y\nflags: [x]\n", "params/smoke/a.yaml: key 'flags[0]' has type str"),
        ("n: true\nscale: 2\nname: y\nflags: [3]\n", "params/smoke/a.yaml: key 'n' has type bool"),
    ],
)
def test_bad_params_fail_before_execution_with_one_line(tmp_path, text, message):
    # The chapter would create a file if it ran; it must not run.
    root = make_project(tmp_path, {"a": "open('RAN', 'w').close()"}, {"a": text})
    result = run_cli(root)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not (root / "RAN").exists()


def test_failing_chapter_stops_build_and_keeps_others(tmp_path):
    root = make_project(tmp_path, {"ok": "print('fine', n)", "bad": "raise RuntimeError('boom in chapter')", "later": "print(1)"},
                        {"ok": GOOD, "bad": GOOD, "later": GOOD})
    result = run_cli(root)
    assert result.returncode == 1
    assert "boom in chapter" in result.stderr and "RuntimeError" in result.stderr
    out = root / "_executed"
    assert (out / "ok.ipynb").exists() and (out / "bad.failed.ipynb").exists()
    assert not (out / "bad.ipynb").exists() and not (out / "later.ipynb").exists()
    assert "[1/3] ok done" in result.stdout


def test_unknown_chapter_and_profile(tmp_path):
    root = make_project(tmp_path, {"a": "pass"}, {"a": GOOD})
    result = run_cli(root, "--chapters", "nope")
    assert result.returncode == 2 and "unknown chapter 'nope'" in result.stderr
    with pytest.raises(sources.ParamsError, match="unknown profile"):
        sources.load_params("huge", sources.toc_chapters(root)[0], root)


def test_every_shipped_params_file_validates():
    root = repo_root()
    for chapter in sources.toc_chapters(root):
        for profile in sources.PROFILES:
            if sources.not_run_reason(profile, chapter, root) is None:  # quick runs two chapters
                sources.load_params(profile, chapter, root)


def test_training_precision_is_one_setting_per_profile():
    """Every chapter that trains reads `precision` and `channels_last`; within a profile they
    agree (so a run shared between chapters has one spec), and GPU profiles use the fast path."""
    root = repo_root()
    for profile in sources.PROFILES:
        seen = {}
        for chapter in sources.toc_chapters(root):
            if sources.not_run_reason(profile, chapter, root) is not None:
                continue
            p = sources.load_params(profile, chapter, root)
            if "device" in p:
                seen[chapter.name] = (p["precision"], p["channels_last"])
        assert len(seen) >= (2 if profile == "quick" else 7), seen
        assert len(set(seen.values())) == 1, (profile, seen)
        expected = ("fp32", False) if profile == "smoke" else ("bf16", True)
        assert set(seen.values()) == {expected}, (profile, seen)


def test_executed_notebook_is_tagged_for_reading(tmp_path):
    """The parameters cells (the chapter's and papermill's injected one) are removed from the
    page; other code cells fold their source unless the chapter tagged them."""
    import nbformat

    root = make_project(tmp_path, {"a": "print(n)"}, {"a": GOOD})
    assert run_cli(root).returncode == 0
    nb = nbformat.read(root / "_executed" / "a.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    by_role = {("injected" if "injected-parameters" in c.metadata.tags else
                "parameters" if "parameters" in c.metadata.tags else "body"): c.metadata.tags for c in code}
    assert "remove-cell" in by_role["parameters"] and "remove-cell" in by_role["injected"]
    assert by_role["body"] == ["hide-input"]
