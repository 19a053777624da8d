"""The reward model (minippo/extras/reward_model.py) and the over-optimisation report."""
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
from minippo.extras import cli, launch, plot, runs, sweep
from minippo.extras import overoptimisation as oo, reward_model as rm
from minippo.extras.reference import pretrained_policy
from minippo.extras.files import Failure, UsageError
from minippo.model import ModelConfig, Policy
from minippo.rewards import NO_EOS_PENALTY, positive, short

sigma = lambda z: 1 / (1 + math.exp(-z))
VOCAB = runs.Run(Config(out="unused", corpus_lines=4000)).vocab
FOOD = "the food"
GOOD = dict(prompt=FOOD, response_1=FOOD + " is good.", response_2=FOOD + " is bad.", answer="1")
pair = lambda **changes: {**GOOD, **changes}  # a line of a pairs file, as human_eval.jsonl's
count_g = lambda ids: (None, (ids == VOCAB.encode("g")[0]).float().cumsum(1))  # value: g's so far


def gold_answer(row):
    """The answer a noise-free labeller gives a row: the gold reward's ranking."""
    x = row["prompt"]
    g_1, g_2 = (positive(x, row[k][len(x):]) for k in ("response_1", "response_2"))
    return "t" if g_1 == g_2 else "1" if g_1 > g_2 else "2"


def lines_of(err):
    """Standard error without tqdm's bars."""
    return [s for s in err.splitlines() if s.strip() and not s.startswith(("reward model:", "rl:"))]


def test_bradley_terry_loss_gradient_and_labels():
    f64 = dict(dtype=torch.float64, requires_grad=True)
    r_a, r_b = torch.tensor([0.0, 2.0, -1.0, 0.5], **f64), torch.tensor([0.0, 0.5, 1.0, 0.5], **f64)
    p = torch.tensor([1.0, 1.0, 0.0, 0.5], dtype=torch.float64)  # a wins, a wins, b wins, tie
    loss = rm.bradley_terry_loss(r_a, r_b, p)
    want = (2 * math.log(2) - math.log(sigma(1.5)) - math.log(sigma(2.0))) / 4
    assert loss.item() == pytest.approx(want, abs=1e-12)
    loss.backward()
    # d loss / d r_a = (sigma(d) - p) / N, and only r_a - r_b matters
    grad_a = [(sigma(d) - q) / 4 for d, q in zip([0.0, 1.5, -2.0, 0.0], p.tolist())]
    assert r_a.grad.tolist() == pytest.approx(grad_a, abs=1e-12)
    assert r_b.grad.tolist() == pytest.approx([-g for g in grad_a], abs=1e-12)
    # the labels' P(a preferred) for (g_a, g_b, tau); the last: no overflow
    cases = [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.5, 0.5, 0.0), (0.5, 0.5, 2.0), (1.0, -1.0, 0.5)]
    cases.append((1e9, 0.0, 1e-9))
    labels = [rm.preference(*c) for c in cases]
    assert labels == pytest.approx([1.0, 0.0, 0.5, 0.5, sigma(4), 1.0], abs=1e-15)


