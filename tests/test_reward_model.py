"""The reward model learned from preferences (minippo/extras/reward_model.py): the Bradley-Terry
loss and its gradient in closed form, the labels, the human-feedback file, a learned r_phi that
recovers the gold ranking, and PPO against it through train.py with the gold reward logged."""
import csv
import io
import json
import math
import os
import random
import re
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, TINY, metrics, run, with_reference
from minippo.config import Config
from minippo.extras import human_eval as he
from minippo.extras import reward_model as rm
from minippo.extras import runs
from minippo.extras.cli import UsageError
from minippo.extras import launch
from minippo.extras.launch import RewardError, checked
from minippo.model import ModelConfig, Policy
from minippo.rewards import NO_EOS_PENALTY, positive

sigma = lambda z: 1 / (1 + math.exp(-z))


def rm_command(*args, check=True):
    p = subprocess.run([sys.executable, "-m", "minippo.extras.reward_model", *args], capture_output=True,
                       text=True, cwd=ROOT, timeout=300)
    if check:
        assert p.returncode == 0, p.stderr[-2000:]
    return p


# ----------------------------------------------------------------------------- closed forms
def test_bradley_terry_loss_and_gradient_match_the_closed_form():
    r_a = torch.tensor([0.0, 2.0, -1.0, 0.5], dtype=torch.float64, requires_grad=True)
    r_b = torch.tensor([0.0, 0.5, 1.0, 0.5], dtype=torch.float64, requires_grad=True)
    p = torch.tensor([1.0, 1.0, 0.0, 0.5], dtype=torch.float64)      # a wins, a wins, b wins, tie
    loss = rm.bradley_terry_loss(r_a, r_b, p)
    # by hand: -log sigma(r_w - r_l) per decided pair; a tie at d = 0 costs log 2
    want = (math.log(2) - math.log(sigma(1.5)) - math.log(sigma(2.0)) + math.log(2)) / 4
    assert loss.item() == pytest.approx(want, abs=1e-12)
    loss.backward()
    d = [0.0, 1.5, -2.0, 0.0]
    grad_a = [(sigma(di) - pi) / 4 for di, pi in zip(d, p.tolist())]   # d loss / d r_a = (sigma(d) - p) / N
    assert r_a.grad.tolist() == pytest.approx(grad_a, abs=1e-12)
    assert r_b.grad.tolist() == pytest.approx([-g for g in grad_a], abs=1e-12)   # only r_a - r_b matters


def test_bradley_terry_labels():
    assert rm.preference(1.0, 0.0, 0.0) == 1.0 and rm.preference(0.0, 1.0, 0.0) == 0.0
    assert rm.preference(0.5, 0.5, 0.0) == 0.5 == rm.preference(0.5, 0.5, 2.0)
    assert rm.preference(1.0, -1.0, 0.5) == pytest.approx(sigma(4.0), abs=1e-15)
    assert rm.preference(1e9, 0.0, 1e-9) == 1.0                         # no overflow
    # drawn labels follow P(y_a preferred) = sigma((g_a - g_b) / tau): 20,000 draws at tau = 1
    rng = random.Random(0)
    wins = sum(rng.random() < rm.preference(1.0, 0.0, 1.0) for _ in range(20_000)) / 20_000
    assert abs(wins - sigma(1.0)) < 4 * math.sqrt(sigma(1.0) * (1 - sigma(1.0)) / 20_000)


def test_gold_labels_follow_the_gold_reward(reference):
    """Noise-free labels name the response with the larger gold reward, "t" for equal ones, and
    every pair holds two finished responses of pi_ref."""
    run_, _, ref = he.load_run(str(reference))
    torch.manual_seed(0)
    rows = rm.gold_pairs(ref, run_.vocab, run_.prompts, positive, 200, 0.0, run_.cfg, "cpu", random.Random(0))
    assert len(rows) == 200
    for row in rows:
        x = row["prompt"]
        g_1, g_2 = (positive(x, row[k][len(x):]) for k in ("response_1", "response_2"))
        assert (row["gold_1"], row["gold_2"]) == (g_1, g_2)
        assert row["answer"] == ("t" if g_1 == g_2 else "1" if g_1 > g_2 else "2")
        assert not any(row[k].endswith(rm.NO_EOS) for k in ("response_1", "response_2"))
    assert {row["answer"] for row in rows} == {"1", "2", "t"}
    assert rm.gold_ranking(rows) == [(x, a, b, {"1": 1.0, "2": 0.0, "t": 0.5}[row["answer"]])
                                     for (x, a, b, _), row in zip(rm.training_pairs(rows), rows)]


