"""plot.py, sweep.py, human_eval.py, and the refusals of all four extras (with bench.py)."""
import csv
import io
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, TINY, call, metrics, needs_matplotlib, one_line, snapshot, with_reference
from minippo.extras import bench, files, human_eval, launch, plot, sweep
from minippo.extras.files import UsageError
from minippo.extras.human_eval import load_run, wilson


def checkpoint(change, key=None):
    """A setup: RUN's checkpoint.pt changed (or only its model's `key`)."""
    def setup(run):
        s = torch.load(run / "checkpoint.pt", weights_only=True)
        s = {**s, "model": {**s["model"], key: change(s["model"][key])}} if key else change(s)
        torch.save(s, run / "checkpoint.pt")
    return setup


def writes(name, text, old=None):
    """A setup: RUN's file `name` replaced by text, or its `old` replaced by text in it."""
    def setup(run):
        path = run / name
        path.write_text(text if old is None else path.read_text().replace(old, text))
    return setup


embedding = lambda change: checkpoint(change, "tok_emb.weight")
NO_GPU = "cuda" if not torch.cuda.is_available() else "tpu"  # a device parse_config refuses here
PROMPTS = writes("prompts.txt", "the movie\nthis book\n")
NO_J = writes("metrics.jsonl", '{"iter": 1, "objective": null, "responses": 8}\n')
SAME_J = writes("summary.json", '{"objective_optimal": 0.5, "objective_reference": 0.5}')
# (command, its arguments: RUN is a copy of the reference run and OUT a new folder, how RUN is
# broken, the words of the line, joined by |)
REFUSED = [
    (human_eval, f"RUN --seed {2 ** 64}", None, "--seed"),
    (human_eval, "RUN --n 0", None, "--n=0"),
    (human_eval, "OUT", None, "config.json"),
    (human_eval, "RUN", checkpoint(lambda s: {**s, "model": None}), "checkpoint.pt|do not fit"),
    (human_eval, "RUN", embedding(lambda w: w * float("nan")), "checkpoint.pt|not finite"),
    (human_eval, "RUN", embedding(lambda w: w[:-1]), "checkpoint.pt|do not fit"),
    (human_eval, "RUN", writes("config.json", '"beta": "0.1"', '"beta": 0.1'), "config.json|beta"),
    (human_eval, f"RUN --device {NO_GPU}", None, "--device"),
    (bench, "--algo reinforce --batch 1", None, "--batch=1"),
    (bench, "--d-model 30", None, "--d-model=30"),
    (bench, "--max-new-tokens 4090", None, "--max-new-tokens=4090"),
    (bench, "--bf16 --device cpu", None, "--bf16"),
    (sweep, "--sweep beta=0,1 --out ' '", None, "--out=' '"),
    (sweep, f"--sweep device=cpu,{NO_GPU} --out OUT", None, "--device="),
    (sweep, "--sweep betta=0,1 --out OUT", None, "'betta' is not a setting"),
    (sweep, "--sweep beta= --out OUT", None, "expected NAME=V1,V2"),
    (sweep, "--sweep temperature=1,x --out OUT", None, "--temperature=x: expected float"),
    (sweep, "--sweep algo=grpo+algo=ppo --out OUT", None, "given twice"),
    (sweep, "--sweep prompts=a/b,a_b --out OUT", None, "one folder"),
    # every run of a sweep is checked before the first starts: a good first value is not run
    (sweep, "--sweep prompts=RUN/prompts.txt,OUT/missing.txt --out OUT", PROMPTS, "no such file"),
    (sweep, "--sweep prompts=RUN/prompts.txt,.. --out OUT", PROMPTS, "--prompts=..: a folder"),
    (sweep, f"--sweep beta=0.1,0.1{'0' * 300} --out OUT", None, "over 255 bytes"),
    (sweep, "--sweep beta=0.1 --out RUN/summary.json/sweep", None, "give a folder this user can"),
    (sweep, "--sweep beta=0.1 --out OUT --reference RUN/reference.pt", None, "--reference"),
    (plot, "", None, "RUN_DIR"),
    (plot, "OUT", None, "no such file"),
    (plot, "RUN", writes("metrics.jsonl", ""), "empty"),
    (plot, "RUN", writes("metrics.jsonl", '{"iter": 1, "reward": 0}\n{'), "line 2|JSON"),
    (plot, "RUN", writes("metrics.jsonl", '{"loss": 1}\n'), "line 1|numeric 'iter'"),
    (plot, "--gap g.png RUN", NO_J, "'objective'"),
    (plot, "--gap g.png RUN", SAME_J, "summary.json|J* above J(pi_ref)"),
    (plot, "--gap g.png RUN", None, "summary.json|too few --eval-samples"),  # the reference's: 16
    (plot, "--gap g.png RUN RUN", None, "given twice"),
    (plot, "--gap '' RUN", None, "''"),
    # a figure never replaces a run's data (nor what it reads): refused before any write
    (plot, "--gap RUN/summary.json RUN", None, "summary.json|run's own file"),
    (plot, "--gap RUN/metrics.jsonl RUN", None, "metrics.jsonl"),
    (plot, "--gap RUN/checkpoint.pt RUN", None, "checkpoint.pt"),
    (plot, "--gap RUN RUN", None, "a folder"),
]