def test_gold_figures_by_hand():
    """J* is the mean over prompts of beta log mean exp(g / beta) over each prompt's own n samples
    of pi_ref: here any other grouping of the six samples (sliding, strided, the policy's) gives
    another J*; each sample is scored after its own prompt (here of two lengths, one with a word the
    gold reward reads: read with another's prompt, or its own twice, a sample scores otherwise)."""
    room, n, beta = "the bad room", 3, 0.5
    said = lambda x, *words: [f"{x} is {w}." for w in words]
    # gold 1, 1, -1; then -1, -1 (never ended), 0: J(pi_ref) = -1/6
    ref = said(FOOD, "good", "nice", "bad") + said(room, "okay") + [room + " is good" + rm.NO_EOS]
    ref += said(room, "good")
    # the policy's: 1, 1, 1, 0, 0, 0
    pol = said(FOOD, "good", "nice", "great") + said(room, "great", "good", "nice")
    g = rm.gold_figures(positive, "positive", [FOOD, room], n, ref, pol, kl_policy=0.8, beta=beta)
    assert g["gold_reward_reference"] == pytest.approx((1 + 1 - 1 - 1 + NO_EOS_PENALTY + 0) / 6)
    assert g["gold_reward_policy"] == pytest.approx(3 / 6)
    assert g["gold_objective_policy"] == pytest.approx(0.5 - beta * 0.8)
    lme = lambda g: beta * math.log(sum(math.exp(v / beta) for v in g) / len(g))
    j_star = (lme([1, 1, -1]) + lme([-1, -1, 0])) / 2
    assert g["gold_objective_optimal"] == pytest.approx(j_star, abs=1e-12)
    assert j_star != pytest.approx((lme([1, 1, -1]) + lme([1, -1, -1])) / 2)  # (sliding windows)
    assert g["gold_optimality_gap"] == pytest.approx((j_star - 0.1) / (j_star + 1 / 6))
    # by the length of y alone (12 characters: 1, each one off -1/6): y one character short is seen
    g = rm.gold_figures(short, "short", [FOOD, room], n, ref, pol, kl_policy=0.8, beta=beta)
    assert g["gold_reward_reference"] == pytest.approx((0.5 * 4 + 1 / 3 + NO_EOS_PENALTY) / 6)


def test_reward_read_at_the_last_token_and_the_accuracy_by_hand():
    xs, ys = [FOOD, "the room"], [" is good.", " was great and good."]
    assert rm.raw_rewards(count_g, VOCAB, xs, ys, "cpu").tolist() == [1, 2]  # all of x + y + EOS
    pairs = [(FOOD, " is good.", " is bad.", 1.0),  # right: one g against none
             (FOOD, " is good.", " is bad.", 0.0),  # wrong
             (FOOD, " is good.", " is great.", 1.0),  # wrong: one against one is no preference
             (FOOD, " is great.", " is good.", 0.0),  # wrong: equal rewards rank nothing
             (FOOD, " is bad.", " is fine.", 0.5)]  # a tie has no right answer: left out
    assert rm.accuracy(count_g, VOCAB, pairs, "cpu") == pytest.approx(1 / 4)


class TokenId(torch.nn.Module):
    """A fake r_phi whose value is the token id at every position: it shows the column read."""

    def __init__(self):
        super().__init__()
        self.value_head = torch.nn.Linear(1, 1)

    def forward(self, ids):
        return None, ids.float() + 0 * self.value_head.bias


def test_training_reads_r_phi_where_scoring_does_at_the_final_eos_and_decays_the_lr(monkeypatch):
    """Training and scoring both read the EOS after x + y; each step's lr falls linearly to 0."""
    seen, loss, lrs, step = [], rm.bradley_terry_loss, [], torch.optim.AdamW.step
    spy = lambda r_a, r_b, p: seen.append((r_a, r_b)) or loss(r_a, r_b, p)
    monkeypatch.setattr(rm, "bradley_terry_loss", spy)
    lr_spy = lambda o: lrs.append(o.param_groups[0]["lr"]) or step(o)
    monkeypatch.setattr(torch.optim.AdamW, "step", lr_spy)
    pairs = [(FOOD, " is good.", " was bad", 1.0), ("the room", " is nice and fine", " is ok", 0.0)]
    rm.train_reward_model(TokenId(), VOCAB, pairs, epochs=2, lr=1e-3, batch=1, device="cpu")
    eos = float(VOCAB.eos_id)
    assert [torch.cat(r).tolist() for r in seen] == [[eos] * 2] * 4
    assert lrs == pytest.approx([1e-3, 0.75e-3, 0.5e-3, 0.25e-3], abs=1e-15)  # 2 epochs of 2 steps
    scored = rm.raw_rewards(TokenId(), VOCAB, [FOOD, "the room"], [" is good.", " is"], "cpu")
    assert scored.tolist() == [eos] * 2


