"""Every bad input gives one clear line, exit code 2, no traceback, and leaves saved files alone."""
import json
from dataclasses import asdict
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, TINY
from minippo.config import Config
from minippo.extras import launch as train_module

BAD_FLAGS = [
    (["--lr", "0"], "--lr"), (["--lr=-1e-3"], "--lr"), (["--nonsense", "1"], "--nonsense"), (["--batch", "0"], "--batch"),
    (["--iters", "-5"], "--iters"), (["--batch", "64", "--minibatch", "24"], "--minibatch"),
    (["--beta", "-0.1"], "--beta"), (["--temperature", "0"], "--temperature"),
    (["--clip", "1.5"], "--clip"), (["--clip", "0"], "--clip"), (["--lam", "1.2"], "--lam"),
    (["--gamma", "-0.1"], "--gamma"), (["--beta", "nan"], "--beta"), (["--lr", "inf"], "--lr"),
    (["--reward", "kindness"], "--reward"), (["--algo", "dpo"], "--algo"),
    (["--device", "tpu"], "--device"), (["--batch", "many"], "--batch"),
    (["--max-new-tokens", "200"], "--max-new-tokens"), (["--n-head", "3"], "--n-head"),
    (["--bf16", "--device", "cpu"], "--bf16"),
    (["--algo", "reinforce", "--batch", "1", "--minibatch", "1"], "--batch"),
    (["--target-kl", "1", "--kl-horizon", "1"], "--kl-horizon"),        # else beta goes negative
    (["--seed", "99999999999999999999"], "--seed"), (["--d-model", "100000"], "--d-model"),
    (["--n-layer", "1000"], "--n-layer"), (["--batch", "10000000000"], "--batch"),
    (["--pretrain-batch", "10000000000"], "--pretrain-batch"), (["--eval-samples", "999999999"], "--eval-samples"),
    (["--corpus-lines", "999999999999"], "--corpus-lines"), (["--human-eval", "10000000000"], "--human-eval"),
    (["--out", ""], "--out"), (["--lr", "1e400"], "--lr=1e400"),      # what was typed, not inf
]
if not torch.cuda.is_available():
    BAD_FLAGS.append((["--device", "cuda"], "--device"))


def train(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def assert_one_line_error(p, name):
    assert p.returncode == 2, (p.returncode, p.stderr[-1500:])
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0], p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("args,name", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flag(tmp_path, capsys, args, name):
    """In-process for speed: train.main as the command line calls it."""
    try:
        code = train_module.main(["--out", str(tmp_path / "out"), *args])
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and name in err, err
    assert not (tmp_path / "out").exists()                  # nothing was created


@pytest.mark.parametrize("args,name", [BAD_FLAGS[i] for i in (0, 12, 14, 17)])
def test_bad_flag_from_the_shell(tmp_path, args, name):
    p = train("--out", str(tmp_path / "out"), *args)
    assert_one_line_error(p, name)
    assert not (tmp_path / "out").exists()


def in_process(capsys, *args):
    """train.main exactly as the command line calls it, without starting a new interpreter."""
    try:
        code = train_module.main(list(args))
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    return err


def test_bad_data_files(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("\n \n")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ol\xe9\n".encode("latin-1") * 50)
    (tmp_path / "short.txt").write_text("one two three.\n")
    cases = {"empty.txt": "empty", "latin1.txt": "not UTF-8", "short.txt": "too short"}
    for name, why in cases.items():
        err = in_process(capsys, "--out", str(tmp_path / "out"), "--data", str(tmp_path / name))
        assert "--data" in err and why in err
    p = train("--out", str(tmp_path / "out"), "--data", str(tmp_path / "missing.txt"))
    assert_one_line_error(p, "--data")
    assert "no such file" in p.stderr
    assert not (tmp_path / "out").exists()


def test_prompt_outside_the_vocabulary(tmp_path, capsys):
    (tmp_path / "prompts.txt").write_text("the food\nthe Zebra\n")
    err = in_process(capsys, "--out", str(tmp_path / "out"), "--prompts", str(tmp_path / "prompts.txt"))
    assert "--prompts" in err and "'Z'" in err


def test_existing_run_is_never_overwritten(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    files = {"metrics.jsonl": '{"iter": 1}\n', "config.json": "{}", "checkpoint.pt": "x"}
    for name, text in files.items():
        (out / name).write_text(text)
    p = train("--out", str(out))
    assert_one_line_error(p, "--out")
    assert "--resume" in p.stderr and "--force" in p.stderr
    assert {f.name: f.read_text() for f in out.iterdir()} == files


def test_resume_refuses_other_settings_and_missing_runs(tmp_path, capsys):
    assert "--resume" in in_process(capsys, "--resume", str(tmp_path / "nothing"))
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({**asdict(Config()), "out": str(out), "lr": 0.001}))
    err = in_process(capsys, "--resume", str(out))
    assert "--resume" in err and "--lr" in err


def test_corrupt_cached_reference(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "reference.pt").write_bytes(b"\x80\x02garbage")
    p = train("--out", str(out))
    assert_one_line_error(p, "reference.pt")
    assert (out / "reference.pt").read_bytes() == b"\x80\x02garbage"


def test_resume_refuses_an_optimizer_state_that_does_not_fit(reference, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    state["optimizer"] = {"state": {}, "param_groups": [{"lr": 0.001}]}    # torch.optim's layout
    torch.save(state, out / "checkpoint.pt")
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    err = in_process(capsys, "--resume", str(out), *TINY, "--iters", "14")
    assert "checkpoint.pt" in err and "optimizer state" in err
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