@pytest.mark.parametrize("command, args, setup, words", REFUSED)
def test_a_refused_input_is_one_line_and_changes_nothing(
        reference, tmp_path, capsys, monkeypatch, command, args, setup, words):
    run, out = shutil.copytree(reference, tmp_path / "run"), tmp_path / "out"
    if setup:
        setup(run)
    before = snapshot(run)
    monkeypatch.setattr(sys, "stdin", io.StringIO("1\n2\n"))  # answers, were they asked for
    monkeypatch.chdir(tmp_path)  # (where a folder named " " would go)
    args = [a.replace("RUN", str(run)).replace("OUT", str(out)) for a in shlex.split(args)]
    if command is sweep:  # were a run to start
        args += [*TINY, "--pretrain-steps", "1", "--iters", "1"]
    one_line(*call(command.main, capsys, *args), *words.split("|"))
    assert snapshot(run) == before and not out.exists()


# (command, arguments, answers, the limit, the line's words); a user's limits, on a real process
FSIZE, AS = resource.RLIMIT_FSIZE, resource.RLIMIT_AS
LIMITED = [
    ("plot", "RUN", "", FSIZE, 1000, "curves.png|File too large"),
    # (300 bytes: room for the lock's note, files.LOCK_NOTE, not for the output)
    ("human_eval", "RUN --n 3", "1\n1\n1\n", FSIZE, 300, "human_eval.jsonl"),
    ("sweep", "--sweep iters=12 --out OUT " + " ".join(TINY), "", FSIZE, 300, "frontier.png"),
    ("bench", "--d-model 4096 --n-layer 64 --iters 1", "", AS, 3 << 29, "out of memory"),
]


@pytest.mark.parametrize("name, args, stdin, limit, value, words", LIMITED)
def test_a_failed_write_or_allocation(reference, tmp_path, name, args, stdin, limit, value, words):
    """A failed write or allocation is one line, exit 1."""
    if name in ("plot", "sweep"):
        needs_matplotlib()  # (without it, plotting is refused or skipped before any write)
    out = tmp_path / "sweep"
    run = shutil.copytree(reference, out / "iters=12")  # also a finished run of that sweep
    argv = [a.replace("RUN", str(run)).replace("OUT", str(out)) for a in args.split()]
    limits = lambda: resource.setrlimit(limit, (value, value))
    piped = dict(input=stdin, capture_output=True, text=True, cwd=ROOT, preexec_fn=limits)
    p = subprocess.run([sys.executable, "-m", f"minippo.extras.{name}", *argv], **piped)
    one_line(p.returncode, p.stderr, *words.split("|"), expected=1)


