"""Nothing lost, nothing cryptic: the edges a hostile sweep found, each as a case that failed before
the fix. One writer per run folder; a resume never pads a file; beta stays positive; a checkpoint
whose fields are wrong is refused; nothing is written before every input is checked; messages
name the right thing; rewards of any real type; NaN never written as a figure."""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import ROOT, TINY, metrics, with_reference
from minippo.config import Config
from minippo.extras import checkpoint as ckpt
from minippo.extras import launch
from minippo.extras.cli import UsageError
from minippo.extras.launch import RewardError, checked, summary_table
from minippo.extras.runs import Run, lock


def in_process(capsys, *args):
    try:
        code = launch.main(list(args))
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def one_line(code, err, *words):
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("rl:", "pretrain:"))]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    for w in words:
        assert w in lines[0], (w, lines[0])


def snapshot(folder):
    return {f.name: f.read_bytes() for f in folder.iterdir()}


# ----------------------------------------------------------------------------- one writer
def test_a_folder_in_use_is_refused_and_free_again_when_its_holder_dies(tmp_path):
    folder = str(tmp_path / "run")
    fd = lock(folder)
    with pytest.raises(UsageError, match=f"in use by process {os.getpid()}"):
        lock(folder)                                   # a second writer, even in this process
    os.close(fd)
    os.close(lock(folder))                             # released: free again
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); "
                               "from minippo.extras.runs import lock; lock(sys.argv[2]); print('held', "
                               "flush=True); time.sleep(60)", str(ROOT), folder], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(UsageError, match=f"process {holder.pid}"):
        lock(folder)
    holder.send_signal(signal.SIGKILL)                 # a killed run leaves no lock behind
    holder.wait()
    os.close(lock(folder))


def test_force_or_resume_on_a_folder_in_use_changes_nothing(reference, tmp_path, capsys):
    out = tmp_path / "busy"
    shutil.copytree(reference, out)
    before = snapshot(out)
    fd = lock(str(out))
    for flags in (["--force"], ["--resume", str(out)]):
        code, err = in_process(capsys, "--out", str(out), *TINY, "--iters", "14", *flags)
        one_line(code, err, "in use by process")
    os.close(fd)
    assert {k: v for k, v in snapshot(out).items() if k != ".minippo_in_use"} == before


