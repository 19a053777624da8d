"""Every bad input gives one clear line, exit code 2, no traceback, and leaves saved files alone."""
import json
import subprocess
import sys

import pytest
import torch

from conftest import ROOT
from minippo.config import Config
import train as train_module

BAD_FLAGS = [
    (["--lr", "0"], "--lr"), (["--lr=-1e-3"], "--lr"), (["--nonsense", "1"], "--nonsense"), (["--batch", "0"], "--batch"),
    (["--iters", "-5"], "--iters"), (["--batch", "64", "--minibatch", "24"], "--minibatch"),
    (["--beta", "-0.1"], "--beta"), (["--temperature", "0"], "--temperature"),
    (["--clip", "1.5"], "--clip"), (["--clip", "0"], "--clip"), (["--lam", "1.2"], "--lam"),
    (["--gamma", "-0.1"], "--gamma"), (["--beta", "nan"], "--beta"), (["--lr", "inf"], "--lr"),
    (["--reward", "kindness"], "--reward"), (["--algo", "dpo"], "--algo"),
    (["--device", "tpu"], "--device"), (["--batch", "many"], "--batch"),
    (["--max-new-tokens", "200"], "--max-new-tokens"), (["--n-head", "3"], "--n-head"),
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


@pytest.mark.parametrize("args,name", [BAD_FLAGS[i] for i in (0, 3, 6, 8, 12, 15, 16)])
def test_bad_flag_from_the_shell(tmp_path, args, name):
    p = train("--out", str(tmp_path / "out"), *args)
    assert_one_line_error(p, name)
    assert not (tmp_path / "out").exists()


def test_bad_data_files(tmp_path):
    (tmp_path / "empty.txt").write_text("\n \n")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 ol\xe9\n".encode("latin-1") * 50)
    (tmp_path / "short.txt").write_text("one two three.\n")
    cases = {"missing.txt": "no such file", "empty.txt": "empty", "latin1.txt": "not UTF-8",
             "short.txt": "too short"}
    for name, why in cases.items():
        p = train("--out", str(tmp_path / "out"), "--data", str(tmp_path / name))
        assert_one_line_error(p, "--data")
        assert why in p.stderr


def test_prompt_outside_the_vocabulary(tmp_path):
    (tmp_path / "prompts.txt").write_text("the food\nthe Zebra\n")
    p = train("--out", str(tmp_path / "out"), "--prompts", str(tmp_path / "prompts.txt"))
    assert_one_line_error(p, "--prompts")
    assert "'Z'" in p.stderr


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


def test_resume_refuses_other_settings_and_missing_runs(tmp_path):
    p = train("--resume", str(tmp_path / "nothing"))
    assert_one_line_error(p, "--resume")
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({**Config().to_dict(), "lr": 0.001}))
    p = train("--resume", str(out))
    assert_one_line_error(p, "--resume")
    assert "--lr" in p.stderr


def test_corrupt_cached_reference(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "reference.pt").write_bytes(b"\x80\x02garbage")
    p = train("--out", str(out))
    assert_one_line_error(p, "reference.pt")
    assert (out / "reference.pt").read_bytes() == b"\x80\x02garbage"