def test_the_normalisation_gives_mean_0_and_sd_1_and_refuses_a_constant_reward():
    """The loop's r(x, y) is (r_phi - mean) / sd over the responses it was normalised on, exactly,
    for an r_phi (10 + 3 x the g's: 13, 16, 10, 19) far from mean 0 and sd 1, so that a bias added
    before the gain, or a gain of the wrong sign, is seen; one (10) is below NO_EOS_PENALTY."""
    fake = lambda ids: (None, 10 + 3 * count_g(ids)[1])
    ys = [" is good.", " is great and good.", " is bad.", " is good and great and good."]
    gain, bias, low = rm.normalisation(rm.raw_rewards(fake, VOCAB, [FOOD] * 4, ys, "cpu").double())
    reward = rm.learned_reward(fake, VOCAB, gain, bias, "cpu")
    want = [(v - 14.5) / math.sqrt(15) for v in (13, 16, 10, 19)]
    assert [reward(FOOD, y) for y in ys] == pytest.approx(want, abs=1e-12) and low == 1 / 4
    with pytest.raises(UsageError, match="it learned nothing"):
        rm.normalisation(torch.zeros(100, dtype=torch.float64))


def test_human_judgements_become_training_pairs(tmp_path):
    """human_eval.jsonl's answers: 1 -> 1, 2 -> 0, tie -> 0.5; a skip and an unfinished response
    dropped."""
    rows = [pair(answer=a) for a in "12ts"] + [pair(response_2=FOOD + rm.NO_EOS)]
    (tmp_path / "h.jsonl").write_text("".join(json.dumps(r) + "\n\n" for r in rows))
    pairs = rm.training_pairs(rm.read_pairs(str(tmp_path / "h.jsonl"), VOCAB, 68))
    assert pairs == [(FOOD, " is good.", " is bad.", p) for p in (1.0, 0.0, 0.5)]


def test_a_pi_ref_that_never_ends_a_sentence_is_refused_not_looped_on():
    ref = Policy(ModelConfig(VOCAB.size, block_size=30, n_layer=1, n_head=1, d_model=8)).eval()
    with torch.no_grad():  # a constant hidden state whose EOS logit is -100
        ref.ln_f.weight.zero_()
        ref.ln_f.bias.zero_()
        ref.ln_f.bias[0] = 1.0
        ref.lm_head.weight[VOCAB.eos_id, 0] = -100.0
    cfg, rng = Config(max_new_tokens=8), random.Random(0)
    with pytest.raises(UsageError, match=r"pi_ref finished both responses of only 0 of \d+ pairs"):
        rm.gold_pairs(ref, VOCAB, [FOOD], positive, 5, 0.0, cfg, "cpu", rng)


@pytest.fixture(scope="module")
def ref_run(reference):
    run = runs.Run(cli.config_from(str(reference / "config.json")))
    return run, pretrained_policy(run, build=False)[0].requires_grad_(False)


@pytest.fixture(scope="module")
def learned(reference, tmp_path_factory):
    """A reward model from 200 pairs labelled with noise (--tau 0.5: about 1 in 10 decided pairs
    flipped), and 200 held-out ones."""
    out = tmp_path_factory.mktemp("rm")
    args = ["--reference", reference / "reference.pt", "--pairs", 200, "--held-out", 200]
    assert rm.main([*map(str, args), "--tau", "0.5", "--out", str(out)]) == 0
    return out


