"""The reward model (minippo/extras/reward_model.py) and the over-optimisation report (overoptimisation.py)."""
import csv
import errno
import json
import math
import os
import random
import resource
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, TINY, call, metrics, one_line, snapshot, with_reference
from minippo.config import Config
from minippo.evaluate import draw
from minippo.extras import cli, launch, plot, runs, sweep, overoptimisation as oo, reward_model as rm
from minippo.extras.reference import pretrained_policy
from minippo.extras.files import Failure, UsageError
from minippo.model import ModelConfig, Policy
from minippo.rewards import NO_EOS_PENALTY, positive

sigma = lambda z: 1 / (1 + math.exp(-z))
VOCAB = runs.Run(Config(out="unused", corpus_lines=4000)).vocab
GOOD = {"prompt": "the food", "response_1": "the food is good.", "response_2": "the food is bad.", "answer": "1"}


def gold_answer(row):
    """The answer a noise-free labeller gives a row: the gold reward's ranking."""
    x = row["prompt"]
    g_1, g_2 = (positive(x, row[k][len(x):]) for k in ("response_1", "response_2"))
    return "t" if g_1 == g_2 else "1" if g_1 > g_2 else "2"


def lines_of(err):
    """Standard error without tqdm's bars."""
    return [line for line in err.splitlines() if line.strip() and not line.startswith(("reward model:", "rl:"))]


def test_bradley_terry_loss_and_gradient_match_the_closed_form():
    r_a = torch.tensor([0.0, 2.0, -1.0, 0.5], dtype=torch.float64, requires_grad=True)
    r_b = torch.tensor([0.0, 0.5, 1.0, 0.5], dtype=torch.float64, requires_grad=True)
    p = torch.tensor([1.0, 1.0, 0.0, 0.5], dtype=torch.float64)      # a wins, a wins, b wins, tie
    loss = rm.bradley_terry_loss(r_a, r_b, p)
    assert loss.item() == pytest.approx((2 * math.log(2) - math.log(sigma(1.5)) - math.log(sigma(2.0))) / 4, abs=1e-12)
    loss.backward()
    grad_a = [(sigma(d) - q) / 4 for d, q in zip([0.0, 1.5, -2.0, 0.0], p.tolist())]   # (sigma(d) - p) / N
    assert r_a.grad.tolist() == pytest.approx(grad_a, abs=1e-12)
    assert r_b.grad.tolist() == pytest.approx([-g for g in grad_a], abs=1e-12)   # only r_a - r_b matters


@pytest.mark.parametrize("g_a, g_b, tau, p", [(1.0, 0.0, 0.0, 1.0), (0.0, 1.0, 0.0, 0.0), (0.5, 0.5, 0.0, 0.5),
                                              (0.5, 0.5, 2.0, 0.5), (1.0, -1.0, 0.5, sigma(4)), (1e9, 0.0, 1e-9, 1.0)])
def test_bradley_terry_labels(g_a, g_b, tau, p):           # the last: no overflow
    assert rm.preference(g_a, g_b, tau) == pytest.approx(p, abs=1e-15)


def test_gold_figures_by_hand():
    """J* is the mean over prompts of beta log mean exp(g / beta) over each prompt's own n samples of
    pi_ref: here any other grouping of the six samples (sliding, strided, the policy's) gives another J*."""
    prompts, n, beta = ["the food", "the room"], 3, 0.5
    ref = ["the food is good.", "the food is nice.", "the food is bad.",       # gold 1, 1, -1
           "the room is okay.", "the room is" + rm.NO_EOS, "the room is fine."]   # 0, -1 (never ended), 0
    pol = ["the food is good.", "the food is nice.", "the food is great.", "the room is great.",
           "the room is bad.", "the room is okay."]                            # 1, 1, 1, 1, -1, 0
    g = rm.gold_figures(positive, "positive", prompts, n, ref, pol, kl_policy=0.8, beta=beta)
    assert g["gold_reward_reference"] == pytest.approx((1 + 1 - 1 + 0 + NO_EOS_PENALTY + 0) / 6)
    assert g["gold_reward_policy"] == pytest.approx(3 / 6)
    assert g["gold_objective_policy"] == pytest.approx(0.5 - beta * 0.8)
    lme = lambda g: beta * math.log(sum(math.exp(v / beta) for v in g) / len(g))
    j_star = (lme([1, 1, -1]) + lme([0, -1, 0])) / 2
    assert g["gold_objective_optimal"] == pytest.approx(j_star, abs=1e-12)
    assert j_star != pytest.approx((lme([1, 1, -1]) + lme([1, -1, 0])) / 2)      # (sliding windows differ)
    assert g["gold_optimality_gap"] == pytest.approx((j_star - g["gold_objective_policy"]) / j_star)


