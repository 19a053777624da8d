"""train.py as a user runs it: a short seeded run learns; Ctrl-C, SIGTERM and --resume are exact; and
the invariants of minippo/extras/files.py hold: a refused input is one line (exit 2) that changes
nothing, a failed write or a broken run is one line (exit 1) that keeps what was saved, one writer
per folder, and nothing the user gave is removed."""
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

from conftest import ROOT, TINY, call, metrics, one_line, run, snapshot, with_reference
from minippo.config import Config
from minippo.extras import files, launch
from minippo.extras.files import Failure, UsageError
from minippo.extras.launch import checked, summary_table
from minippo.extras.runs import Run
from minippo.model import Policy
from minippo.rewards import NO_EOS_PENALTY
from minippo.rollout import score


# one step a batch
TINY_REINFORCE = [a for i, a in enumerate(TINY) if "--minibatch" not in TINY[max(0, i - 1):i + 1]]


def train(capsys, *args):
    return call(launch.main, capsys, *args)


def copy_of(reference, tmp_path, name="run"):
    shutil.copytree(reference, tmp_path / name)
    return tmp_path / name


def summary_of(folder, drop=()):
    return {k: v for k, v in json.loads((folder / "summary.json").read_text()).items() if k not in drop}


# ----------------------------------------------------------------------------- it learns, exactly
def test_short_seeded_run_raises_reward_and_keeps_kl_bounded(reference):
    m = metrics(reference)
    assert len(m) == 12 and [r["iter"] for r in m] == list(range(1, 13))
    first, last = m[0]["reward"], sum(r["reward"] for r in m[-3:]) / 3
    # rewards lie in [-1, 1]: 0.3 is a clear rise, not noise
    assert last > first + 0.3, (first, last)
    assert all(r["kl"] < 10 for r in m)                      # bounded: no runaway from pi_ref
    assert m[0]["approx_kl"] > -1e-3 and m[0]["clipfrac"] < 0.5
    summary = summary_of(reference)
    assert summary["objective_optimal"] >= summary["objective_policy"] - 4 * summary["objective_policy_se"]
    # the gap is n/a (null), not a number, where J* is not trusted: here, at 16 samples a prompt
    assert summary["rl_seconds"] > 0 and summary["optimality_gap"] is None
    assert (reference / "samples.txt").read_text().startswith("iteration 1\n")


def test_same_seed_gives_identical_metrics_and_reinforce_learns(reference, tmp_path):
    out = tmp_path / "again"                    # another folder: pi_ref comes from the cache, as it says
    assert "reusing" in run("--out", out, *TINY, "--iters", "4").stdout
    assert metrics(out) == metrics(reference)[:4]
    out = with_reference(reference, tmp_path, "reinforce")
    run("--out", out, *TINY_REINFORCE, "--iters", "12", "--algo", "reinforce")
    m = metrics(out)
    assert sum(r["reward"] for r in m[-3:]) / 3 > m[0]["reward"] + 0.2
    assert "clipfrac" not in m[0] and "vf_loss" not in m[0]


def test_the_command_runs_the_lesson_s_run_exactly(reference, capsys):
    """python -m minippo (the lesson alone) and train.py with the same settings: the same figures."""
    from minippo.__main__ import main
    tiny = dict(pretrain_steps=250, corpus_lines=4000, batch=32, minibatch=16, eval_samples=16)
    cfg = Config(**tiny, iters=12, lr=1e-3, anneal_lr=False, device="cpu")
    lesson, command = main(cfg), summary_of(reference)
    assert files.finite(lesson) == {k: command[k] for k in lesson}      # (summary.json: NaN as null)


def test_help_lists_every_setting():
    from minippo.extras.cli import build_parser
    out = build_parser().format_help()
    assert all(f"--{f.replace('_', '-')}" in out for f in Config.__dataclass_fields__)


# ----------------------------------------------------------------------------- Ctrl-C, SIGTERM, resume
def signal_when(args, ready, sig=signal.SIGINT):
    """Start train.py, send `sig` once ready(stderr so far) holds (a sign of readiness, not a delay)."""
    p = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *map(str, args)], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = []                                # os.read: what is there now, not a full buffer's worth
    read = lambda: os.read(p.stderr.fileno(), 4096).decode(errors="replace")  # noqa: E731
    threading.Thread(target=lambda: err.extend(iter(read, "")), daemon=True).start()
    while p.poll() is None and not ready("".join(err)):
        time.sleep(0.02)
    p.send_signal(sig)
    p.wait()
    time.sleep(0.1)
    return p.returncode, "".join(err)


