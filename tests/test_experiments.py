"""The experiment extras: curves (minippo/extras/plot.py), sweeps (minippo/extras/sweep.py) and blind human
evaluation (minippo/extras/human_eval.py). They reuse the session's tiny run (conftest `reference`)."""
import csv
import io
import json
import shutil
import sys

import pytest

from conftest import TINY, needs_matplotlib
from minippo.extras import plot, sweep
from minippo.extras.cli import UsageError
from minippo.extras.human_eval import human_eval, load_run, wilson
from minippo.extras.human_eval import main as human_eval_main

METRICS = [{"iter": i, "reward": -0.1 + 0.2 * i, "kl": 0.3 * i, "objective": -0.1 + 0.17 * i, "beta": 0.1,
            "grammatical": 0.9, "distinct": 1 - 0.1 * i, "seconds": 0.2} for i in range(1, 6)]
NEEDS_MATPLOTLIB = "matplotlib is an optional extra (pip install matplotlib); the plots cannot be drawn"


def small_run(tmp_path, lines=None):
    run = tmp_path / "run"
    run.mkdir()
    text = "".join(json.dumps(m) + "\n" for m in METRICS) if lines is None else lines
    (run / "metrics.jsonl").write_text(text)
    (run / "summary.json").write_text(json.dumps({"objective_optimal": 0.9, "optimality_gap": 0.3}))
    return run