def test_gold_figures_by_hand():
    """The gold reward of evaluation texts (n per prompt, '<no EOS>' = the penalty), J and J*."""
    prompts, n, beta = ["the food", "the room"], 2, 0.5
    ref = ["the food is good.", "the food is bad.", "the room is okay.", "the room is" + rm.NO_EOS]
    pol = ["the food is good.", "the food is nice.", "the room is great.", "the room is bad."]
    g = rm.gold_figures(positive, "positive", prompts, n, ref, pol, kl_policy=0.8, beta=beta)
    assert g["gold_reward_reference"] == pytest.approx((1 - 1 + 0 + NO_EOS_PENALTY) / 4)
    assert g["gold_reward_policy"] == pytest.approx((1 + 1 + 1 - 1) / 4)
    assert g["gold_objective_policy"] == pytest.approx(0.5 - beta * 0.8)
    j_star = (beta * math.log((math.exp(1 / beta) + math.exp(-1 / beta)) / 2)
              + beta * math.log((1 + math.exp(-1 / beta)) / 2)) / 2
    assert g["gold_objective_optimal"] == pytest.approx(j_star, abs=1e-12)


class CountG(torch.nn.Module):
    """A stand-in reward model: its 'value' at each position is the number of g's read so far."""
    def forward(self, ids):
        return None, (ids == G).float().cumsum(1)


def test_reward_read_at_the_last_token_and_the_accuracy_by_hand():
    global G
    vocab = runs.Run(Config(out="unused", corpus_lines=4000)).vocab
    G = vocab.encode("g")[0]
    xs, ys = ["the food", "the room"], [" is good.", " was great and good."]
    assert rm.raw_rewards(CountG(), vocab, xs, ys, "cpu").tolist() == [1.0, 2.0]   # all of x + y + EOS
    pairs = [("the food", " is good.", " is bad.", 1.0),      # right: one g against none
             ("the food", " is good.", " is bad.", 0.0),      # wrong
             ("the food", " is good.", " is great.", 1.0),    # wrong: one against one is no preference
             ("the food", " is great.", " is good.", 0.0),    # wrong: equal rewards rank nothing
             ("the food", " is bad.", " is fine.", 0.5)]      # a tie has no right answer: left out
    assert rm.accuracy(CountG(), vocab, pairs, "cpu") == pytest.approx(1 / 4)


# ----------------------------------------------------------------------------- the pairs file
def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


@pytest.mark.parametrize("line, says", [
    ("{not json", "line 2: not JSON"),
    ('{"prompt": ' + "9" * 5000 + "}", "line 2: not JSON that Python reads"),
    ('["a list"]', "line 2: not a JSON object"),
    ('{"prompt": "the food", "response_1": "the food is good.", "answer": "1"}', "line 2: no text 'response_2'"),
    ('{"prompt": "the food", "response_1": "the food is good.", "response_2": "the food is bad.", "answer": "3"}',
     "line 2: answer '3' is not 1, 2, t or s"),
    ('{"prompt": "the food", "response_1": "a room.", "response_2": "the food is bad.", "answer": "1"}',
     "line 2: response_1 does not begin with the prompt"),
    ('{"prompt": "the food", "response_1": "the food is G.", "response_2": "the food is bad.", "answer": "1"}',
     "line 2: response_1: character 'G'"),
    ('{"prompt": "the food", "response_1": "the food is good.\\nthe room", "response_2": "the food is bad.", '
     '"answer": "1"}', "line 2: response_1 holds a line break"),
    ('{"prompt": "the food", "response_1": "the food is' + ' good' * 20 + '.", "response_2": "the food is bad.", '
     '"answer": "1"}', "line 2: response_1 has 112 characters; the model reads at most 66"),
])
def test_a_malformed_pairs_file_is_refused_naming_the_line(tmp_path, line, says):
    good = '{"prompt": "the food", "response_1": "the food is good.", "response_2": "the food is bad.", "answer": "1"}'
    path = write_lines(tmp_path / "pairs.jsonl", [good, line])
    vocab = runs.Run(Config(out=str(tmp_path / "x"), corpus_lines=4000)).vocab
    with pytest.raises(UsageError, match=f"--pairs-file={path}, {says}"):
        rm.read_pairs(path, vocab, 68)