def test_the_reward_model_recovers_the_gold_ranking_and_is_normalised_on_pi_ref(learned, ref_run):
    """The pairs follow the gold reward (noisy for training, noise-free and without ties held out,
    both only of finished responses); the held-out accuracy; r_phi normalised on fresh pi_ref
    samples; an r_phi that is not finite stops the run."""
    state = torch.load(learned / "reward_model.pt", weights_only=True)  # plain values only
    assert (state["kind"], state["pairs"], state["held_out_pairs"]) == ("reward_model", 200, 200)
    assert state["held_out_accuracy"] > 0.65, state  # chance 0.5, sd 0.035; measured 0.76
    read = lambda name: [json.loads(s) for s in open(learned / name)]
    train, held = read("pairs.jsonl"), read("held_out.jsonl")
    for row in train + held:
        x, (y_1, y_2) = row["prompt"], (row["response_1"], row["response_2"])
        assert [row["gold_1"], row["gold_2"]] == [positive(x, y[len(x):]) for y in (y_1, y_2)]
        assert not y_1.endswith(rm.NO_EOS) and not y_2.endswith(rm.NO_EOS)
    assert len(train) == 200 and {r["answer"] for r in train} == {"1", "2", "t"}
    assert all((r["answer"] == "t") == (r["gold_1"] == r["gold_2"]) for r in train)  # ties: "t"
    assert sum(r["answer"] != gold_answer(r) for r in train) > 0  # --tau: noisy (8)
    assert [r["answer"] for r in held] == [gold_answer(r) for r in held]
    assert "t" not in {r["answer"] for r in held}
    key = lambda r: (r["prompt"], r["response_1"], r["response_2"])
    # fresh, not the training's (its draws reused: 126 in both); by chance ~4e-4 repeats (seed 0: 0)
    assert not {key(r) for r in held} & {key(r) for r in train}
    run, ref = ref_run
    model = Policy(ModelConfig(**state["model_config"]))
    model.load_state_dict(state["model"])  # the accuracy saved is the held-out pairs'
    acc = rm.accuracy(model.eval(), run.vocab, rm.training_pairs(held), "cpu")
    assert acc == state["held_out_accuracy"]
    reward, _ = rm.load(str(learned), run.identity, torch.device("cpu"), run.pretrain)
    torch.manual_seed(5)
    xs = [random.Random(i).choice(run.prompts) for i in range(600)]
    r, _, texts = draw(ref, None, run.vocab, xs, reward, run.cfg, "cpu")
    r = r[[not t.endswith(rm.NO_EOS) for t in texts]]
    assert abs(r.mean().item()) < 0.15 and abs(r.std().item() - 1) < 0.15  # fresh: ~0.04 noise
    model.value_head.weight.data.fill_(3e38)  # finite weights, an infinite r_phi
    says = r"reward 'reward_model' on prompt 'the food' .* returned (inf|-inf|nan)"
    with pytest.raises(Failure, match=says):
        launch.checked(rm.learned_reward(model, run.vocab, 1.0, 0.0, "cpu"))(FOOD, " is good.")


def test_ppo_against_r_phi_logs_the_gold_reward(learned, reference, tmp_path, capsys):
    """PPO against the learned reward logs the gold one, and resumes only with the same r_phi."""
    run_dir, model = with_reference(reference, tmp_path, "ppo"), tmp_path / "rm.pt"
    shutil.copy(learned / "reward_model.pt", model)
    flags = [*TINY, "--reward-model", model]
    code, _ = call(launch.main, capsys, "--out", run_dir, *flags, "--iters", "2")
    m, s = metrics(run_dir), json.load(open(run_dir / "summary.json"))
    # the gold reward 'positive' is -1, 0 or 1 per response: a mean over the batch of 32 is k / 32
    k_32 = lambda v: abs(v * 32 - round(v * 32))
    assert code == 0 and all(k_32(row["gold_reward"]) < 1e-9 for row in m)
    assert any(k_32(row["reward"]) > 1e-3 for row in m)  # r_phi's is not
    assert s["gold"] == "positive" and s["reward_model"] == str(model)
    gold_j = s["gold_reward_policy"] - 0.1 * s["kl_policy"]
    assert s["gold_objective_policy"] == pytest.approx(gold_j)
    future = os.path.getmtime(run_dir / "config.json") + 10
    os.utime(model, (future, future))  # as if trained again after the run started
    code, err = call(launch.main, capsys, "--resume", run_dir, *flags, "--iters", "3")
    one_line(code, err, "trained again since this run started")
    assert len(metrics(run_dir)) == 2