def test_plot_writes_a_png_with_the_two_kls_named_apart(reference, tmp_path, capsys, monkeypatch):
    needs_matplotlib("matplotlib is an optional extra (pip install matplotlib)")
    run, figures = shutil.copytree(reference, tmp_path / "run"), []
    kept = lambda *a, draw=plot.figure, **k: figures.append(draw(*a, **k)) or figures[-1]
    monkeypatch.setattr(plot, "figure", kept)
    assert plot.main([str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {run / 'curves.png'}"
    assert (run / "curves.png").read_bytes().startswith(b"\x89PNG")
    axes, kl = figures[-1].axes, "KL(pi_theta || pi_ref), nats per response"
    titles = {ax.get_title() for ax in axes if ax.get_visible()}
    assert {kl, "approx_kl: KL(pi_old || pi_theta), per token", "beta: fixed at 0.1"} <= titles
    s = json.loads((run / "summary.json").read_text())  # the optimum's values, dashed
    dashed = {ax.get_title(): ax.lines[-1].get_ydata()[0] for ax in axes if len(ax.lines) > 1}
    names = {"reward r(x, y)": "reward", kl: "kl", "J = reward - beta KL": "objective"}
    assert dashed == {title: s[f"{key}_optimal"] for title, key in names.items()}


FLAGS = [  # a sweep's value as train.py's flags: it may add settings, even to a boolean
    ("algo", "grpo+kl_penalty=k2+variant=dr", "--algo grpo --kl-penalty k2 --variant dr"),
    ("whiten", "false+lr=0.002", "--no-whiten --lr 0.002"),
    ("whiten", "1+clip=0.1+lr=0.002", "--whiten --clip 0.1 --lr 0.002"),
    ("whiten", "0", "--no-whiten"),
    ("beta", "1e+3", "--beta 1e+3"),  # a number keeps its +
    ("max_new_tokens", "40", "--max-new-tokens 40"),
]


def test_a_sweep_value_may_add_settings_even_to_a_boolean():
    assert [sweep.setting_flags(n, v) for n, v, _ in FLAGS] == [f.split() for *_, f in FLAGS]
    for bad in ("+kl_penalty=k2", "grpo+nonsense=1", "grpo+algo=ppo"):
        with pytest.raises(UsageError, match="--sweep"):
            sweep.setting_flags("algo", bad)


def test_the_gap_curves_average_seeds_that_are_different_runs(reference, tmp_path):
    s, m = json.loads((reference / "summary.json").read_text()), metrics(reference)
    s["objective_optimal_trusted"] = True   # (as with enough --eval-samples: else it is refused)
    (shutil.copytree(reference, tmp_path / "s0" / "run") / "summary.json").write_text(json.dumps(s))
    other = shutil.copytree(reference, tmp_path / "s1" / "run")  # seed 1: 10 iterations, J* + 0.2
    m1 = [{**x, "objective": x["objective"] - 0.05 * x["iter"]} for x in m[:10]]
    (other / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in m1))
    s1 = {**s, "objective_optimal": s["objective_optimal"] + 0.2}
    (other / "summary.json").write_text(json.dumps(s1))
    j = lambda s, key: s[f"objective_{key}"]
    gap = lambda s, x: (j(s, "optimal") - x["objective"]) / (j(s, "optimal") - j(s, "reference"))
    mean = [(gap(s, a) + gap(s1, b)) / 2 for a, b in zip(m, m1)]  # the iterations both have
    drawn, curve, seeds = plot.gap_curves([tmp_path / "s0" / "run", other], window=2)["run"]
    assert seeds == 2 and drawn == [32 * (i + 1) for i in range(10)]
    assert curve == pytest.approx([mean[0]] + [(a + b) / 2 for a, b in zip(mean, mean[1:])])
    assert curve[-1] != pytest.approx(gap(s1, m1[-1]), abs=1e-3) and gap(s, m[9]) != gap(s1, m1[9])


def test_a_sweep(reference, tmp_path, capsys, monkeypatch):
    """It writes the table and the CSV; run again, it reuses finished runs and resumes interrupted
    ones; other settings are refused before any run; --force reruns every run."""
    out = tmp_path / "sweep"
    args = ["--sweep", "beta=0.05,0.2", "--out", str(out), *TINY, "--iters", "2"]
    args += ["--eval-samples", "4"]
    assert sweep.main(args) == 0
    text = capsys.readouterr().out
    assert "pretrained in" not in text and text.count("reference: reusing") == 2  # cached pi_ref
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    assert [r["setting"] for r in rows] == ["beta=0.05", "beta=0.2"]
    assert list(rows[0])[-1] == "seconds"
    shown = ("reward_policy", "kl_policy", "objective_policy")
    for r in rows:
        s = json.load(open(out / r["setting"] / "summary.json"))
        assert s["beta"] == float(r["setting"].split("=")[1])
        for column, _, key in sweep.COLUMNS[1:-1]:
            if s.get(key) is not None:    # (null: a gap against a J* of 4 samples is not given)
                assert float(r[column]) == pytest.approx(s[key], abs=1e-12)
            else:
                assert r.get(column, "") == ""
        assert float(r["seconds"]) == pytest.approx(s["pretrain_seconds"] + s["rl_seconds"])
        on_screen = next(line for line in text.splitlines() if line.startswith(r["setting"] + " "))
        assert on_screen.split()[1:4] == [f"{s[k]:.3f}" for k in shown]
    if "plots skipped" not in text:
        assert (out / "frontier.png").read_bytes().startswith(b"\x89PNG")
    (out / "sweep.csv").unlink()
    (out / "beta=0.2" / "summary.json").unlink()  # as if stopped before its final evaluation
    for name in [n for n in sys.modules if n.split(".")[0] == "matplotlib"] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # `import matplotlib...` now fails
    assert sweep.main(args) == 0  # run again: the finished run is reused, the interrupted resumed
    text = capsys.readouterr().out
    assert text.count("finished earlier; reusing") == 1 and text.count("minippo | device") == 1
    assert "resuming at iteration 2" in text
    no_seconds = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert no_seconds(csv.DictReader(open(out / "sweep.csv"))) == no_seconds(rows)  # (resumed: +)
    assert "plots skipped: plotting needs matplotlib: pip install matplotlib" in text
    assert call(plot.main, capsys, out / "beta=0.2") == (2, f"error: {plot.NO_MATPLOTLIB}\n")
    before = snapshot(out / "beta=0.05")  # other settings: refused, before any run
    one_line(*call(sweep.main, capsys, *args, "--iters", 3), "beta=0.05", "--iters=2", "--force")
    assert snapshot(out / "beta=0.05") == before
    assert sweep.main(args + ["--force"]) == 0  # --force: every run again, none reused
    text = capsys.readouterr().out
    assert "finished earlier" not in text and "resuming" not in text
    assert text.count("minippo | device") == 2


class Yes(io.TextIOBase):
    """`yes 1`: answers without end. Reading all of them would never return."""
    lines = 0

    def readline(self, size=-1):
        self.lines += 1
        assert self.lines < 100, "standard input read ahead of the questions"
        return "1\n"

    def read(self, size=-1):
        raise AssertionError("all of standard input read")


def test_folders_held_and_answers_read_one_per_question(reference, tmp_path, capsys, monkeypatch):
    """A sweep holds its folder, human_eval its run's (as `train.py --resume RUN` does): while
    another holds it, one line and nothing run. human_eval reads one answer per question."""
    run, out, answers = shutil.copytree(reference, tmp_path / "run"), tmp_path / "sweep", Yes()
    monkeypatch.setattr(sys, "stdin", io.StringIO("1\n2\n"))
    held = [(out, sweep.main, ["--sweep", "beta=0.1", "--out", out, *TINY, "--iters", 1])]
    held.append((run, human_eval.main, [run, "--n", 2]))
    for folder, main, args in held:
        lock = files.lock(str(folder))
        try:
            one_line(*call(main, capsys, *args), str(folder), "in use")
        finally:
            files.unlock(str(folder), lock)
    assert os.listdir(out) == [] and not (run / "human_eval.jsonl").exists()
    monkeypatch.setattr(sys, "stdin", answers)
    assert human_eval.main([str(run), "--n", "3"]) == 0
    assert "answers ended" not in capsys.readouterr().out
    assert answers.lines == 3 and len(open(run / "human_eval.jsonl").readlines()) == 3


def evaluate_with(reference, answers, n, path, seed=0):
    """human_eval's result, what it showed, and `path`'s records, for these piped answers."""
    run, policy, ref = load_run(str(reference))
    shown, given = io.StringIO(), (run.vocab, run.prompts, run.cfg, run.device, n, seed)
    result = human_eval.human_eval(policy, ref, *given, io.StringIO(answers), shown, str(path))
    return result, shown.getvalue(), [json.loads(line) for line in open(path)]


def test_wilson_interval_ties_and_piped_answers_blind_and_saved(reference, tmp_path):
    # 8 of 10, z = 1.96: centre (0.8 + 0.1921) / 1.3841 = 0.7167, half 1.4160 * 0.1600 = 0.2266
    assert wilson(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson(0, 5)[0] == pytest.approx(0, abs=1e-12) and wilson(5, 5)[1] == pytest.approx(1)
    assert wilson(0, 0) == (0.0, 1.0)  # nothing judged: no information
    # 1.5 of 3 (three ties): centre 0.5, half 0.8595 * sqrt(0.25/3 + 3.8415/36) = 0.3747
    result, shown, records = evaluate_with(reference, "t\ntie\ns\nt\n", 4, tmp_path / "ties.jsonl")
    assert (result["pairs"], result["tie"], result["skip"], result["win_rate"]) == (4, 3, 1, 0.5)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((0.1253, 0.8747), abs=1e-4)
    assert "win rate of the tuned policy 0.500" in shown and "[0.125, 0.875]" in shown
    assert [r["winner"] for r in records] == ["tie", "tie", "skip", "tie"]
    path = tmp_path / "human_eval.jsonl"
    path.write_text('{"earlier": 1}\n')  # appended to, never replaced
    result, shown, records = evaluate_with(reference, "1\nx\n2\n2\n1\nt\n", 7, path, 3)
    assert records.pop(0) == {"earlier": 1}
    assert result["pairs"] == 5 and "'x' is not an answer" in shown
    assert "answers ended after 5 of 7" in shown
    asked = shown.split("answers ended")[0]  # blind: the questions name neither policy
    assert not any(word in asked for word in ("policy", "pi_ref", "reference", "tuned"))
    for r in records:
        assert r["response_1"].startswith(r["prompt"]) and r["response_2"].startswith(r["prompt"])
        policy = r["answer"] == str(r["policy_is"])
        assert r["winner"] == ("tie" if r["answer"] == "t" else "policy" if policy else "reference")
    wins = sum({"policy": 1, "tie": 0.5}.get(r["winner"], 0) for r in records)
    got = (result["win_rate"], result["ci_low"], result["ci_high"])
    assert got == pytest.approx((wins / 5, *wilson(wins, 5)))
    assert {r["policy_is"] for r in records} == {1, 2}  # the order really varies


def test_train_py_plot_and_human_eval_flags(reference, tmp_path, capsys, monkeypatch):
    out = with_reference(reference, tmp_path, "flags")
    flags = ["--out", out, *TINY, "--iters", 1, "--eval-samples", 2, "--human-eval", 2]
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # nothing piped: refused before training
    one_line(*call(launch.main, capsys, *flags), "no answers were piped")
    assert not (out / "config.json").exists()
    needs_matplotlib("--plot needs matplotlib (pip install matplotlib)")
    monkeypatch.setattr(sys, "stdin", io.StringIO("1\nt\n"))
    assert call(launch.main, capsys, *flags, "--plot")[0] == 0
    assert (out / "curves.png").stat().st_size > 1000
    assert [json.loads(line)["answer"] for line in open(out / "human_eval.jsonl")] == ["1", "t"]
    monkeypatch.setattr(sys, "stdin", io.StringIO("2\n"))  # the command appends to the same file
    assert human_eval.main([str(out), "--n", "1", "--seed", "1"]) == 0
    assert "95% CI" in capsys.readouterr().out
    assert len(open(out / "human_eval.jsonl").readlines()) == 3