def test_the_command_refuses_a_malformed_pairs_file_in_one_line_before_writing(tmp_path):
    path = write_lines(tmp_path / "h.jsonl", ['{"prompt": "x"'])
    p = rm_command("--pairs-file", path, "--out", str(tmp_path / "rm"), check=False)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.strip() == (f"error: --pairs-file={path}, line 1: not JSON (Expecting ',' delimiter); "
                                f"one JSON object per line")
    assert not (tmp_path / "rm").exists()


def test_human_judgements_round_trip_into_training_pairs(reference, tmp_path):
    """The blind comparison's file becomes (x, y_a, y_b, p): 1 -> 1, 2 -> 0, tie -> 0.5, skip dropped."""
    run_, policy, ref = he.load_run(str(reference))
    out = tmp_path / "human_eval.jsonl"
    he.human_eval(policy, ref, run_.vocab, run_.prompts, run_.cfg, run_.device, 4, 0,
                  io.StringIO("1\n2\nt\ns\n"), io.StringIO(), str(out))
    shown = [json.loads(line) for line in open(out)]
    pairs = rm.training_pairs(rm.read_pairs(str(out), run_.vocab, run_.cfg.block_size))
    kept = [row for row in shown if row["answer"] != "s" and not any(
        row[k].endswith(rm.NO_EOS) for k in ("response_1", "response_2"))]
    assert len(pairs) == len(kept) >= 2
    for (x, y_a, y_b, p), row in zip(pairs, kept):
        assert (x + y_a, x + y_b, x) == (row["response_1"], row["response_2"], row["prompt"])
        assert p == {"1": 1.0, "2": 0.0, "t": 0.5}[row["answer"]]


# ----------------------------------------------------------------------------- learning the gold ranking
@pytest.fixture(scope="module")
def learned(reference, tmp_path_factory):
    """A reward model on 1,000 noise-free pairs from the tiny reference, and 400 fresh held-out pairs."""
    out = tmp_path_factory.mktemp("rm")
    p = rm_command("--reference", str(reference / "reference.pt"), "--pairs", "1000", "--held-out", "400",
                   "--out", str(out))
    return out, p


def test_the_reward_model_recovers_the_gold_ranking_on_held_out_pairs(learned):
    """Chance is 0.5; on 400 held-out pairs with unequal gold rewards its standard deviation is
    0.025, so 0.8 is 12 deviations above chance. The tiny reference's r_phi measures 0.90 (the
    default pi_ref's reaches 1.00 at 2,000 pairs); one that learned nothing (which scores 0: equal
    rewards rank nothing) or ranks backwards fails."""
    out, p = learned
    state = torch.load(out / "reward_model.pt", weights_only=True)      # a checkpoint of plain values
    assert state["kind"] == "reward_model" and state["pairs"] == 1000 and state["gold"] == "positive"
    assert state["held_out_accuracy"] > 0.8, state["held_out_accuracy"]
    assert f"held-out accuracy against the gold reward 'positive': {state['held_out_accuracy']:.3f}" in p.stdout
    assert state["held_out_pairs"] == 400
    assert sum(1 for _ in open(out / "pairs.jsonl")) == 1000


def test_the_normalisation_gives_mean_0_and_sd_1():
    r = torch.tensor([3.0, 5.0, 4.0, 12.0], dtype=torch.float64)
    gain, bias = rm.normalisation(r)
    assert (gain * r + bias).mean().item() == pytest.approx(0, abs=1e-12)
    assert (gain * r + bias).std().item() == pytest.approx(1, abs=1e-12)
    assert gain > 0                                           # the order of the rewards is kept