CORRUPT = [
    (lambda s: s["model"]["value_head.bias"].fill_(float("nan")), [], "not finite"),
    (lambda s: s.update(vocab="abc"), [], "'vocab': ('abc'"),
    (lambda s: s.update(kind="reference"), [], "not a minippo reward_model file"),
    (lambda s: s.update(extra=Config()), [], "not a readable minippo file"),  # pickled code
    (lambda s: s.pop("pretrain"), [], "made for another pi_ref"),  # was a KeyError
    (lambda s: None, ["--seed", "1"], "'seed': (0, 1)"),
]


@pytest.mark.parametrize("corrupt, flags, says", CORRUPT)
def test_a_broken_or_foreign_reward_model_refused(learned, tmp_path, capsys, corrupt, flags, says):
    """A reward model of another run, or broken: one line, before anything is written."""
    state = torch.load(learned / "reward_model.pt", weights_only=True)
    corrupt(state)
    torch.save(state, tmp_path / "bad.pt")
    flags = [*TINY, *flags, "--reward-model", tmp_path / "bad.pt"]
    one_line(*call(launch.main, capsys, "--out", tmp_path / "new", *flags), says)
    assert not (tmp_path / "new").exists()


def test_training_on_a_pairs_file(learned, reference, tmp_path, capsys):
    """It records its pairs, and never replaces the input."""
    new = tmp_path / "new"
    quick = ["--out", new, "--reference", reference / "reference.pt"]
    quick += ["--held-out", 20, "--epochs", 1]
    assert call(rm.main, capsys, "--pairs-file", learned / "pairs.jsonl", *quick)[0] == 0
    read = lambda path: [json.loads(line) for line in open(path)]
    assert read(new / "pairs.jsonl") == read(learned / "pairs.jsonl")
    text = (new / "pairs.jsonl").read_text()
    (new / "pairs.jsonl").write_text(text.replace("\n", "\n\n"))  # not as reward_model.py writes
    before = snapshot(new)
    assert call(rm.main, capsys, "--pairs-file", new / "pairs.jsonl", "--force", *quick)[0] == 0
    state = torch.load(new / "reward_model.pt", weights_only=True)
    assert state["settings"]["pairs_file"] == str(new / "pairs.jsonl") and state["pairs"] == 200
    assert snapshot(new)["pairs.jsonl"] == before["pairs.jsonl"] and snapshot(new) != before