def test_reward_read_at_the_last_token_and_the_accuracy_by_hand():
    count_g = lambda ids: (None, (ids == VOCAB.encode("g")[0]).float().cumsum(1))   # value: the g's read so far
    xs, ys = ["the food", "the room"], [" is good.", " was great and good."]
    assert rm.raw_rewards(count_g, VOCAB, xs, ys, "cpu").tolist() == [1.0, 2.0]   # all of x + y + EOS
    pairs = [("the food", " is good.", " is bad.", 1.0),      # right: one g against none
             ("the food", " is good.", " is bad.", 0.0),      # wrong
             ("the food", " is good.", " is great.", 1.0),    # wrong: one against one is no preference
             ("the food", " is great.", " is good.", 0.0),    # wrong: equal rewards rank nothing
             ("the food", " is bad.", " is fine.", 0.5)]      # a tie has no right answer: left out
    assert rm.accuracy(count_g, VOCAB, pairs, "cpu") == pytest.approx(1 / 4)


def test_training_reads_r_phi_where_scoring_does_at_the_final_eos_and_decays_the_lr(monkeypatch):
    """A fake r_phi whose value is the token id shows the column read: the EOS after x + y, in both.
    The learning rate of each step falls linearly to 0."""
    class TokenId(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.value_head = torch.nn.Linear(1, 1)
        def forward(self, ids):                             # noqa: E301
            return None, ids.float() + 0 * self.value_head.bias   # (B, T): the token id at every position
    seen, loss, lrs, step = [], rm.bradley_terry_loss, [], torch.optim.AdamW.step
    monkeypatch.setattr(rm, "bradley_terry_loss", lambda r_a, r_b, p: seen.append((r_a, r_b)) or loss(r_a, r_b, p))
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self: lrs.append(self.param_groups[0]["lr"]) or step(self))
    pairs = [("the food", " is good.", " was bad", 1.0), ("the room", " is great and fine", " is ok", 0.0)]
    rm.train_reward_model(TokenId(), VOCAB, pairs, epochs=2, lr=1e-3, batch=1, device="cpu")
    eos = float(VOCAB.eos_id)
    assert [torch.cat(r).tolist() for r in seen] == [[eos] * 2] * 4
    assert lrs == pytest.approx([1e-3, 0.75e-3, 0.5e-3, 0.25e-3], abs=1e-15)      # 2 epochs of 2 steps
    assert rm.raw_rewards(TokenId(), VOCAB, ["the food", "the room"], [" is good.", " is"], "cpu").tolist() == [eos] * 2


def test_the_normalisation_gives_mean_0_and_sd_1_and_refuses_a_constant_reward():
    r = torch.tensor([3.0, 5.0, 4.0, 12.0], dtype=torch.float64)
    gain, bias = rm.normalisation(r)
    assert [(gain * r + bias).mean().item(), (gain * r + bias).std().item()] == pytest.approx([0, 1], abs=1e-12)
    # the loop's r(x, y): mean 0 and sd 1 on the responses it was normalised on, for an r_phi far
    # from them (10 + 3 x the g's read), so that a bias added before the gain is seen
    fake = lambda ids: (None, 10 + 3 * (ids == VOCAB.encode("g")[0]).float().cumsum(1))
    xs, ys = ["the food"] * 4, [" is good.", " is great and good.", " is bad.", " is good and great and good."]
    gain, bias = rm.normalisation(rm.raw_rewards(fake, VOCAB, xs, ys, "cpu").double())
    reward = rm.learned_reward(fake, VOCAB, gain, bias, "cpu")
    r = torch.tensor([reward(x, y) for x, y in zip(xs, ys)], dtype=torch.float64)
    assert abs(gain - 1) > 0.5 and [r.mean().item(), r.std().item()] == pytest.approx([0, 1], abs=1e-5)
    with pytest.raises(UsageError, match="it learned nothing"):
        rm.normalisation(torch.zeros(100, dtype=torch.float64))