def lines(path):
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_ctrl_c_during_rl_saves_and_resume_is_bit_exact(reference, tmp_path):
    """(SIGTERM goes to the same handler: the test after this one sends it.)"""
    out = with_reference(reference, tmp_path, "part")
    args = [*TINY, "--iters", "8", "--ckpt-every", "100"]
    code, err = signal_when(["--out", out, *args], lambda _: lines(out / "metrics.jsonl") >= 3)
    assert code == 130 and "--resume" in err, err[-2000:]
    assert 3 <= len(metrics(out)) < 8
    saved = torch.load(out / "checkpoint.pt", weights_only=True)["rl_seconds"]
    run("--resume", out)                        # alone: the settings come from its config.json
    assert metrics(out) == metrics(reference)[:8]
    assert summary_of(out)["rl_seconds"] > saved


def test_ctrl_c_during_pretraining_stops_at_once_and_writes_no_reference(tmp_path):
    out = tmp_path / "pre"
    args = [*TINY, "--pretrain-steps", "2000", "--iters", "1"]
    code, err = signal_when(["--out", out, *args], lambda e: "pretrain:  " in e and "/2000" in e)
    assert code == 130 and "stopped" in err and "finishing" not in err, err[-2000:]
    assert not (out / "reference.pt").exists() and not [f for f in os.listdir(out) if ".tmp" in f]


def test_a_stop_in_the_last_iteration_saves_and_the_resume_only_evaluates(reference, tmp_path):
    """SIGTERM late: the run is saved (or, during the evaluation, kept), no summary is written, the
    command to continue is printed; --resume then gives exactly the uninterrupted run's summary."""
    out = tmp_path / "late"
    code, err = signal_when(["--out", out, *TINY, "--iters", "12"], lambda _: lines(out / "metrics.jsonl") >= 11,
                            signal.SIGTERM)
    assert code == 130 and "--resume" in err and not (out / "summary.json").exists(), err[-2000:]
    hint = re.search(r"continue with `python train.py (.*?)`", err)[1]     # --resume DIR alone
    assert hint == f"--resume {out}"
    run(*shlex.split(hint))
    assert metrics(out) == metrics(reference)
    drop = ("pretrain_seconds", "rl_seconds")
    assert summary_of(out, drop) == summary_of(reference, drop)


def test_ctrl_c_during_the_final_evaluation_quits_at_once(reference, tmp_path):
    out = tmp_path / "eval"
    code, err = signal_when(["--out", out, *TINY, "--iters", "1", "--eval-samples", "20000"],
                            lambda e: "evaluating against J*" in e)
    assert code == 130 and "stopped" in err and not (out / "summary.json").exists(), err[-1500:]
    assert f"--resume {out}" in err


# ----------------------------------------------------------------------------- refused inputs
BAD_FLAGS = [(shlex.split(args), name) for args, name in (line.split(" | ") for line in """
--lr 0 | --lr
--nonsense 1 | --nonsense
--batch many | --batch
--batch 64 --minibatch 24 | --minibatch
--beta -0.1 | --beta
--beta 1e308 | --beta
--beta nan | --beta
--lr 1e400 | --lr=1e400
--clip 1.5 | --clip
--clip 0 | --clip
--lam 1.2 | --lam
--temperature 0 | --temperature
--temperature 1e-300 | --temperature
--algo ppo --variant dr | --variant
--algo grpo --group 1 | --group
--algo grpo --lam 0.5 | --lam
--algo reinforce --epochs 2 | --epochs
--reward kindness | --reward
--algo dpo | --algo
--device tpu | --device
--max-new-tokens 200 | --max-new-tokens
--n-head 3 | --n-head
--algo reinforce --batch 1 | --batch
--target-kl 1 --kl-horizon 1 | --kl-horizon
--seed 99999999999999999999 | --seed
--d-model 100000 | --d-model
--eval-samples 999999999 | --eval-samples
--out ' ' | --out
--corpus-lines 5 | --corpus-lines
--block-size 4000 --corpus-lines 1000 | --block-size
""".strip().splitlines())] + ([] if torch.cuda.is_available() else [(["--device", "cuda"], "--device")])
# (--lr 1e400: named as typed; --kl-horizon 1: else beta goes negative)


