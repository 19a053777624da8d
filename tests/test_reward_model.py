"""The reward model (minippo/extras/reward_model.py) and the over-optimisation measurement (overoptimisation.py)."""
import argparse
import csv
import json
import math
import os
import random
import resource
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, TINY, call, metrics, one_line, snapshot, with_reference
from minippo.config import Config
from minippo.evaluate import draw
from minippo.extras import cli, launch, plot, runs, overoptimisation as oo, reward_model as rm
from minippo.extras.reference import pretrained_policy
from minippo.extras.files import Failure, UsageError
from minippo.model import ModelConfig, Policy
from minippo.rewards import NO_EOS_PENALTY, positive

sigma = lambda z: 1 / (1 + math.exp(-z))
VOCAB = runs.Run(Config(out="unused", corpus_lines=4000)).vocab
GOOD = {"prompt": "the food", "response_1": "the food is good.", "response_2": "the food is bad.", "answer": "1"}


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


def test_training_reads_r_phi_where_scoring_does_at_the_final_eos(monkeypatch):
    """A fake r_phi whose value is the token id shows the column read: the EOS after x + y, in both."""
    class TokenId(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.value_head = torch.nn.Linear(1, 1)
        def forward(self, ids):                             # noqa: E301
            return None, ids.float() + 0 * self.value_head.bias   # (B, T): the token id at every position
    seen, loss = [], rm.bradley_terry_loss
    monkeypatch.setattr(rm, "bradley_terry_loss", lambda r_a, r_b, p: seen.append((r_a, r_b)) or loss(r_a, r_b, p))
    pairs = [("the food", " is good.", " was bad", 1.0), ("the room", " is great and fine", " is ok", 0.0)]
    rm.train_reward_model(TokenId(), VOCAB, pairs, epochs=1, lr=1e-3, batch=2, device="cpu")
    eos = float(VOCAB.eos_id)
    assert torch.cat(seen[0]).tolist() == [eos] * 4
    assert rm.raw_rewards(TokenId(), VOCAB, ["the food", "the room"], [" is good.", " is"], "cpu").tolist() == [eos] * 2


def test_the_normalisation_gives_mean_0_and_sd_1_and_refuses_a_constant_reward():
    r = torch.tensor([3.0, 5.0, 4.0, 12.0], dtype=torch.float64)
    gain, bias = rm.normalisation(r)
    assert [(gain * r + bias).mean().item(), (gain * r + bias).std().item()] == pytest.approx([0, 1], abs=1e-12)
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
        assert row["answer"] == ("t" if g_1 == g_2 else "1" if g_1 > g_2 else "2")
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
    out = tmp_path_factory.mktemp("rm")
    assert rm.main(["--reference", str(reference / "reference.pt"), "--pairs", "200", "--held-out", "200",
                    "--out", str(out)]) == 0
    return out


def test_the_reward_model_recovers_the_gold_ranking_and_is_normalised_on_pi_ref(learned, ref_run):
    state = torch.load(learned / "reward_model.pt", weights_only=True)      # plain values only
    assert state["kind"] == "reward_model" and state["pairs"] == 200 and state["held_out_pairs"] == 200
    assert state["held_out_accuracy"] > 0.7, state["held_out_accuracy"]     # chance 0.5, sd 0.035; measured 0.8
    assert [json.loads(line)["answer"] in "12t" for line in open(learned / "pairs.jsonl")] == [True] * 200
    run, ref = ref_run
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
    one_line(code, err, "was written after this run started")
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
    (lambda s: s.update(gain=float("inf")), [], "its normalisation (gain inf"),
    (lambda s: s.update(vocab="abc"), [], "'vocab': ('abc'"),
    (lambda s: s.update(kind="reference"), [], "not a minippo reward_model file"),
    (lambda s: s.update(extra=Config()), [], "not a readable minippo file"),   # pickled code: refused
    (lambda s: s.pop("pretrain"), [], "trained on another pi_ref"),          # was a KeyError
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
    assert state["pairs_file"] == str(new / "pairs.jsonl") and state["pairs"] == 200
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


def test_the_overoptimisation_command_end_to_end(reference, tmp_path, capsys):
    """Two betas 1e-7 apart: two runs; run again: all reused; a run whose metrics lack the KL: one line."""
    out = tmp_path / "oo"
    args = ["--out", out, "--reference", reference / "reference.pt", "--pairs", "40", "--betas", "0.1,0.1000001",
            "--iters", "4", "--window", "2", "--eval-samples", "4", "--batch", "16", "--minibatch", "8"]
    assert oo.main(list(map(str, args))) == 0
    table = [line.split() for line in capsys.readouterr().out.splitlines() if line.split()[:1] == ["40"]]
    rows = list(csv.DictReader(open(out / "overoptimisation.csv")))
    assert [(r["beta"], r["iter"]) for r in rows] == [(b, str(i)) for b in ("0.1", "0.1000001") for i in (2, 4)]
    for cells in table:                                     # each beta's numbers come from its own run
        m_dir, ours = out / "ppo_40_pairs" / f"beta={cells[2]}", [r for r in rows if r["beta"] == cells[2]]
        m, end = metrics(m_dir), json.load(open(m_dir / "summary.json"))
        assert json.load(open(m_dir / "config.json"))["beta"] == float(cells[2])
        assert float(ours[0]["gold_reward"]) == pytest.approx(sum(x["gold_reward"] for x in m[:2]) / 2)
        assert float(ours[0]["sqrt_kl"]) == pytest.approx(math.sqrt(sum(x["kl"] for x in m[:2]) / 2))
        peak = max(ours, key=lambda r: float(r["gold_reward"]))     # the gold's best window, not the proxy's
        assert [float(c) for c in cells[3:7]] == pytest.approx([float(peak[k]) for k in ("gold_reward", "sqrt_kl",
                                                                "iter", "proxy_reward")], abs=5e-4)
        assert float(cells[7]) == pytest.approx(math.sqrt(end["kl_policy"]), abs=5e-4)
    assert len(table) == 2
    assert (out / "overoptimisation.png").exists() == (plot.figure(1, 1, (1, 1)) is not None)   # (matplotlib?)
    assert not (out / "overoptimisation.png").exists() or (out / "overoptimisation.png").stat().st_size > 10_000
    made = {f: f.stat().st_mtime_ns for f in out.rglob("*") if f.name in ("reward_model.pt", "summary.json")}
    assert call(oo.main, capsys, *args)[0] == 0 and len(made) == 3
    assert {f: f.stat().st_mtime_ns for f in made} == made          # reused, not made again
    assert list(csv.DictReader(open(out / "overoptimisation.csv"))) == rows
    path = out / "ppo_40_pairs" / "beta=0.1" / "metrics.jsonl"
    path.write_text("".join(json.dumps(m) + "\n" for m in metrics(path.parent, drop=("kl",))))
    one_line(*call(oo.main, capsys, *args), f"{path.parent}/metrics.jsonl: iteration 1 has no numeric kl")


def test_the_report_s_peak_is_the_gold_reward_s_and_its_end_column_a_square_root(tmp_path, capsys):
    """Windows where the proxy peaks later than the gold reward: the report's peak row is the gold's."""
    w = [{"iter": i, "kl": kl, "sqrt_kl": math.sqrt(kl), "proxy_reward": proxy, "gold_reward": gold,
          "grammatical": None} for i, kl, proxy, gold in [(2, 1.0, 0.1, 0.5), (4, 4.0, 0.9, 0.2)]]
    end = {"kl_policy": 9.0, "reward_policy": 1.0, "gold_reward_policy": 0.0, "reward_reference": 0.0,
           "gold_reward_reference": 0.0}
    oo.report([{"pairs": "40", "accuracy": 0.75, "beta": "0.0", "summary": end, "windows": w}],
              argparse.Namespace(reward="positive", window=2, out=str(tmp_path)))
    row = next(line.split() for line in capsys.readouterr().out.splitlines() if line.split()[:1] == ["40"])
    assert row[3:8] == ["0.500", "1.000", "2", "0.100", "3.000"]    # gold peak, its sqrt KL, iter, proxy; end sqrt KL


LINE_2 = "--pairs-file={}/p.jsonl, line 2: "
@pytest.mark.parametrize("main, flags, says", [
    (rm.main, ["--pairs", "0"], ["--pairs=0: must be at least 1"]),
    (rm.main, ["--tau", "nan"], ["--tau=nan"]),
    (rm.main, ["--lr", "2"], ["--lr=2.0: must be above 0 and at most 1"]),
    (rm.main, ["--out", ""], ["--out='': must name a folder"]),
    (rm.main, ["--reference", "nope.pt"], ["--reference=nope.pt: no such file"]),
    (rm.main, ["--pairs-file", "FOLDER"], ["--pairs-file=", "a folder"]),
    (rm.main, [], ["holds a reference.pt pretrained with other settings"]),
    (rm.main, [{**GOOD, "answer": "t"}] * 3, ["fewer than 2 pairs of finished responses with a winner"]),
    (rm.main, [GOOD, "{not json"], [LINE_2, "not JSON (Expecting property name"]),
    (rm.main, [GOOD, '{"prompt": ' + "9" * 5000 + "}"], [LINE_2, "not JSON (Python cannot read it)"]),
    (rm.main, [GOOD, '["a list"]'], [LINE_2, "not a JSON object"]),
    (rm.main, [GOOD, {**GOOD, "answer": "3"}], [LINE_2, "answer '3' is not 1, 2, t or s"]),
    (rm.main, [GOOD, {**GOOD, "response_1": "a room."}], [LINE_2, "response_1 is not the prompt 'the food'"]),
    (rm.main, [GOOD, {**GOOD, "response_1": "the food\nis"}], [LINE_2, "response_1 is not the prompt"]),
    (rm.main, [GOOD, {**GOOD, "response_1": "the food is G."}], [LINE_2, "character 'G'"]),
    (rm.main, [GOOD, {**GOOD, "response_2": "the food is" + " good" * 20}], [LINE_2, "has 111 characters"]),
    (oo.main, ["--beta", "0.5"], ["--beta: set by this command"]),
    (oo.main, ["--pretrain-steps", "100"], ["--pretrain-steps: pi_ref's settings come from --reference"]),
    (oo.main, ["--pairs", "1"], ["--pairs=1: must be distinct values from 2"]),
    (oo.main, ["--betas", "0,1e308"], ["--betas=0,1e308: must be distinct values from 0 to 1,000"]),
    (oo.main, ["--betas", "0.1,0.10"], ["--betas=0.1,0.10: must be distinct"]),
    (oo.main, ["--window", "500"], ["--window=500: must be an integer from 1 to --iters=150"]),
    (oo.main, ["--clip", "2"], ["--clip=2.0: must be above 0"]),          # a PPO flag, checked before any work
])
def test_bad_input_is_one_line_and_changes_nothing(reference, tmp_path, capsys, main, flags, says):
    """Refused before any work, in a train.py run folder with its own pi_ref (not the defaults')."""
    out = with_reference(reference, tmp_path, "run")
    if flags and not isinstance(flags[0], str):             # the lines of a pairs file
        (tmp_path / "p.jsonl").write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in flags))
        flags = ["--pairs-file", tmp_path / "p.jsonl", "--reference", out / "reference.pt"]
    flags = [tmp_path if f == "FOLDER" else f for f in flags]
    before, listing = snapshot(out), sorted(os.listdir(tmp_path))
    one_line(*call(main, capsys, "--out", out, *flags), *[w.format(tmp_path) for w in says])
    assert snapshot(out) == before and sorted(os.listdir(tmp_path)) == listing