@pytest.fixture(scope="module")
def ref_run(reference):
    run = runs.Run(cli.config_from(str(reference / "config.json")))
    return run, pretrained_policy(run, build=False)[0].requires_grad_(False)


def test_gold_labels_follow_the_gold_reward(ref_run):
    run, ref = ref_run
    torch.manual_seed(0)
    rows = rm.gold_pairs(ref, run.vocab, run.prompts, positive, 200, 0.0, run.cfg, "cpu", random.Random(0))
    for row in rows:
        x = row["prompt"]
        g_1, g_2 = (positive(x, row[k][len(x):]) for k in ("response_1", "response_2"))
        assert (row["gold_1"], row["gold_2"]) == (g_1, g_2) and not row["response_1"].endswith(rm.NO_EOS)
        assert row["answer"] == gold_answer(row)
    assert len(rows) == 200 and {row["answer"] for row in rows} == {"1", "2", "t"}
    decided = rm.gold_pairs(ref, run.vocab, run.prompts, positive, 100, 0.0, run.cfg, "cpu", random.Random(1), True)
    assert all(r["gold_1"] != r["gold_2"] for r in decided) and len(decided) == 100


def test_human_judgements_become_training_pairs(tmp_path):
    """human_eval.jsonl's answers: 1 -> 1, 2 -> 0, tie -> 0.5; a skip and an unfinished response dropped."""
    rows = [{**GOOD, "answer": a} for a in "12ts"] + [{**GOOD, "response_2": "the food is" + rm.NO_EOS}]
    (tmp_path / "h.jsonl").write_text("".join(json.dumps(r) + "\n\n" for r in rows))
    pairs = rm.training_pairs(rm.read_pairs(str(tmp_path / "h.jsonl"), VOCAB, 68))
    assert pairs == [("the food", " is good.", " is bad.", p) for p in (1.0, 0.0, 0.5)]


def test_a_pi_ref_that_never_ends_a_sentence_is_refused_not_looped_on():
    ref = Policy(ModelConfig(VOCAB.size, block_size=30, n_layer=1, n_head=1, d_model=8)).eval()
    with torch.no_grad():                   # a constant hidden state whose EOS logit is -100
        ref.ln_f.weight.zero_()
        ref.ln_f.bias.zero_()
        ref.ln_f.bias[0] = 1.0
        ref.lm_head.weight[VOCAB.eos_id, 0] = -100.0
    with pytest.raises(UsageError, match=r"pi_ref finished both responses of only 0 of \d+ pairs"):
        rm.gold_pairs(ref, VOCAB, ["the food"], positive, 5, 0.0, Config(max_new_tokens=8), "cpu", random.Random(0))


@pytest.fixture(scope="module")
def learned(reference, tmp_path_factory):
    """A reward model from 200 pairs labelled with noise (--tau 0.5: about 1 in 10 decided pairs flipped)."""
    out = tmp_path_factory.mktemp("rm")
    assert rm.main(["--reference", str(reference / "reference.pt"), "--pairs", "200", "--held-out", "200",
                    "--tau", "0.5", "--out", str(out)]) == 0
    return out