@pytest.mark.parametrize("args, name", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_a_bad_flag_is_one_line_and_creates_nothing(tmp_path, capsys, args, name):
    tiny = TINY_REINFORCE if "reinforce" in args else TINY          # (--iters 1: a miss ends fast)
    code, err = train(capsys, "--out", tmp_path / "out", *tiny, "--iters", "1", *args)
    one_line(code, err, name)
    assert "--data" not in err and not (tmp_path / "out").exists()


def test_a_bad_flag_from_the_shell(tmp_path):
    p = run("--out", tmp_path / "out", "--beta", "nan", check=False)
    one_line(p.returncode, p.stderr, "--beta")


FILES = {"empty.txt": ("\n \n", "empty"), "latin1.txt": ("caf\xe9 ol\xe9\n" * 50, "not UTF-8"),
         "short.txt": ("one two three.\n", "too short"), "missing.txt": (None, "no such file"),
         "folder": ("/", "a folder")}


@pytest.mark.parametrize("name", FILES)
def test_a_bad_data_file_is_named(tmp_path, capsys, name):
    text, why = FILES[name]
    if text == "/":
        (tmp_path / name).mkdir()
    elif text is not None:
        (tmp_path / name).write_bytes(text.encode("latin-1"))
    code, err = train(capsys, "--out", tmp_path / "out", "--data", tmp_path / name)
    one_line(code, err, "--data", why)


@pytest.mark.parametrize("text, words", [("the food\nthe Zebra\n", ["'Z'"]),
                                         ("the food " + "a" * 100_000 + "\n", ["100009 characters"])])
def test_a_bad_prompt_is_named_by_its_file_and_cut_short(tmp_path, capsys, text, words):
    (tmp_path / "p.txt").write_text(text)
    code, err = train(capsys, "--out", tmp_path / "o", "--prompts", tmp_path / "p.txt")
    one_line(code, err, "--prompts", *words)
    assert len(err) < 400


# ----------------------------------------------------------------------------- the run folder
FOREIGN = {"run": ({"metrics.jsonl": '{"iter": 1}\n', "config.json": "{}", "checkpoint.pt": "x"}, [],
                   ["--resume", "--force"]),
           "no-config": ({"summary.json": '{"mine": 1}', "samples.txt": "mine"}, ["--force"],
                         ["--force", "no config.json"]),
           "nothing-to-resume": ({"notes.txt": "mine"}, ["--resume", "{out}"], ["no run to resume"]),
           "corrupt-reference": ({"reference.pt": "\x80\x02garbage"}, [], ["reference.pt", "not a readable"])}
for i, c in enumerate(('{"name": "my web app"}', "not json at all", "[1, 2]", "")):
    FOREIGN[f"foreign-{i}"] = ({"config.json": c, "metrics.jsonl": "theirs\n"}, ["--force"],
                               ["config.json", "not a minippo"])


@pytest.mark.parametrize("contents, flags, words", FOREIGN.values(), ids=FOREIGN)
def test_a_folder_that_is_not_this_run_is_left_exactly_as_it_was(tmp_path, capsys, contents, flags, words):
    out = tmp_path / "theirs"
    out.mkdir()
    for name, text in contents.items():
        (out / name).write_text(text)
    before = snapshot(out)
    code, err = train(capsys, "--out", out, *TINY, *[f.format(out=out) for f in flags])
    one_line(code, err, *words)
    assert snapshot(out) == before


@pytest.mark.parametrize("out", ["{file}", "{file}/sub", "/proc/minippo_out", "x" * 300])
def test_an_out_folder_that_cannot_be_written_is_one_line(tmp_path, capsys, out):
    (tmp_path / "a_file").write_text("not a folder")
    code, err = train(capsys, "--out", out.format(file=tmp_path / "a_file"), *TINY)
    one_line(code, err, "--out")
    assert (tmp_path / "a_file").read_text() == "not a folder"


def test_force_never_removes_an_input_of_the_command(reference, tmp_path, capsys):
    out = copy_of(reference, tmp_path)
    (out / "samples.txt").write_text("the food\nthe staff\n")       # the user's prompts, by that name
    o, p = tmp_path / "o", tmp_path / "p"               # the folder and the prompts, each through a symlink
    o.symlink_to(out)
    p.symlink_to(out / "samples.txt")
    before = snapshot(out)
    code, err = train(capsys, "--out", o, *TINY, "--force", "--prompts", p)
    one_line(code, err, "samples.txt", "input")
    assert snapshot(out) == before


def test_one_writer_per_folder_and_free_again_when_its_holder_dies(reference, tmp_path, capsys):
    out = copy_of(reference, tmp_path)
    before = snapshot(out)
    hold = ("import sys, time; sys.path.insert(0, sys.argv[1]); from minippo.extras import files; "
            "files.lock(sys.argv[2]); files.atomic_write(sys.argv[2] + '/checkpoint.pt', lambda tmp: ("
            "open(tmp, 'w').write('half'), print('held', flush=True), time.sleep(60)))")     # held mid-write
    argv = [sys.executable, "-c", hold, str(ROOT), str(out)]
    holder = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    for flags in (["--force"], ["--resume", str(out)]):
        code, err = train(capsys, "--out", out, *TINY, "--iters", "14", *flags)
        one_line(code, err, f"in use by process {holder.pid}")
    holder.kill()                                      # a killed run leaves no lock behind
    holder.wait()
    assert (out / f"checkpoint.pt.tmp{holder.pid}").read_text() == "half"  # what the kill left
    files.unlock(str(out), files.lock(str(out)))
    assert {k: v for k, v in snapshot(out).items() if k != files.LOCK_NOTE} == before


# ----------------------------------------------------------------------------- what is saved must fit
def tamper(path, change):
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


CHECKPOINT = [
    (lambda s: s.update(iter=-5), "iteration"), (lambda s: s.update(iter="7"), "iteration"),
    (lambda s: s.update(beta=math.nan), "beta"), (lambda s: s.pop("beta"), "beta"),
    (lambda s: s["model"]["lm_head.weight"].__setitem__((0, 0), math.nan), "not finite"),
    (lambda s: s["model"].update({"lm_head.weight": s["model"]["lm_head.weight"][:3]}), "lm_head.weight"),
    (lambda s: s["model"].pop("lm_head.weight"), "lm_head.weight"), (lambda s: s.update(vocab="abc"), "vocab"),
    (lambda s: s["rng"][0].update(torch=torch.zeros(3, dtype=torch.uint8)), "random"),
    (lambda s: s.update(rng=["not a state"]), "random"), (lambda s: s["logs"]["metrics.jsonl"].append(5), "log lines"),
    (lambda s: s.update(rl_seconds="x"), "seconds"),
    (lambda s: s.update(optimizer={"state": {}, "param_groups": [{"lr": 0.001}]}), "optimizer"),
    (lambda s: s.update(iter=13), "--iters=12"), (lambda s: s.update(rng=s["rng"] * 2), "2 processes")]


@pytest.mark.parametrize("change, word", CHECKPOINT, ids=[f"checkpoint-{w}-{i}" for i, (_, w) in enumerate(CHECKPOINT)])
def test_a_checkpoint_that_this_run_would_not_save_is_refused_and_nothing_changes(reference, tmp_path, capsys,
                                                                                 change, word):
    out = copy_of(reference, tmp_path)
    tamper(out / "checkpoint.pt", change)
    before = snapshot(out)
    code, err = train(capsys, "--resume", out, *TINY, "--iters", "12")
    one_line(code, err, word)
    assert snapshot(out) == before and b"\0" not in (out / "metrics.jsonl").read_bytes()


def test_a_resume_goes_on_from_the_saved_beta_seconds_and_logs(reference, tmp_path, capsys):
    """A --target-kl run, its logs cut by a power loss, resumed twice: from the adapted beta saved
    (not --beta), adding its seconds (at least those logged: it saves after) and rewriting the logs."""
    out = with_reference(reference, tmp_path, "kl")
    args = [*TINY, "--target-kl", "1", "--eval-samples", "2"]      # (a quick evaluation)
    assert train(capsys, "--out", out, *args, "--iters", "1")[0] == 0
    logs, samples = (out / "metrics.jsonl").read_text(), (out / "samples.txt").read_text()
    (out / "metrics.jsonl").write_text(logs[:100])                  # a power loss, say
    (out / "samples.txt").unlink()
    for iters in (2, 3):
        saved = torch.load(out / "checkpoint.pt", weights_only=True)
        assert train(capsys, "--resume", out, *args, "--iters", iters)[0] == 0
        m, now = metrics(out, drop=()), torch.load(out / "checkpoint.pt", weights_only=True)
        assert m[-1]["beta"] == saved["beta"] != 0.1 and len(m) == iters
        seconds = summary_of(out)["rl_seconds"]
        assert seconds == now["rl_seconds"] >= saved["rl_seconds"] + m[-1]["seconds"]
    assert (out / "metrics.jsonl").read_text().startswith(logs)
    assert (out / "samples.txt").read_text() == samples


def test_resuming_a_finished_run_keeps_the_seconds_it_measured(reference, tmp_path, capsys):
    out = copy_of(reference, tmp_path)                      # no iteration left: it only evaluates
    assert train(capsys, "--resume", out, *TINY, "--iters", "12")[0] == 0
    was, now = summary_of(reference), summary_of(out)
    assert now["pretrain_seconds"] == was["pretrain_seconds"] > 0
    saved = torch.load(out / "checkpoint.pt", weights_only=True)["rl_seconds"]
    assert now["rl_seconds"] == saved > 0


def infinite_reference(out):
    tamper(out / "reference.pt", lambda s: s["model"]["tok_emb.weight"].__setitem__((1, 1), math.inf))


DAMAGED = {c or "empty": (lambda out, c=c: (out / "config.json").write_text(c), ["config.json"])
           for c in ("{not json", "", "[1, 2, 3]")}
DAMAGED["reference-inf"] = (infinite_reference, ["reference.pt", "not finite"])


@pytest.mark.parametrize("change, words", DAMAGED.values(), ids=DAMAGED)
def test_a_resume_whose_files_were_damaged_is_refused_and_nothing_changes(reference, tmp_path, capsys, change, words):
    out = copy_of(reference, tmp_path)
    change(out)
    before = snapshot(out)
    code, err = train(capsys, "--resume", out, *TINY, "--iters", "14")
    one_line(code, err, *words)
    assert snapshot(out) == before


def test_a_resume_must_repeat_the_run_s_settings(reference, tmp_path, capsys):
    out = copy_of(reference, tmp_path)
    for name, value, saved in [("lr", 0.002, 0.001), ("beta", 0.2, 0.1), ("seed", 1, 0)]:
        code, err = train(capsys, "--resume", out, *TINY, "--iters", "14", f"--{name}", value)
        one_line(code, err, "--resume", f"--{name}={saved}")
    code, err = train(capsys, "--resume", out, "--out", tmp_path / "elsewhere")
    one_line(code, err, "--out", "--resume")


# ----------------------------------------------------------------------------- files.py on its own
class Custom:   # a pickled custom object must never be loaded
    pass


def test_a_file_that_is_not_minippo_s_is_refused_in_one_line(tmp_path):
    files.save({"kind": "rl", "model": {}}, str(tmp_path / "good.pt"))
    (tmp_path / "truncated.pt").write_bytes((tmp_path / "good.pt").read_bytes()[:200])
    (tmp_path / "foreign.pt").write_text("hello, I am a text file")
    torch.save({"kind": "rl", "evil": Custom()}, tmp_path / "pickled.pt")
    names = ["missing.pt", "truncated.pt", "foreign.pt", "pickled.pt", "good.pt"]
    for name, kind in zip(names, ["rl"] * 4 + ["reference"]):
        with pytest.raises(UsageError) as e:
            files.load(str(tmp_path / name), kind)
        assert name in str(e.value) and "\n" not in str(e.value)


def test_json_never_holds_nan(tmp_path):
    files.save_json({"gap": math.nan, "rows": [1.0, math.inf], "ok": 0.5}, str(tmp_path / "s.json"))
    assert json.loads((tmp_path / "s.json").read_text()) == {"gap": None, "rows": [1.0, None], "ok": 0.5}


# ----------------------------------------------------------------------------- a run that cannot go on
REAL = [(np.float32(0.5), 0.5), (np.int64(1), 1.0), (torch.tensor(0.25), 0.25), (3, 3.0)]


@pytest.mark.parametrize("value, expected", REAL)
def test_a_reward_of_any_real_type_is_taken(value, expected):
    assert checked(lambda x, y: value)("the food", " is good.") == expected


NOT_REAL = [(math.inf, "returned inf"), ("great", "returned 'great'"), (None, "returned None"),
            (True, "returned True"), (np.bool_(True), "returned"), (torch.tensor([1.0, 2.0]), "returned"),
            (KeyError("x"), "raised KeyError"), (SystemExit(0), "raised SystemExit")]


@pytest.mark.parametrize("bad, what", NOT_REAL)
def test_a_reward_that_is_not_a_finite_number_is_named(bad, what):
    def odd(prompt, response):
        if isinstance(bad, BaseException):
            raise bad
        return bad
    with pytest.raises(Failure) as e:
        score(checked(odd), ["the food"], [" is good."], [True], "cpu")
    assert str(e.value).startswith("reward 'odd' on prompt 'the food' and response ' is good.'")
    assert what in str(e.value)
    assert score(checked(odd), ["the food"], [" is goo"], [False], "cpu").tolist() == [NO_EOS_PENALTY]


def test_a_misbehaving_reward_stops_with_one_line_and_keeps_the_last_checkpoint(reference, tmp_path, capsys,
                                                                                 monkeypatch):
    calls = []

    def flaky(prompt, response):             # fine for the first ~2 iterations of 32, then bad
        calls.append(1)
        return 0.0 if len(calls) <= 70 else math.nan
    monkeypatch.setitem(launch.REWARDS, "flaky", flaky)
    out = with_reference(reference, tmp_path, "flaky")
    code, err = train(capsys, "--out", out, *TINY, "--iters", "6", "--ckpt-every", "2", "--reward", "flaky")
    one_line(code, err, "reward 'flaky' on prompt '", "returned nan", "checkpoint is kept", expected=1)
    done = [m["iter"] for m in metrics(out)]
    assert len(done) >= 2 and done == list(range(1, len(done) + 1))       # every finished iteration
    assert files.load(str(out / "checkpoint.pt"), "rl")["iter"] == len(done) - len(done) % 2


@pytest.mark.parametrize("broken, words", [("reward", ["non-finite", "no checkpoint"]),
                                           ("disk", ["checkpoint.pt", "No space left", "no checkpoint"])])
def test_a_run_that_cannot_go_on_is_one_line_and_keeps_what_was_saved(reference, tmp_path, capsys,
                                                                      monkeypatch, broken, words):
    """A non-finite gradient never reaches the weights; a failed write names the file."""
    monkeypatch.setitem(launch.REWARDS, "huge", lambda x, y: 1e300)
    if broken == "disk":
        def full(obj, path):
            raise OSError(28, "No space left on device")
        monkeypatch.setattr(files.torch, "save", full)
    out = with_reference(reference, tmp_path, "stop")
    code, err = train(capsys, "--out", out, *TINY, "--iters", "3", "--ckpt-every", "2",
                      *(["--reward", "huge"] if broken == "reward" else []))
    one_line(code, err, *words, expected=1)
    assert not (out / "checkpoint.pt").exists() and not [f for f in os.listdir(out) if ".tmp" in f]
    assert (out / "reference.pt").read_bytes() == (reference / "reference.pt").read_bytes()


def test_weights_that_became_non_finite_stop_the_run_before_a_checkpoint(tmp_path):
    run_ = Run(Config(out=str(tmp_path), corpus_lines=400))
    policy = Policy(run_.model_config)
    with torch.no_grad():
        policy.lm_head.weight[0, 0] = math.nan
    with pytest.raises(Failure, match="non-finite"):
        run_.save(1, policy, torch.optim.AdamW(policy.parameters()), 0.1)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_the_resume_hint_is_shell_quoted_and_the_table_says_n_a(tmp_path):
    run_ = Run(Config(out=str(tmp_path / "my runs" / "a'b"), corpus_lines=400))
    assert run_.resume_hint.endswith("--resume '" + str(tmp_path / "my runs" / "a") + "'\"'\"'b'")
    s = {"optimality_gap": math.nan, "objective_optimal_se": 0.0, "pretrain_seconds": 1.0, "rl_seconds": 2.0}
    assert "= n/a" in summary_table(s, 0.1)