def test_failed_or_stopped_writes_change_nothing(learned, reference, tmp_path, capsys, monkeypatch):
    """The results are replaced together or not at all: the disk filling up at the second or third
    file; a size limit above the pairs' (~7 kB), below the model's, in a real process; SIGTERM (what
    a scheduler or `docker stop` sends) while training: one line, exit 1 or 130, the old files kept
    and no temporary file."""
    out, fsync = shutil.copytree(learned, tmp_path / "rm"), os.fsync
    before = snapshot(out)
    args = ["--out", out, "--force", "--pairs", 40, "--held-out", 20]
    args += ["--reference", reference / "reference.pt"]
    for failing in ("pairs.jsonl", "held_out.jsonl"):
        def full_disk(fd):
            if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(f"{failing}.tmp"):
                raise OSError(errno.ENOSPC, "No space left on device")
            fsync(fd)
        monkeypatch.setattr(os, "fsync", full_disk)
        code, err = call(rm.main, capsys, *args, "--epochs", 1)
        says = f"{out}/{failing}: No space left on device; nothing of the reward model was saved"
        one_line(code, "\n".join(lines_of(err)), says, expected=1)
        assert snapshot(out) == before
    command = [sys.executable, "-m", "minippo.extras.reward_model", *map(str, args), "--epochs"]
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    p = subprocess.run([*command, "1"], cwd=ROOT, capture_output=True, text=True, preexec_fn=limit)
    says = f"{out}/reward_model.pt", "nothing of the reward model was saved"
    one_line(p.returncode, "\n".join(lines_of(p.stderr)), *says, expected=1)
    assert snapshot(out) == before
    pipes = dict(stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    p = subprocess.Popen([*command, "1000"], cwd=ROOT, **pipes)
    seen = ""
    while "reward model:" not in seen and p.poll() is None:  # tqdm's bar: the training has begun
        seen += p.stderr.read(1)
    p.send_signal(signal.SIGTERM)
    err = seen + p.stderr.read()
    assert p.wait(timeout=60) == 130
    assert lines_of(err) == ["stopped; nothing of the reward model was saved"]
    assert snapshot(out) == before


def test_the_overoptimisation_study_end_to_end(learned, reference, tmp_path, capsys):
    """A beta sweep against a reward model (two betas 1e-7 apart: two runs), then the report: its
    table against the CSV, metrics.jsonl and summary.json; a run without the gold reward, or whose
    reward model was trained again since: one line."""
    model, out = shutil.copytree(learned, tmp_path / "rm"), tmp_path / "study"
    small = [*TINY, "--iters", "4", "--eval-samples", "4", "--batch", "16", "--minibatch", "8"]
    sweep_of = ["--sweep", "beta=0.1,0.1000001", "--reward-model", model]
    code, err = call(sweep.main, capsys, *sweep_of, "--out", out / "ppo", *small)
    assert code == 0, err[-500:]  # (pi_ref: the cached one of `reference`)
    run_dirs = [str(out / "ppo" / f"beta={b}") for b in ("0.1", "0.1000001")]
    assert oo.main([*run_dirs, "--out", str(out), "--window", "2"]) == 0
    out_lines = capsys.readouterr().out.splitlines()
    table = [s.split() for s in out_lines if s.split()[:1] == [str(model)]]
    rows = list(csv.DictReader(open(out / "overoptimisation.csv")))
    want = [(b, str(i)) for b in ("0.1", "0.1000001") for i in (2, 4)]
    assert [(r["beta"], r["iter"]) for r in rows] == want
    for cells in table:  # each beta's numbers come from its own run
        m_dir, ours = out / "ppo" / f"beta={cells[2]}", [r for r in rows if r["beta"] == cells[2]]
        m, end = metrics(m_dir), json.load(open(m_dir / "summary.json"))
        assert json.load(open(m_dir / "config.json"))["beta"] == float(cells[2])
        assert cells[1] == f"{end['reward_model_accuracy']:.3f}"
        mean_2 = lambda key: sum(x[key] for x in m[:2]) / 2  # the first window's
        assert float(ours[0]["gold_reward"]) == pytest.approx(mean_2("gold_reward"))
        assert float(ours[0]["sqrt_kl"]) == pytest.approx(math.sqrt(mean_2("kl")))
        peak = max(ours, key=lambda r: float(r["gold_reward"]))  # the gold's best window
        want = [f"{float(peak[k]):.3f}" for k in ("gold_reward", "sqrt_kl")] + [peak["iter"]]
        want += [f"{float(peak['proxy_reward']):.3f}", f"{math.sqrt(end['kl_policy']):.3f}"]
        assert cells[3:8] == want
    assert len(table) == 2
    png = out / "overoptimisation.png"
    assert png.exists() == (plot.figure(1, 1, (1, 1)) is not None)  # (matplotlib?)
    assert not png.exists() or png.stat().st_size > 10_000
    path = out / "ppo" / "beta=0.1" / "metrics.jsonl"
    path.write_text("".join(json.dumps(m) + "\n" for m in metrics(path.parent, drop=("kl",))))
    says = f"{path.parent}: iteration 1 has no kl or gold_reward"
    one_line(*call(oo.main, capsys, *run_dirs, "--out", out), says)
    future = os.path.getmtime(out / "ppo" / "beta=0.1000001" / "config.json") + 10
    os.utime(model / "reward_model.pt", (future, future))  # trained again after the runs started
    says = f"{model}/reward_model.pt: trained again since"
    one_line(*call(oo.main, capsys, run_dirs[1], "--out", out), says)


def test_the_report_s_peak_is_the_gold_reward_s_and_its_end_column_a_square_root(tmp_path, capsys):
    """Windows where the proxy peaks later than the gold reward: the report's peak is the gold's."""
    names = ("iter", "kl", "sqrt_kl", "proxy_reward", "gold_reward", "grammatical")
    rows = [(2, 1.0, 1.0, 0.1, 0.5, None), (4, 4.0, 2.0, 0.9, 0.2, None)]
    w = [dict(zip(names, row)) for row in rows]
    end = dict.fromkeys(["gold_reward_policy", "reward_reference", "gold_reward_reference"], 0.0)
    end.update(kl_policy=9.0, reward_policy=1.0, gold="positive")
    studied = dict(reward_model="rm", accuracy=0.75, beta=0.0, summary=end, windows=w)
    oo.report([studied], str(tmp_path), 2)
    row = next(s.split() for s in capsys.readouterr().out.splitlines() if s.split()[:1] == ["rm"])
    # the gold's peak, its sqrt KL, its iteration, the proxy there; the end's sqrt KL
    assert row[3:8] == ["0.500", "1.000", "2", "0.100", "3.000"]


L2 = "--pairs-file={}/p.jsonl, line 2: "
BAD = [
    (rm.main, ["--pairs", "0"], ["--pairs=0: must be at least 1"]),
    (rm.main, ["--tau", "nan"], ["--tau=nan"]),
    (rm.main, ["--lr", "2"], ["--lr=2.0: must be above 0 and at most 1"]),
    (rm.main, ["--out", ""], ["--out='': must name a folder"]),
    (rm.main, ["--reference", "nope.pt"], ["--reference=nope.pt: no such file"]),
    (rm.main, ["--reference", "RUN"], ["--reference=", "a folder"]),
    (rm.main, ["--pairs-file", "FOLDER"], ["--pairs-file=", "a folder"]),
    (rm.main, [], ["holds a reference.pt of other settings; use another folder, or --force"]),
    (rm.main, [pair(answer="t"), pair(answer="s")], ["p.jsonl: no finished pair has a winner"]),
    (rm.main, [GOOD, "{not json"], [L2, "not JSON (Expecting property name"]),
    (rm.main, [GOOD, '{"prompt": ' + "9" * 5000 + "}"], [L2, "not JSON (Python cannot read it)"]),
    (rm.main, [GOOD, '["a list"]'], [L2, "not a JSON object"]),
    (rm.main, [GOOD, pair(answer="3")], [L2, "answer '3' is not 1, 2, t or s"]),
    (rm.main, [GOOD, pair(response_1="a room.")], [L2, "response_1: not the prompt and one line"]),
    (rm.main, [GOOD, pair(response_1="the food\nis")], [L2, "response_1: not the prompt"]),
    (rm.main, [GOOD, pair(response_1="the food is G.")], [L2, "character 'G'"]),
    (rm.main, [GOOD, pair(response_2=FOOD + " good" * 20)], [L2, "of <= 66 characters"]),
    (oo.main, ["RUN"], ["not a finished train.py --reward-model run"]),  # a run of the gold reward
    (oo.main, ["RUN", "--window", "0"], ["--window=0: must be at least 1"]),
    (oo.main, ["FOLDER"], ["config.json: not a minippo run's config.json"]),
]


@pytest.mark.parametrize("main, flags, says", BAD)
def test_bad_input_is_one_line_and_changes_nothing(reference, tmp_path, capsys, main, flags, says):
    """Refused before any work, in a train.py run folder with its own pi_ref (not the defaults')."""
    out = with_reference(reference, tmp_path, "run")
    if flags and not isinstance(flags[0], str):  # the lines of a pairs file
        lines = [r if isinstance(r, str) else json.dumps(r) for r in flags]
        (tmp_path / "p.jsonl").write_text("".join(s + "\n" for s in lines))
        flags = ["--pairs-file", tmp_path / "p.jsonl", "--reference", out / "reference.pt"]
    flags = [{"FOLDER": tmp_path, "RUN": reference}.get(f, f) for f in flags]
    before, listing = snapshot(out), sorted(os.listdir(tmp_path))
    one_line(*call(main, capsys, "--out", out, *flags), *[w.format(tmp_path) for w in says])
    assert snapshot(out) == before and sorted(os.listdir(tmp_path)) == listing