def test_the_reward_model_recovers_the_gold_ranking_and_is_normalised_on_pi_ref(learned, ref_run):
    state = torch.load(learned / "reward_model.pt", weights_only=True)      # plain values only
    assert state["kind"] == "reward_model" and state["pairs"] == 200 and state["held_out_pairs"] == 200
    assert state["held_out_accuracy"] > 0.65, state["held_out_accuracy"]    # chance 0.5, sd 0.035; measured 0.76
    train, held = ([json.loads(line) for line in open(learned / f)] for f in ("pairs.jsonl", "held_out.jsonl"))
    assert len(train) == 200 and sum(r["answer"] != gold_answer(r) for r in train) > 0   # --tau: noisy (8)
    assert [r["answer"] for r in held] == [gold_answer(r) for r in held] and "t" not in {r["answer"] for r in held}
    key = lambda r: (r["prompt"], r["response_1"], r["response_2"])
    assert len({key(r) for r in held} & {key(r) for r in train}) < 10     # fresh pairs, not the training ones
    run, ref = ref_run
    model = Policy(ModelConfig(**state["model_config"]))
    model.load_state_dict(state["model"])           # the accuracy saved is the held-out pairs'
    assert rm.accuracy(model.eval(), run.vocab, rm.training_pairs(held), "cpu") == state["held_out_accuracy"]
    reward, _ = rm.load(str(learned), run.identity, torch.device("cpu"), run.pretrain)
    torch.manual_seed(5)
    r, _, texts = draw(ref, None, run.vocab, [random.Random(i).choice(run.prompts) for i in range(600)],
                       reward, run.cfg, "cpu")
    r = r[[not t.endswith(rm.NO_EOS) for t in texts]]
    assert abs(r.mean().item()) < 0.15 and abs(r.std().item() - 1) < 0.15    # fresh samples: ~0.04 noise


def test_ppo_against_the_learned_reward_logs_the_gold_one_and_resumes_only_with_it(learned, reference, tmp_path,
                                                                                    capsys):
    run_dir, model = with_reference(reference, tmp_path, "ppo"), tmp_path / "rm.pt"
    shutil.copy(learned / "reward_model.pt", model)
    code, _ = call(launch.main, capsys, "--out", run_dir, *TINY, "--iters", "2", "--reward-model", model)
    m, s = metrics(run_dir), json.load(open(run_dir / "summary.json"))
    # the gold reward 'positive' is -1, 0 or 1 per response: a mean over the batch of 32 is k / 32
    assert code == 0 and all(abs(row["gold_reward"] * 32 - round(row["gold_reward"] * 32)) < 1e-9 for row in m)
    assert any(abs(row["reward"] * 32 - round(row["reward"] * 32)) > 1e-3 for row in m)   # r_phi is not
    assert s["gold"] == "positive" and s["reward_model"] == str(model)
    assert s["gold_objective_policy"] == pytest.approx(s["gold_reward_policy"] - 0.1 * s["kl_policy"])
    future = os.path.getmtime(run_dir / "config.json") + 10
    os.utime(model, (future, future))                   # as if trained again after the run started
    code, err = call(launch.main, capsys, "--resume", run_dir, *TINY, "--iters", "3", "--reward-model", model)
    one_line(code, err, "trained again since this run started")
    assert len(metrics(run_dir)) == 2


def test_a_reward_model_output_that_is_not_finite_stops_the_run(learned, ref_run):
    run, _ = ref_run
    reward, state = rm.load(str(learned), run.identity, "cpu", run.pretrain)
    model = Policy(ModelConfig(**state["model_config"]))
    model.load_state_dict(state["model"])
    model.value_head.weight.data.fill_(3e38)           # finite weights, an infinite r_phi
    with pytest.raises(Failure, match=r"reward 'reward_model' on prompt 'the food' .* returned (inf|-inf|nan)"):
        launch.checked(rm.learned_reward(model, run.vocab, 1.0, 0.0, "cpu"))("the food", " is good.")


