"""`hardex train | eval | runs ...` (fake trainer for the mechanics; the real Trainer on a
tiny synthetic image folder for train + eval end to end)."""

from __future__ import annotations

import json

from hardex.cli import main
from hardex.runs.spec import RunSpec
from test_store import FakeTrainer, child_of, needs_trainer, real_spec, spec, tiny_cifar  # noqa: F401

FAKE = "test_store:FakeTrainer"


def test_train_ls_show_export_import_rm_gc(tmp_path, capsys):
    runs, results = tmp_path / "runs", tmp_path / "results"
    s = spec(epochs=2)
    f = tmp_path / "spec.yaml"
    s.to_yaml(f)
    common = ["--runs", str(runs), "--results", str(tmp_path / "none")]
    assert main(["train", str(f), *common, "--quiet", "--trainer", FAKE]) == 0
    out = capsys.readouterr().out
    assert s.short_hash in out and "epochs: 2/2" in out

    child = child_of(s, 1, 0.9)
    (tmp_path / "child.yaml").write_text(child.to_yaml())
    assert main(["train", str(tmp_path / "child.yaml"), *common, "--quiet", "--trainer", FAKE]) == 0
    capsys.readouterr()

    assert main(["runs", "ls", *common]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["hash", "status", "epochs"]
    body = {line.split()[0]: line for line in table[1:]}
    assert set(body) == {s.short_hash, child.short_hash}
    assert "done" in body[s.short_hash] and "2/2" in body[s.short_hash]
    assert f"<-{s.short_hash[:8]}@1" in body[child.short_hash]

    assert main(["runs", "show", s.short_hash[:6], *common]) == 0
    shown = capsys.readouterr().out
    assert "final.json" in shown and "provenance.json" in shown and "clean_acc" in shown

    assert main(["runs", "export", s.short_hash, child.short_hash, "--to", str(results), *common]) == 0
    capsys.readouterr()
    fresh = ["--runs", str(tmp_path / "fresh"), "--results", str(tmp_path / "none")]
    assert main(["runs", "import", str(results), *fresh]) == 0
    assert "2 records imported" in capsys.readouterr().out
    assert main(["runs", "ls", *fresh]) == 0
    assert capsys.readouterr().out.count("done") == 2

    assert main(["runs", "gc", "--dry-run", *common]) == 0
    assert "paths would remove" in capsys.readouterr().out
    assert main(["runs", "rm", child.short_hash, *common]) == 0
    assert not (runs / child.short_hash).exists()


def test_unknown_field_in_spec_file_is_reported(tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text("train: {epochs: 2, model: {name: tiny_cnn}, schedule: {milestones: []}, "
                 "tracking: {until_epoch: 1}}\nevaluaton: {}\n")
    # The CLI turns the spec error into one line on stderr and exit code 2, training nothing.
    assert main(["train", str(f), "--runs", str(tmp_path / "runs"), "--trainer", FAKE]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.yaml: unknown field 'evaluaton'" in err[0]
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@needs_trainer
def test_eval_table_json_cache_and_errors(tmp_path, tiny_cifar, capsys):  # noqa: F811
    runs = tmp_path / "runs"
    s = real_spec()
    f = tmp_path / "spec.yaml"
    s.to_yaml(f)
    common = ["--runs", str(runs), "--results", str(tmp_path / "none")]
    assert main(["train", str(f), *common, "--quiet"]) == 0
    capsys.readouterr()
    args = ["eval", s.short_hash[:8], "--attacks", "pgd2,cw2,fgsm", "--n", "10", "--seed", "1", *common]
    assert main(args) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].startswith("n=10  eps=0.031") and lines[1].split()[:2] == ["attack", "acc"]
    assert [ln.split()[0] for ln in lines[2:6]] == ["clean", "pgd2", "cw2", "fgsm"]
    body = json.loads(out[out.index("{"): out.rindex("}") + 1])
    assert body["n"] == 10 and set(body["robust_acc"]) == {"pgd2", "cw2", "fgsm"} and "per_example" not in body
    assert body["cost"]["pgd2"]["forward"] == 20 and body["which"] == "final" and "saved to" in out
    cached = runs / s.short_hash / "eval" / f"{body['key']}.json"
    assert cached.exists() and "per_example" in json.loads(cached.read_text())
    assert main(args) == 0 and "read from" in capsys.readouterr().out
    # a checkpoint file, full JSON
    assert main(["eval", str(runs / s.short_hash / "best.pt"), "--attacks", "pgd1", "--n", "4", "--json",
                 "--no-masking", *common]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["which"] == "best" and res["masking"] is None and len(res["per_example"]["index"]) == 4
    # clear errors, exit 2, nothing evaluated
    for bad, msg in ((["--attacks", "pgd2,apgd"], "unknown attack 'apgd'; allowed: pgdK, cwK"),
                     (["--eps", "2"], "eps must lie in [0, 1]"),
                     (["--n", "0"], "--n must be >= 1")):
        assert main(["eval", s.short_hash, *bad, *common]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and msg in err[0], err
    assert main(["eval", "deadbeef", *common]) == 2
    assert "unknown run 'deadbeef'" in capsys.readouterr().err


def test_add_cli_registers_commands():
    import argparse

    from hardex.evaluation import cli as eval_cli
    from hardex.runs import cli as runs_cli

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    runs_cli.add_cli(sub)
    eval_cli.add_cli(sub)
    for argv in (["train", "x.yaml"], ["eval", "abc"], ["runs", "ls"], ["runs", "show", "a"], ["runs", "rm", "a"],
                 ["runs", "gc"], ["runs", "export", "a", "--to", "r"], ["runs", "import", "r"]):
        assert callable(parser.parse_args(argv).func), argv
    assert isinstance(RunSpec, type) and FakeTrainer is not None