def test_a_reward_model_that_learned_nothing_is_refused():
    with pytest.raises(UsageError, match="gives all of pi_ref's responses the same reward"):
        rm.normalisation(torch.zeros(100, dtype=torch.float64))


def test_normalised_so_that_pi_ref_has_mean_0_and_sd_1(learned, reference):
    out, _ = learned
    cfg = json.load(open(reference / "config.json"))
    run_ = runs.Run(Config(**{k: cfg[k] for k in runs.PRETRAIN_KEYS}, out=str(reference)))
    reward, _ = rm.load(str(out), run_.identity, torch.device("cpu"))
    ref = runs.pretrained_policy(run_, build=False)[0]
    torch.manual_seed(5)
    xs = [random.Random(i).choice(run_.prompts) for i in range(600)]
    ys, done = rm.sample_finished(ref, run_.vocab, xs, Config(), "cpu")
    r = torch.tensor([reward(x, y) for x, y, ok in zip(xs, ys, done) if ok])
    assert abs(r.mean().item()) < 0.15 and abs(r.std().item() - 1) < 0.15    # fresh samples: ~0.04 noise


def test_ppo_against_the_learned_reward_logs_the_gold_one(learned, reference, tmp_path):
    out, _ = learned
    run_dir = with_reference(reference, tmp_path, "ppo")
    p = run("--out", str(run_dir), *TINY, "--iters", "3", "--reward-model", str(out))
    m = metrics(run_dir)
    # the gold reward 'positive' is -1, 0 or 1 per response: a mean over the batch of 32 is k / 32
    assert len(m) == 3 and all(abs(row["gold_reward"] * 32 - round(row["gold_reward"] * 32)) < 1e-9
                               and -1 <= row["gold_reward"] <= 1 for row in m)
    assert any(abs(row["reward"] * 32 - round(row["reward"] * 32)) > 1e-3 for row in m)   # r_phi is not
    s = json.load(open(run_dir / "summary.json"))
    n = s["eval_prompts"] * s["eval_samples_per_prompt"]
    for key in ("gold_reward_policy", "gold_reward_reference"):
        assert abs(s[key] * n - round(s[key] * n)) < 1e-6, key
    assert s["gold"] == "positive" and s["reward_model"] == str(out)
    assert s["gold_objective_policy"] == pytest.approx(s["gold_reward_policy"] - 0.1 * s["kl_policy"])
    assert "under the learned reward (the proxy PPO optimised)" in p.stdout
    assert "under the gold reward 'positive' (what was wanted)" in p.stdout


# ----------------------------------------------------------------------------- refusals
def test_a_non_finite_reward_model_output_is_refused_like_any_misbehaving_reward(learned, reference, tmp_path):
    out, _ = learned
    state = torch.load(out / "reward_model.pt", weights_only=True)
    run_ = runs.Run(Config(**{k: json.load(open(reference / "config.json"))[k] for k in runs.PRETRAIN_KEYS},
                           out=str(reference)))
    model = Policy(ModelConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    with torch.no_grad():
        model.value_head.weight.fill_(3e38)           # finite weights, an infinite r_phi
    reward = checked(rm.learned_reward(model, run_.vocab, 1.0, 0.0, "cpu"))
    with pytest.raises(RewardError, match=r"reward 'reward_model' on prompt 'the food' and response "
                       r"' is good\.' returned (inf|-inf|nan); a reward must be a finite float"):
        reward("the food", " is good.")
    # through train.py: one line, exit 1, as for a hand-written reward that returns inf
    state["model"]["value_head.weight"].fill_(3e38)
    torch.save(state, tmp_path / "inf.pt")
    run_dir = with_reference(reference, tmp_path, "ppo")
    p = run("--out", str(run_dir), *TINY, "--iters", "2", "--reward-model", str(tmp_path / "inf.pt"), check=False)
    errors = [line for line in p.stderr.splitlines() if "error" in line]
    assert p.returncode == 1 and len(errors) == 1
    assert re.match(r"error: reward 'reward_model' on prompt '.*' returned (inf|-inf|nan); a reward must "
                    r"be a finite float\. No checkpoint had been saved yet", errors[0]), errors[0]


@pytest.mark.parametrize("corrupt, says", [
    (lambda s: s["model"]["value_head.bias"].fill_(float("nan")), "its weight value_head.bias is not finite"),
    (lambda s: s.update(gain=float("inf")), "its normalisation (gain inf"),
    (lambda s: s.update(vocab="abc"), "made with vocab='abc'"),
    (lambda s: s.update(kind="reference"), "not a minippo reward_model checkpoint"),
    (lambda s: s.update(extra=Config()), "not a readable minippo checkpoint"),   # pickled code: refused
])
def test_a_bad_reward_model_file_is_refused_before_anything_is_written(learned, reference, tmp_path,
                                                                       corrupt, says, capsys):
    out, _ = learned
    state = torch.load(out / "reward_model.pt", weights_only=True)
    corrupt(state)
    torch.save(state, tmp_path / "bad.pt")
    code = launch.main(["--out", str(tmp_path / "new"), *TINY, "--reward-model", str(tmp_path / "bad.pt")])
    err = capsys.readouterr().err
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "new").exists()