# ----------------------------------------------------------------------------- resume
def test_a_resume_never_pads_a_shortened_metrics_file(reference, tmp_path, capsys):
    out = tmp_path / "short"
    shutil.copytree(reference, out)
    text = (out / "metrics.jsonl").read_text()
    (out / "metrics.jsonl").write_text(text[: len(text) // 2])       # lost lines, e.g. a power loss
    before = snapshot(out)
    code, err = in_process(capsys, "--resume", str(out), *TINY, "--iters", "14")
    one_line(code, err, "metrics.jsonl", "lines were lost")
    assert snapshot(out) == before and b"\0" not in (out / "metrics.jsonl").read_bytes()
    (out / "metrics.jsonl").unlink()
    code, err = in_process(capsys, "--resume", str(out), *TINY, "--iters", "14")
    one_line(code, err, "metrics.jsonl", "missing")


def corrupt_checkpoint(out, change):
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    change(state)
    torch.save(state, out / "checkpoint.pt")


def nan_weight(state):
    state["model"]["lm_head.weight"][0, 0] = math.nan


def wrong_shape(state):
    state["model"]["lm_head.weight"] = state["model"]["lm_head.weight"][:3]


@pytest.mark.parametrize("change, words", [
    (lambda s: s.update(iter=-5), ["iteration -5"]),
    (lambda s: s.update(iter="7"), ["iteration '7'"]),
    (lambda s: s.update(beta=math.nan), ["beta nan"]),
    (lambda s: s.pop("beta"), ["beta None"]),
    (nan_weight, ["lm_head.weight", "not finite"]),
    (wrong_shape, ["lm_head.weight", "shape"]),
    (lambda s: s["model"].pop("lm_head.weight"), ["weights are not this model's"]),
    (lambda s: s["rng"][0].update(torch=torch.zeros(3, dtype=torch.uint8)), ["random-generator state"]),
    (lambda s: s.update(rng=["not a state"]), ["random-generator state"]),
    (lambda s: s.update(metrics_bytes=-1), ["metrics_bytes"]),
    (lambda s: s.update(rl_seconds="x"), ["rl_seconds"]),
    (lambda s: s["optimizer"]["param_groups"][0].update(betas=(2.0, "a")), ["optimizer state"]),
    (lambda s: s["optimizer"]["param_groups"][0].update(maximize=True), ["optimizer state"]),
    (lambda s: s["optimizer"]["param_groups"][0].pop("weight_decay"), ["optimizer state"]),
], ids=["iter<0", "iter-str", "beta-nan", "beta-missing", "nan-weight", "shape", "missing-weight",
        "rng-torch", "rng-garbage", "bytes<0", "seconds-str", "betas", "maximize", "no-decay"])
def test_a_checkpoint_whose_fields_are_wrong_is_refused(reference, tmp_path, capsys, change, words):
    out = tmp_path / "bad"
    shutil.copytree(reference, out)
    corrupt_checkpoint(out, change)
    before = snapshot(out)
    code, err = in_process(capsys, "--resume", str(out), *TINY, "--iters", "14")
    one_line(code, err, "checkpoint.pt", *words)
    assert snapshot(out) == before


def test_resume_with_fewer_iterations_than_done_is_refused(reference, tmp_path, capsys):
    out = tmp_path / "fewer"
    shutil.copytree(reference, out)
    code, err = in_process(capsys, "--resume", str(out), *TINY, "--iters", "5")
    one_line(code, err, "--iters=5", "already did 12")


def test_a_reference_with_nan_weights_is_refused_before_anything_is_written(reference, tmp_path, capsys):
    out = tmp_path / "ref"
    out.mkdir()
    state = torch.load(reference / "reference.pt", weights_only=True)
    state["model"]["tok_emb.weight"][1, 1] = math.inf
    torch.save(state, out / "reference.pt")
    before = snapshot(out)
    code, err = in_process(capsys, "--out", str(out), *TINY, "--iters", "2")
    one_line(code, err, "reference.pt", "tok_emb.weight")
    assert snapshot(out) == before                     # no config.json: fixing the file is enough


def test_a_corrupt_reference_leaves_no_config_behind(tmp_path, capsys):
    out = tmp_path / "corrupt"
    out.mkdir()
    (out / "reference.pt").write_bytes(b"\x80\x02garbage")
    code, err = in_process(capsys, "--out", str(out), *TINY, "--iters", "2")
    one_line(code, err, "reference.pt")
    assert sorted(f.name for f in out.iterdir()) == ["reference.pt"]


@pytest.mark.parametrize("files, words", [
    *[({"config.json": c, "metrics.jsonl": "their data\n"}, ["config.json", "not a"])
      for c in ('{"name": "my web app"}', "not json at all", "[1, 2]", "")],
    ({"summary.json": '{"mine": 1}', "samples.txt": "my samples"}, ["--force", "no config.json"])],
    ids=["foreign-json", "not-json", "list", "empty", "no-config"])
def test_force_never_removes_files_that_are_not_a_minippo_run(tmp_path, capsys, files, words):
    out = tmp_path / "theirs"
    out.mkdir()
    for name, text in files.items():
        (out / name).write_text(text)
    before = snapshot(out)
    code, err = in_process(capsys, "--out", str(out), *TINY, "--force")
    one_line(code, err, *words)
    assert snapshot(out) == before


def test_a_pretraining_state_out_of_range_is_refused(tmp_path, capsys):
    out = tmp_path / "pre"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({**Config().__dict__, **{
        "out": str(out), "pretrain_steps": 250, "corpus_lines": 4000, "batch": 32, "minibatch": 16,
        "eval_samples": 16, "sample_every": 100, "lr": 1e-3, "anneal_lr": False, "device": "cpu"}}))
    run = Run(Config(out=str(out), corpus_lines=4000, pretrain_steps=250))
    torch.save({"kind": "pretrain", **run.identity, "step": 999, "model": {}, "optimizer": {},
                "rng": ckpt.rng_state()}, out / "pretrain_state.pt")
    code, err = in_process(capsys, "--resume", str(out), *TINY)
    one_line(code, err, "pretrain_state.pt", "step 999")


def test_leftover_temporary_files_are_removed(reference, tmp_path):
    out = with_reference(reference, tmp_path, "tmp")
    (out / "checkpoint.pt.tmp4242").write_bytes(b"half a checkpoint")
    fd = lock(str(out))
    os.close(fd)
    assert not (out / "checkpoint.pt.tmp4242").exists()


# ----------------------------------------------------------------------------- beta and figures
def test_summary_json_never_holds_nan_and_the_table_says_n_a(tmp_path):
    path = str(tmp_path / "s.json")
    ckpt.save_json({"optimality_gap": math.nan, "rows": [1.0, math.inf], "ok": 0.5}, path)
    assert json.loads(open(path).read()) == {"optimality_gap": None, "rows": [1.0, None], "ok": 0.5}
    s = {"optimality_gap": math.nan, "objective_optimal_se": 0.0, "pretrain_seconds": 1.0,
         "rl_seconds": 2.0, "objective_optimal": 0.5}
    assert "optimality gap (J* - J(theta)) / (J* - J(pi_ref)) = n/a" in summary_table(s, 0.1)


# ----------------------------------------------------------------------------- rewards
@pytest.mark.parametrize("value, expected", [(np.float32(0.5), 0.5), (np.int64(1), 1.0),
                                             (torch.tensor(0.25), 0.25), (np.float64(-1.0), -1.0), (3, 3.0)])
def test_a_reward_of_any_real_type_is_taken(value, expected):
    assert checked(lambda x, y: value)("the food", " is good.") == expected


@pytest.mark.parametrize("value, words", [(np.bool_(True), "returned"), (torch.tensor([1.0, 2.0]), "returned"),
                                          (np.float32("nan"), r"returned np.float32\(nan\)")])
def test_a_reward_that_is_not_a_finite_number_is_named(value, words):
    with pytest.raises(RewardError, match=words):
        checked(lambda x, y: value)("the food", " is good.")


def test_a_reward_that_calls_sys_exit_is_an_error_not_a_success():
    def quits(x, y):
        sys.exit(0)
    with pytest.raises(RewardError, match=r"reward 'quits' .* called sys.exit\(0\)"):
        checked(quits)("the food", " is good.")


def test_a_huge_reward_is_named_when_the_gradient_overflows(reference, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(launch.REWARDS, "huge", lambda x, y: 1e300)
    monkeypatch.setitem(launch.REWARDS_SEEN, "largest", 0.0)
    out = with_reference(reference, tmp_path, "huge")
    code, err = in_process(capsys, "--out", str(out), *TINY, "--iters", "3", "--reward", "huge")
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert code == 1 and len(lines) == 1, err
    assert "non-finite" in lines[0] and "1e+300" in lines[0] and "bounded" in lines[0]
    assert "No checkpoint had been saved yet" in lines[0]      # none was: it does not claim one


# ----------------------------------------------------------------------------- messages
def test_the_resume_hint_is_shell_quoted(tmp_path):
    run = Run(Config(out=str(tmp_path / "my runs" / "a'b"), corpus_lines=400, data=""))
    assert run.resume_hint.endswith("--resume '" + str(tmp_path / "my runs" / "a") + "'\"'\"'b'")


def test_sigterm_saves_like_ctrl_c(reference, tmp_path):
    out = with_reference(reference, tmp_path, "term")
    args = [*TINY, "--iters", "8", "--ckpt-every", "100"]
    p = subprocess.Popen([sys.executable, str(ROOT / "train.py"), "--out", str(out), *args],
                         cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    start = time.time()
    while time.time() - start < 120 and not ((out / "metrics.jsonl").exists() and
                                             len((out / "metrics.jsonl").read_text().splitlines()) >= 2):
        time.sleep(0.02)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "--resume" in err, err[-2000:]
    assert (out / "checkpoint.pt").exists()
    subprocess.run([sys.executable, str(ROOT / "train.py"), *args, "--resume", str(out)], cwd=ROOT,
                   capture_output=True, check=True, timeout=300)
    assert metrics(out) == metrics(reference)[:8]


# ----------------------------------------------------------------------------- file system and ranges
@pytest.mark.parametrize("out", ["", "{file}", "{file}/sub", "/proc/minippo_out", "x" * 300])
def test_an_out_folder_that_cannot_be_written_is_one_line(tmp_path, capsys, out):
    (tmp_path / "a_file").write_text("not a folder")
    code, err = in_process(capsys, "--out", out.format(file=tmp_path / "a_file"), *TINY)
    one_line(code, err, "--out")
    assert (tmp_path / "a_file").read_text() == "not a folder"


def test_a_file_size_limit_fails_the_write_with_one_line_and_keeps_what_was_saved(reference, tmp_path):
    import resource
    out = with_reference(reference, tmp_path, "limit")
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))  # < a checkpoint
    p = subprocess.run([sys.executable, str(ROOT / "train.py"), "--out", str(out), *TINY, "--iters", "3",
                        "--ckpt-every", "2"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       preexec_fn=limit)
    lines = [line for line in p.stderr.splitlines() if line.startswith("error")]
    assert p.returncode == 1 and len(lines) == 1 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert "checkpoint.pt" in lines[0]
    assert len(metrics(out)) == 2 and not (out / "checkpoint.pt").exists()
    assert not [f for f in os.listdir(out) if ".tmp" in f]
    assert (out / "reference.pt").read_bytes() == (reference / "reference.pt").read_bytes()


@pytest.mark.parametrize("args, flag", [(["--corpus-lines", "5"], "--corpus-lines"),
                                        (["--block-size", "4000", "--corpus-lines", "1000"], "--block-size")])
def test_a_corpus_too_short_names_the_flag_given_not_data(tmp_path, capsys, args, flag):
    code, err = in_process(capsys, "--out", str(tmp_path / "o"), *args)
    one_line(code, err, flag)
    assert "--data" not in err


def test_a_long_prompt_is_named_by_its_file_and_cut_short(tmp_path, capsys):
    (tmp_path / "p.txt").write_text("the food " + "a" * 100_000 + "\n")
    code, err = in_process(capsys, "--out", str(tmp_path / "o"), "--prompts", str(tmp_path / "p.txt"))
    one_line(code, err, "--prompts", "100009 characters")
    assert len(err) < 400


def test_the_tools_refuse_sizes_out_of_range(capsys, tmp_path):
    import toy_bandit
    from minippo.extras import bench, human_eval, sweep
    for call, args in ((toy_bandit.parse_args, ["--rewards=1e300,0"]), (toy_bandit.parse_args, ["--samples", "10000000000"]),
                       (bench.main, ["--batch", "1000000000"]), (bench.main, ["--d-model", "65536"])):
        with pytest.raises(SystemExit) as e:
            call(args)
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error"), err
    assert human_eval.main([str(tmp_path), "--n", "1000000000"]) == 2
    assert sweep.main(["--sweep", "beta=0", "--sweep", "beta=1"]) == 2
    (tmp_path / "ref.pt").write_bytes(b"not a reference")
    assert sweep.main(["--sweep", "beta=0", "--reference", str(tmp_path / "ref.pt"), "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "--n" in err[0] and "--sweep" in err[1] and "ref.pt" in err[2], err
    assert not (tmp_path / "s").exists()


def test_toy_bandit_json_has_no_nan():
    import toy_bandit
    assert toy_bandit.finite({"a": [1.0, math.nan], "b": math.inf, "c": "x"}) == {"a": [1.0, None], "b": None, "c": "x"}



@pytest.mark.parametrize("content", ["{not json", "", "[1, 2, 3]", "\x00\x01binary"])
def test_a_corrupt_config_on_resume_is_one_line_and_changes_nothing(reference, tmp_path, capsys, content):
    out = tmp_path / "cfg"
    shutil.copytree(reference, out)
    (out / "config.json").write_text(content)
    before = snapshot(out)
    code, err = in_process(capsys, "--resume", str(out), *TINY, "--iters", "14")
    one_line(code, err, "config.json")
    assert snapshot(out) == before


def test_rl_seconds_add_up_over_a_resume(reference, tmp_path, capsys):
    out = tmp_path / "more"
    shutil.copytree(reference, out)
    saved = torch.load(out / "checkpoint.pt", weights_only=True)["rl_seconds"]
    assert saved > 0
    code, _ = in_process(capsys, "--resume", str(out), *TINY, "--iters", "13")
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rl_seconds"] > saved and summary["iters"] == 13



def test_a_refused_command_leaves_the_users_own_files_alone(reference, tmp_path, capsys):
    out = tmp_path / "mine"
    shutil.copytree(reference, out)
    for name in ("in_use", "notes.tmpl", "report.tmp.docx", ".minippo_in_use"):
        (out / name).write_text("precious")
    before = snapshot(out)
    code, err = in_process(capsys, "--out", str(out), *TINY)          # holds a run: refused
    one_line(code, err, "already holds a run")
    assert snapshot(out) == before


def test_ctrl_c_during_the_final_evaluation_quits_at_once(reference, tmp_path):
    """Nothing is left to save once RL is done: Ctrl-C then quits (exit 130), instead of being
    ignored until the evaluation ends and the run exits 0."""
    out = with_reference(reference, tmp_path, "eval")
    p = subprocess.Popen([sys.executable, str(ROOT / "train.py"), "--out", str(out), *TINY, "--iters", "1",
                          "--eval-samples", "20000"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    start = time.time()
    while time.time() - start < 120 and not (out / "checkpoint.pt").exists():
        time.sleep(0.02)
    time.sleep(0.5)                                       # into the evaluation (20,000 samples a prompt)
    p.send_signal(signal.SIGINT)
    t = time.time()
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130 and time.time() - t < 15, (p.returncode, err[-1500:])
    assert b"stopped without saving" in err and not (out / "summary.json").exists()


def test_human_evaluation_with_no_valid_answer_is_an_error(reference, monkeypatch, capsys):
    import io
    from minippo.extras import human_eval
    monkeypatch.setattr(sys, "stdin", io.StringIO("x\ny\n\xff\n"))
    assert human_eval.main([str(reference), "--n", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no pair was answered" in err[0]


def test_the_tools_report_a_failed_write_in_one_line(reference, tmp_path, capsys, monkeypatch):
    """plot, human evaluation and sweep: an OSError while writing (a full disk, say) is one line."""
    import io
    from minippo.extras import human_eval, plot
    pytest.importorskip("matplotlib")

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device", str(reference / "curves.png"))
    monkeypatch.setattr("matplotlib.figure.Figure.savefig", full)
    assert plot.main([str(reference)]) == 1
    monkeypatch.setattr(sys, "stdin", io.StringIO("1\n"))
    monkeypatch.setattr("builtins.open", lambda *a, **k: (_ for _ in ()).throw(
        OSError(28, "No space left on device", str(a[0]))) if str(a[0]).endswith("human_eval.jsonl") else OPEN(*a, **k))
    assert human_eval.main([str(reference), "--n", "1"]) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error")]
    assert len(err) == 2 and all("No space left on device" in line for line in err), err


OPEN = open


def test_ctrl_c_while_torch_is_importing_is_one_line():
    # train.py runs once the child says "up" (a fixed sleep could land in the interpreter's own start
    # on a loaded machine, before train.py exists); torch then takes a second or more to import
    start = ("import runpy, sys; sys.stderr.write('up\\n'); sys.stderr.flush(); "
             "sys.argv = ['train.py', '--help']; runpy.run_path('train.py', run_name='__main__')")
    p = subprocess.Popen([sys.executable, "-c", start], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    assert p.stderr.readline() == "up\n"
    time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    if p.returncode == 0:
        pytest.skip("torch imported before the signal arrived (a fast machine)")
    assert p.returncode == 130 and err.strip() == "stopped before anything was written", err


def test_a_stuck_peer_is_noticed_within_the_timeout(monkeypatch):
    """A process that stops answering (alive but stuck) ends the others after PEER_TIMEOUT_MINUTES,
    not an hour; here the timeout is shortened to 3 seconds."""
    from minippo.extras import dist
    from test_distributed import in_two_processes
    monkeypatch.setattr(dist, "PEER_TIMEOUT_MINUTES", 0.05)

    def stuck(rank):
        dist.setup("cpu")
        if rank == 1:
            time.sleep(8)                                # stuck, never joins the all-reduce
            return "slept"
        t = time.time()
        try:
            dist.any_process(False)
        except Exception:
            return time.time() - t
        return "no error"
    waited, _ = in_two_processes(stuck)
    assert isinstance(waited, float) and waited < 6, waited     # the peer sleeps 8 s: not its exit