# ----------------------------------------------------------------------------- plots
def test_plot_writes_a_png(tmp_path, capsys):
    needs_matplotlib(NEEDS_MATPLOTLIB)
    run = small_run(tmp_path)
    assert plot.main([str(run)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {run / 'curves.png'}"
    assert (run / "curves.png").read_bytes().startswith(b"\x89PNG")    # (the sweep test draws a frontier)


def hide_matplotlib(monkeypatch):
    for name in [n for n in sys.modules if n.split(".")[0] == "matplotlib"] + ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)      # `import matplotlib...` now fails


def test_plot_without_matplotlib_says_how_to_install(tmp_path, capsys, monkeypatch):
    hide_matplotlib(monkeypatch)
    run = small_run(tmp_path)
    assert plot.main([str(run)]) == 2
    assert capsys.readouterr().err == "error: plotting needs matplotlib: pip install matplotlib\n"
    assert not (run / "curves.png").exists()


@pytest.mark.parametrize("lines,what", [
    ("", "empty"), ('{"iter": 1, "reward": 0.5}\n{"iter": 2, "rew', "line 2 is not valid JSON"),
    ('{"loss": 1}\n', "no numeric 'iter' and 'reward'"), (None, "no such file")])
def test_plot_bad_metrics_is_one_clear_line(tmp_path, lines, what):
    run = small_run(tmp_path, lines if lines is not None else "")
    if lines is None:
        (run / "metrics.jsonl").unlink()
    with pytest.raises(UsageError, match=what):
        plot.read_metrics(str(run))
    with pytest.raises(UsageError, match="no such folder"):
        plot.read_metrics(str(tmp_path / "missing"))


# ----------------------------------------------------------------------------- sweeps
def test_sweep_over_two_settings_writes_the_table_and_csv(reference, tmp_path, capsys, monkeypatch):
    out = tmp_path / "sweep"
    args = ["--sweep", "beta=0.05,0.2", "--out", str(out), "--reference", str(reference / "reference.pt"),
            *TINY, "--iters", "2", "--eval-samples", "4"]
    assert sweep.main(args) == 0
    text = capsys.readouterr().out
    assert "pretrained in" not in text and text.count("reference: reusing") == 2  # copied, not retrained
    rows = list(csv.DictReader(open(out / "sweep.csv")))
    assert [r["setting"] for r in rows] == ["beta=0.05", "beta=0.2"]
    assert list(rows[0])[:8] == ["setting", "reward", "kl", "objective", "objective_optimal",
                                 "optimality_gap", "grammatical", "distinct"]
    assert list(rows[0])[-1] == "seconds"
    for r in rows:
        s = json.load(open(out / r["setting"] / "summary.json"))
        assert s["beta"] == float(r["setting"].split("=")[1])
        for column, key in (("reward", "reward_policy"), ("kl", "kl_policy"),
                            ("objective", "objective_policy"), ("objective_optimal", "objective_optimal"),
                            ("optimality_gap", "optimality_gap"), ("grammatical", "grammatical_policy"),
                            ("distinct", "distinct_policy")):
            assert float(r[column]) == pytest.approx(s[key], abs=1e-12)
        assert float(r["seconds"]) == pytest.approx(s["pretrain_seconds"] + s["rl_seconds"])
        if "distinct_2grams_policy" in s:                  # distinct word 2-grams, when evaluated
            assert float(r["distinct_2"]) == pytest.approx(s["distinct_2grams_policy"], abs=1e-12)
        on_screen = next(line for line in text.splitlines() if line.startswith(r["setting"] + " "))
        assert on_screen.split()[1:4] == [f"{s['reward_policy']:.3f}", f"{s['kl_policy']:.3f}",
                                          f"{s['objective_policy']:.3f}"]
    if "plots skipped" not in text:
        assert (out / "frontier.png").read_bytes().startswith(b"\x89PNG")
    (out / "sweep.csv").unlink()
    hide_matplotlib(monkeypatch)
    assert sweep.main(args) == 0                               # run again: the finished runs are reused
    text = capsys.readouterr().out
    assert text.count("finished earlier; reusing") == 2 and "minippo | device" not in text
    assert list(csv.DictReader(open(out / "sweep.csv"))) == rows
    assert "plots skipped: plotting needs matplotlib: pip install matplotlib" in text


@pytest.mark.parametrize("spec,what", [
    ("betta=0,1", "'betta' is not a setting"), ("beta=0.1,-1", "--beta=-1.0: must be >= 0"),
    ("beta=", "expected NAME=V1,V2"), ("temperature=1,x", "--temperature=x: expected float")])
def test_sweep_checks_every_value_before_any_run(tmp_path, capsys, spec, what):
    assert sweep.main(["--sweep", spec, "--out", str(tmp_path / "s"), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and what in err, err
    assert not (tmp_path / "s").exists()


def test_sweep_flags_map_to_train_flags():
    assert sweep.setting_flags("max_new_tokens", "40") == ["--max-new-tokens", "40"]
    assert sweep.setting_flags("whiten", "false") == ["--no-whiten"]
    assert sweep.parse_sweep("temperature=0.7,1.0,1.3") == ("temperature", ["0.7", "1.0", "1.3"])


# ----------------------------------------------------------------------------- human evaluation
def test_wilson_interval_matches_hand_computed_values():
    # 8 of 10, z = 1.96: centre (0.8 + 0.1921) / 1.3841 = 0.7167, half 1.4160 * 0.1600 = 0.2266
    assert wilson(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    # 1.5 of 3 (three ties): centre 0.5, half 0.8595 * sqrt(0.25/3 + 3.8415/36) = 0.3747
    assert wilson(1.5, 3) == pytest.approx((0.1253, 0.8747), abs=1e-4)
    assert wilson(0, 5)[0] == pytest.approx(0, abs=1e-12) and wilson(5, 5)[1] == pytest.approx(1)
    assert wilson(0, 0) == (0.0, 1.0)                                      # nothing judged: no information


@pytest.fixture(scope="module")
def saved_run(reference):
    run, policy, ref = load_run(str(reference))
    return run, policy, ref


def evaluate_with(saved_run, answers, n, tmp_path, seed=0):
    run, policy, ref = saved_run
    shown = io.StringIO()
    result = human_eval(policy, ref, run.vocab, run.prompts, run.cfg, run.device, n, seed,
                        io.StringIO(answers), shown, str(tmp_path / "human_eval.jsonl"))
    records = [json.loads(line) for line in open(tmp_path / "human_eval.jsonl")]
    return result, shown.getvalue(), records


def test_ties_give_half_and_the_wilson_interval(saved_run, tmp_path):
    result, shown, records = evaluate_with(saved_run, "t\ntie\ns\nt\n", 4, tmp_path)
    assert (result["pairs"], result["ties"], result["skips"], result["win_rate"]) == (4, 3, 1, 0.5)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((0.1253, 0.8747), abs=1e-4)
    assert "win rate of the tuned policy 0.500" in shown and "[0.125, 0.875]" in shown
    assert [r["winner"] for r in records] == ["tie", "tie", "skip", "tie"]


def test_piped_answers_are_blind_and_saved(saved_run, tmp_path):
    result, shown, records = evaluate_with(saved_run, "1\nx\n2\n2\n1\nt\n", 7, tmp_path, seed=3)
    assert result["pairs"] == 5 and "'x' is not an answer" in shown and "answers ended after 5 of 7" in shown
    before_answers = shown.split("answers ended")[0]
    assert not any(word in before_answers for word in ("policy", "pi_ref", "reference", "tuned"))  # blind
    for r in records:
        assert set(r) >= {"time", "prompt", "response_1", "response_2", "policy_is", "answer", "winner"}
        assert r["response_1"].startswith(r["prompt"]) and r["response_2"].startswith(r["prompt"])
        assert r["winner"] == ("tie" if r["answer"] == "t" else "policy" if r["answer"] == str(r["policy_is"])
                               else "reference")
    wins = sum(r["winner"] == "policy" for r in records) + 0.5 * sum(r["winner"] == "tie" for r in records)
    assert result["win_rate"] == pytest.approx(wins / 5)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx(wilson(wins, 5))
    assert {r["policy_is"] for r in records} == {1, 2}                        # the order really varies


def test_command_line_saves_judgements_and_refuses_without_answers(reference, tmp_path, capsys, monkeypatch):
    run = tmp_path / "saved"
    run.mkdir()
    for name in ("config.json", "checkpoint.pt", "reference.pt"):
        shutil.copy(reference / name, run / name)
    monkeypatch.setattr(sys, "stdin", io.StringIO("2\n1\n"))
    assert human_eval_main([str(run), "--n", "2", "--seed", "1"]) == 0
    assert "95% CI" in capsys.readouterr().out
    assert len(open(run / "human_eval.jsonl").readlines()) == 2
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))                        # not a TTY, nothing piped
    assert human_eval_main([str(run), "--n", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no answers were piped in" in err
    assert len(open(run / "human_eval.jsonl").readlines()) == 2


def test_train_py_plot_and_human_eval_flags(reference, tmp_path, capsys, monkeypatch):
    from minippo.extras import launch as train
    from conftest import with_reference
    out = with_reference(reference, tmp_path, "flags")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))        # nothing piped: refused before training
    assert train.main(["--out", str(out), *TINY, "--iters", "1", "--human-eval", "2"]) == 2
    assert "answers" in capsys.readouterr().err and not (out / "config.json").exists()
    needs_matplotlib("--plot needs matplotlib (pip install matplotlib)")
    monkeypatch.setattr(sys, "stdin", io.StringIO("1\nt\n"))
    args = ["--out", str(out), *TINY, "--iters", "1", "--eval-samples", "2", "--plot", "--human-eval", "2"]
    assert train.main(args) == 0
    assert (out / "curves.png").stat().st_size > 1000
    judged = [json.loads(line) for line in open(out / "human_eval.jsonl")]
    assert [j["answer"] for j in judged] == ["1", "t"]