def test_the_command_keeps_a_saved_reward_model(learned, reference):
    out, _ = learned
    before = (out / "reward_model.pt").read_bytes()
    p = rm_command("--reference", str(reference / "reference.pt"), "--pairs", "10", "--out", str(out),
                   check=False)
    assert p.returncode == 2 and "already holds reward_model.pt" in p.stderr
    assert (out / "reward_model.pt").read_bytes() == before


@pytest.mark.parametrize("flags, says", [
    (["--pairs", "0"], "--pairs=0: must be an integer from 1"),
    (["--tau", "nan"], "--tau=nan: must be a finite number >= 0"),
    (["--lr", "2"], "--lr=2.0: must be in (0, 1]"),
    (["--reference", "nope.pt"], "--reference=nope.pt: no such file"),
    (["--pairs-file", "nope.jsonl"], "--pairs-file=nope.jsonl: no such file"),
    ([], "holds a reference.pt pretrained with other settings"),
    (["--pairs-file", "TIES"], "fewer than 2 pairs of finished responses with a winner"),
])
def test_bad_input_to_the_command_is_one_line_and_keeps_the_folder(reference, tmp_path, capsys, flags, says):
    """A train.py run folder with its own pi_ref (other settings than the command's defaults)."""
    out = with_reference(reference, tmp_path, "run")
    before = (out / "reference.pt").read_bytes()
    if "TIES" in flags:                 # judged pairs, but every one a tie: they teach no ranking
        flags = ["--pairs-file", write_lines(tmp_path / "ties.jsonl", [json.dumps(
            {"prompt": "the food", "response_1": "the food is good.", "response_2": "the food is nice.",
             "answer": "t"})] * 5), "--reference", str(out / "reference.pt")]
    assert rm.main(["--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in out.iterdir()) == ["reference.pt"]
    assert (out / "reference.pt").read_bytes() == before


def test_the_overoptimisation_command_end_to_end(reference, tmp_path):
    """Two reward models, PPO against each at two betas, the table, CSV and plot; run again, every
    reward model and run is reused and the numbers are the same."""
    out = tmp_path / "overopt"
    args = [sys.executable, "-m", "minippo.extras.overoptimisation", "--out", str(out), "--reference",
            str(reference / "reference.pt"), "--pairs", "40,80", "--betas", "0,0.1", "--iters", "4",
            "--window", "2", "--eval-samples", "4", "--batch", "16", "--minibatch", "8"]
    first = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    rows = list(csv.DictReader(open(out / "overoptimisation.csv")))
    assert [(r["pairs"], r["beta"], r["iter"]) for r in rows] == [
        (n, b, i) for n in ("40", "80") for b in ("0.0", "0.1") for i in ("2", "4")]
    run_metrics = metrics(out / "ppo_40_pairs" / "beta=0")
    assert float(rows[0]["gold_reward"]) == pytest.approx(sum(m["gold_reward"] for m in run_metrics[:2]) / 2)
    assert float(rows[0]["sqrt_kl"]) == pytest.approx(math.sqrt(sum(m["kl"] for m in run_metrics[:2]) / 2))
    assert "gold peak" in first.stdout and (out / "overoptimisation.png").stat().st_size > 10_000
    again = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert again.returncode == 0 and again.stdout.count("finished earlier; reusing") == 4
    assert list(csv.DictReader(open(out / "overoptimisation.csv"))) == rows


def test_training_on_a_pairs_file(learned, reference, tmp_path, capsys):
    """The pairs the gold reward labelled, given back as a file, train a reward model as good."""
    out, _ = learned
    new = tmp_path / "from_file"
    assert rm.main(["--pairs-file", str(out / "pairs.jsonl"), "--reference", str(reference / "reference.pt"),
                    "--held-out", "400", "--out", str(new)]) == 0
    state = torch.load(new / "reward_model.pt", weights_only=True)
    assert state["pairs_file"] == str(out / "pairs.jsonl") and state["pairs"] == 1000
    assert state["held_out_accuracy"] > 0.8
    assert not (new / "pairs.jsonl").exists()           # the file it learned from is the record


def test_a_reward_model_of_another_pi_ref_is_refused(learned, tmp_path, capsys):
    out, _ = learned
    code = launch.main(["--out", str(tmp_path / "new"), *TINY, "--seed", "1", "--reward-model", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "trained on another pi_ref" in err and "'seed': (0, 1)" in err, err
    assert not (tmp_path / "new").exists()


def test_resuming_with_a_reward_model_trained_again_is_refused(learned, reference, tmp_path, capsys):
    out, _ = learned
    model = tmp_path / "rm.pt"
    model.write_bytes((out / "reward_model.pt").read_bytes())
    run_dir = with_reference(reference, tmp_path, "ppo")
    run("--out", str(run_dir), *TINY, "--iters", "1", "--reward-model", str(model))
    future = os.path.getmtime(run_dir / "config.json") + 10
    os.utime(model, (future, future))                   # as if trained again after the run started
    code = launch.main(["--resume", str(run_dir), *TINY, "--iters", "2", "--reward-model", str(model)])
    err = capsys.readouterr().err
    assert code == 2 and "was written after this run started" in err, err
    assert len(metrics(run_dir)) == 1


@pytest.mark.parametrize("flags, says", [
    (["--beta", "0.5"], "--beta: set by this command"),
    (["--pretrain-steps", "100"], "--pretrain-steps: pi_ref's settings come from --reference"),
    (["--pairs", "1"], "--pairs=1: every value must be from 2"),
    (["--betas", "0,-1"], "--betas=0,-1: every value must be a finite number >= 0"),
    (["--window", "500"], "--window=500: must be an integer from 1 to --iters=150"),
    (["--clip", "2"], "--clip=2.0: must be in (0, 1)"),          # a PPO flag, checked before any work
    (["--out", ""], "--out: must name a folder"),
])
def test_the_overoptimisation_command_refuses_bad_flags_before_any_work(tmp_path, capsys, flags, says):
    from minippo.extras import overoptimisation
    assert overoptimisation.main(["--out", str(tmp_path / "oo"), *flags]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "oo").exists()


def test_a_pi_ref_that_never_ends_a_sentence_is_refused_not_looped_on():
    vocab = runs.Run(Config(out="unused", corpus_lines=4000)).vocab
    ref = Policy(ModelConfig(vocab.size, block_size=30, n_layer=1, n_head=1, d_model=8)).eval()
    with torch.no_grad():                   # a constant hidden state whose EOS logit is -100
        ref.ln_f.weight.zero_()
        ref.ln_f.bias.zero_()
        ref.ln_f.bias[0] = 1.0
        ref.lm_head.weight[vocab.eos_id, 0] = -100.0
    cfg = Config(max_new_tokens=8)
    with pytest.raises(UsageError, match=r"pi_ref finished both responses of only 0 of \d+ pairs"):
        rm.gold_pairs(ref, vocab, ["the food"], positive, 5, 0.0, cfg, "cpu", random.Random(0))