@pytest.mark.parametrize("corrupt, flags, says", [
    (lambda s: s["model"]["value_head.bias"].fill_(float("nan")), [], "not finite"),
    (lambda s: s.update(vocab="abc"), [], "'vocab': ('abc'"),
    (lambda s: s.update(kind="reference"), [], "not a minippo reward_model file"),
    (lambda s: s.update(extra=Config()), [], "not a readable minippo file"),   # pickled code: refused
    (lambda s: s.pop("pretrain"), [], "made for another pi_ref"),            # was a KeyError
    (lambda s: None, ["--seed", "1"], "'seed': (0, 1)"),
])
def test_a_reward_model_of_another_run_or_broken_is_refused_before_anything_is_written(
        learned, tmp_path, capsys, corrupt, flags, says):
    state = torch.load(learned / "reward_model.pt", weights_only=True)
    corrupt(state)
    torch.save(state, tmp_path / "bad.pt")
    one_line(*call(launch.main, capsys, "--out", tmp_path / "new", *TINY, *flags, "--reward-model",
                   tmp_path / "bad.pt"), says)
    assert not (tmp_path / "new").exists()


def test_training_on_a_pairs_file_records_its_pairs_and_never_replaces_the_input(learned, reference, tmp_path,
                                                                                   capsys):
    quick, new = ["--reference", reference / "reference.pt", "--held-out", "20", "--epochs", "1"], tmp_path / "new"
    assert call(rm.main, capsys, "--pairs-file", learned / "pairs.jsonl", "--out", new, *quick)[0] == 0
    assert [json.loads(line) for line in open(new / "pairs.jsonl")] == [json.loads(line) for line in
                                                                         open(learned / "pairs.jsonl")]
    (new / "pairs.jsonl").write_text((new / "pairs.jsonl").read_text().replace("\n", "\n\n"))  # not as rm writes
    before = snapshot(new)
    assert call(rm.main, capsys, "--pairs-file", new / "pairs.jsonl", "--out", new, "--force", *quick)[0] == 0
    state = torch.load(new / "reward_model.pt", weights_only=True)
    assert state["settings"]["pairs_file"] == str(new / "pairs.jsonl") and state["pairs"] == 200
    assert snapshot(new)["pairs.jsonl"] == before["pairs.jsonl"] and snapshot(new) != before


def test_a_failed_write_names_the_file_and_keeps_the_old_model_and_pairs(learned, reference, tmp_path):
    out = shutil.copytree(learned, tmp_path / "rm")     # a size limit above the pairs' (~7 kB), below the model's
    before = snapshot(out)
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    p = subprocess.run([sys.executable, "-m", "minippo.extras.reward_model", "--out", out, "--force", "--pairs",
                        "40", "--held-out", "20", "--epochs", "1", "--reference", reference / "reference.pt"],
                       cwd=ROOT, capture_output=True, text=True, preexec_fn=limit)
    err = "\n".join(line for line in p.stderr.splitlines() if not line.startswith("reward model:"))   # (tqdm)
    one_line(p.returncode, err, f"{out}/reward_model.pt", "nothing of the reward model was saved", expected=1)
    assert snapshot(out) == before                        # old model and pairs, and no temporary file


@pytest.mark.parametrize("failing", ["pairs.jsonl", "held_out.jsonl"])
def test_a_write_that_fails_after_another_succeeded_replaces_nothing(learned, reference, tmp_path, capsys,
                                                                     monkeypatch, failing):
    """The results are replaced together: the disk filling up at the second or third file keeps the old ones."""
    out, fsync = shutil.copytree(learned, tmp_path / "rm"), os.fsync
    before = snapshot(out)

    def full_disk(fd):
        if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(f"{failing}.tmp"):
            raise OSError(errno.ENOSPC, "No space left on device")
        fsync(fd)
    monkeypatch.setattr(os, "fsync", full_disk)
    code, err = call(rm.main, capsys, "--out", out, "--force", "--pairs", "40", "--held-out", "20", "--epochs", "1",
                     "--reference", reference / "reference.pt")
    one_line(code, "\n".join(lines_of(err)), f"{out}/{failing}: No space left on device; nothing of the reward "
             f"model was saved", expected=1)
    assert snapshot(out) == before


def test_sigterm_while_the_reward_model_trains_is_one_line_and_exit_130(learned, reference, tmp_path):
    out = shutil.copytree(learned, tmp_path / "rm")
    before = snapshot(out)
    p = subprocess.Popen([sys.executable, "-m", "minippo.extras.reward_model", "--out", out, "--force", "--pairs",
                          "40", "--held-out", "20", "--epochs", "1000", "--reference", reference / "reference.pt"],
                         cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = ""
    while "reward model:" not in seen and p.poll() is None:     # tqdm's bar: the training has begun
        seen += p.stderr.read(1)
    p.send_signal(signal.SIGTERM)                                # what a scheduler or `docker stop` sends
    err = seen + p.stderr.read()
    assert (p.wait(timeout=60), lines_of(err)) == (130, ["stopped; nothing of the reward model was saved"])
    assert snapshot(out) == before


def test_the_overoptimisation_study_end_to_end(learned, reference, tmp_path, capsys):
    """A beta sweep against a reward model (two betas 1e-7 apart: two runs), then the report: its table
    against the CSV, metrics.jsonl and summary.json; a run without the gold reward, or whose reward
    model was trained again since: one line."""
    model, out = shutil.copytree(learned, tmp_path / "rm"), tmp_path / "study"
    code, err = call(sweep.main, capsys, "--sweep", "beta=0.1,0.1000001", "--reward-model", model, "--out",
                     out / "ppo", *TINY, "--iters", "4", "--eval-samples", "4", "--batch", "16", "--minibatch", "8")
    assert code == 0, err[-500:]                            # (pi_ref: the cached one of `reference`)
    run_dirs = [str(out / "ppo" / f"beta={b}") for b in ("0.1", "0.1000001")]
    assert oo.main([*run_dirs, "--out", str(out), "--window", "2"]) == 0
    table = [line.split() for line in capsys.readouterr().out.splitlines() if line.split()[:1] == [str(model)]]
    rows = list(csv.DictReader(open(out / "overoptimisation.csv")))
    assert [(r["beta"], r["iter"]) for r in rows] == [(b, str(i)) for b in ("0.1", "0.1000001") for i in (2, 4)]
    for cells in table:                                     # each beta's numbers come from its own run
        m_dir, ours = out / "ppo" / f"beta={cells[2]}", [r for r in rows if r["beta"] == cells[2]]
        m, end = metrics(m_dir), json.load(open(m_dir / "summary.json"))
        assert json.load(open(m_dir / "config.json"))["beta"] == float(cells[2])
        assert cells[1] == f"{end['reward_model_accuracy']:.3f}"
        assert float(ours[0]["gold_reward"]) == pytest.approx(sum(x["gold_reward"] for x in m[:2]) / 2)
        assert float(ours[0]["sqrt_kl"]) == pytest.approx(math.sqrt(sum(x["kl"] for x in m[:2]) / 2))
        peak = max(ours, key=lambda r: float(r["gold_reward"]))     # the gold's best window, not the proxy's
        want = [f"{float(peak[k]):.3f}" for k in ("gold_reward", "sqrt_kl")] + [peak["iter"]]
        assert cells[3:8] == want + [f"{float(peak['proxy_reward']):.3f}", f"{math.sqrt(end['kl_policy']):.3f}"]
    assert len(table) == 2
    assert (out / "overoptimisation.png").exists() == (plot.figure(1, 1, (1, 1)) is not None)   # (matplotlib?)
    assert not (out / "overoptimisation.png").exists() or (out / "overoptimisation.png").stat().st_size > 10_000
    path = out / "ppo" / "beta=0.1" / "metrics.jsonl"
    path.write_text("".join(json.dumps(m) + "\n" for m in metrics(path.parent, drop=("kl",))))
    one_line(*call(oo.main, capsys, *run_dirs, "--out", out), f"{path.parent}: iteration 1 has no kl or gold_reward")
    future = os.path.getmtime(out / "ppo" / "beta=0.1000001" / "config.json") + 10
    os.utime(model / "reward_model.pt", (future, future))          # trained again after the runs started
    one_line(*call(oo.main, capsys, run_dirs[1], "--out", out), f"{model}/reward_model.pt: trained again since")


def test_the_report_s_peak_is_the_gold_reward_s_and_its_end_column_a_square_root(tmp_path, capsys):
    """Windows where the proxy peaks later than the gold reward: the report's peak row is the gold's."""
    w = [{"iter": i, "kl": kl, "sqrt_kl": math.sqrt(kl), "proxy_reward": proxy, "gold_reward": gold,
          "grammatical": None} for i, kl, proxy, gold in [(2, 1.0, 0.1, 0.5), (4, 4.0, 0.9, 0.2)]]
    end = {"kl_policy": 9.0, "reward_policy": 1.0, "gold_reward_policy": 0.0, "reward_reference": 0.0,
           "gold_reward_reference": 0.0, "gold": "positive"}
    oo.report([{"reward_model": "rm", "accuracy": 0.75, "beta": 0.0, "summary": end, "windows": w}], str(tmp_path), 2)
    row = next(line.split() for line in capsys.readouterr().out.splitlines() if line.split()[:1] == ["rm"])
    assert row[3:8] == ["0.500", "1.000", "2", "0.100", "3.000"]    # gold peak, its sqrt KL, iter, proxy; end sqrt KL


LINE_2 = "--pairs-file={}/p.jsonl, line 2: "
@pytest.mark.parametrize("main, flags, says", [
    (rm.main, ["--pairs", "0"], ["--pairs=0: must be at least 1"]),
    (rm.main, ["--tau", "nan"], ["--tau=nan"]),
    (rm.main, ["--lr", "2"], ["--lr=2.0: must be above 0 and at most 1"]),
    (rm.main, ["--out", ""], ["--out='': must name a folder"]),
    (rm.main, ["--reference", "nope.pt"], ["--reference=nope.pt: no such file"]),
    (rm.main, ["--reference", "RUN"], ["--reference=", "a folder"]),
    (rm.main, ["--pairs-file", "FOLDER"], ["--pairs-file=", "a folder"]),
    (rm.main, [], ["holds a reference.pt of other settings; use another folder, or --force"]),
    (rm.main, [{**GOOD, "answer": "t"}, {**GOOD, "answer": "s"}], ["p.jsonl: no finished pair has a winner"]),
    (rm.main, [GOOD, "{not json"], [LINE_2, "not JSON (Expecting property name"]),
    (rm.main, [GOOD, '{"prompt": ' + "9" * 5000 + "}"], [LINE_2, "not JSON (Python cannot read it)"]),
    (rm.main, [GOOD, '["a list"]'], [LINE_2, "not a JSON object"]),
    (rm.main, [GOOD, {**GOOD, "answer": "3"}], [LINE_2, "answer '3' is not 1, 2, t or s"]),
    (rm.main, [GOOD, {**GOOD, "response_1": "a room."}], [LINE_2, "response_1: not the prompt and one line"]),
    (rm.main, [GOOD, {**GOOD, "response_1": "the food\nis"}], [LINE_2, "response_1: not the prompt"]),
    (rm.main, [GOOD, {**GOOD, "response_1": "the food is G."}], [LINE_2, "character 'G'"]),
    (rm.main, [GOOD, {**GOOD, "response_2": "the food is" + " good" * 20}], [LINE_2, "of <= 66 characters"]),
    (oo.main, ["RUN"], ["not a finished train.py --reward-model run"]),    # a run of the gold reward
    (oo.main, ["RUN", "--window", "0"], ["--window=0: must be at least 1"]),
    (oo.main, ["FOLDER"], ["config.json: not a minippo run's config.json"]),
])
def test_bad_input_is_one_line_and_changes_nothing(reference, tmp_path, capsys, main, flags, says):
    """Refused before any work, in a train.py run folder with its own pi_ref (not the defaults')."""
    out = with_reference(reference, tmp_path, "run")
    if flags and not isinstance(flags[0], str):             # the lines of a pairs file
        (tmp_path / "p.jsonl").write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in flags))
        flags = ["--pairs-file", tmp_path / "p.jsonl", "--reference", out / "reference.pt"]
    flags = [{"FOLDER": tmp_path, "RUN": reference}.get(f, f) for f in flags]
    before, listing = snapshot(out), sorted(os.listdir(tmp_path))
    one_line(*call(main, capsys, "--out", out, *flags), *[w.format(tmp_path) for w in says])
    assert snapshot(out) == before and sorted(os.listdir(tmp_path)) == listing
