"""The reward model r_phi(x, y): learned from preference pairs, then one more r(x, y) for the loop.

    python -m minippo.extras.reward_model --pairs 2000 --out rm     # ~25 s on a 2-core CPU
    python train.py --reward-model rm --out run                     # PPO against the learned proxy

In RLHF nobody can write r(x, y) down. People compare two responses to the same query x, and a
reward model is fitted to their choices with the Bradley-Terry model, which says that y_a is
preferred to y_b with probability
    P(y_a > y_b | x) = sigma(r(x, y_a) - r(x, y_b)),   sigma(z) = 1 / (1 + e^-z),
so the loss on a pair whose winner is y_w and loser y_l is  -log sigma(r_phi(x, y_w) - r_phi(x, y_l)).
Only differences of rewards are learned: r_phi is then shifted so that pi_ref's mean reward is 0
and scaled to unit standard deviation under pi_ref (as in Ziegler et al. 2019, lm-human-preferences).

Here the person is simulated by a *gold* reward, one of the hand-written ones (--reward): two
responses of pi_ref to one query, with gold rewards g_a and g_b, are labelled by the same model,
y_a preferred with probability sigma((g_a - g_b) / tau); equal gold rewards are answered "tie", whose
label is the model's 0.5. tau = 0 is a labeller who never errs; a larger tau errs more often on
close pairs. Because the gold reward is known, we
can measure what RLHF can only guess: how well the proxy r_phi ranks unseen pairs, and whether PPO
against it improves the gold reward or only the proxy (minippo/extras/overoptimisation.py).
A person's judgements work the same way: `--pairs-file RUN/human_eval.jsonl` trains on the blind
comparisons that `train.py --human-eval` and `python -m minippo.extras.human_eval` write.

r_phi is the policy's transformer, initialised from pi_ref as InstructGPT initialises its reward
model from the supervised model, and its scalar head (the value head, zeroed) is read at the last
token of x + y + EOS. Files in --out: reference.pt (pi_ref, a cache as in a train.py run folder),
pairs.jsonl (the training pairs, in human_eval.jsonl's format), reward_model.pt (weights-only).
"""
import argparse
import copy
import json
import math
import os
import random
import shutil
import sys
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from minippo.config import Config
from minippo.data import EOS, Vocab
from minippo.extras import checkpoint as ckpt
from minippo.extras import runs
from minippo.extras.cli import UsageError, one_line_error
from minippo.evaluate import optimal_value
from minippo.model import ModelConfig, Policy, sample
from minippo.rewards import NO_EOS_PENALTY, REWARDS
from minippo.rollout import decode_responses, encode_prompts, score

NO_EOS = " <no EOS>"        # how human_eval.jsonl marks a response that never ended
ANSWERS = {"1": 1.0, "2": 0.0, "t": 0.5}      # P(response_1 preferred) that an answer says; "s" = skip


# ----------------------------------------------------------------------------- the math
def bradley_terry_loss(r_a, r_b, p):
    """Mean of -[p log sigma(r_a - r_b) + (1 - p) log sigma(r_b - r_a)] over the pairs, where p is
    the label P(y_a preferred): 1 gives -log sigma(r_w - r_l), 0.5 (a tie) pulls r_a and r_b together.
    Its gradient with respect to r_a is sigma(r_a - r_b) - p per pair (divided by the pair count)."""
    d = r_a - r_b                                                           # (N,)
    return -(p * F.logsigmoid(d) + (1 - p) * F.logsigmoid(-d)).mean()


def preference(g_a: float, g_b: float, tau: float) -> float:
    """P(y_a preferred) under Bradley-Terry with gold rewards g and temperature tau (0: no errors)."""
    if tau == 0:
        return 1.0 if g_a > g_b else 0.0 if g_a < g_b else 0.5
    return 1 / (1 + math.exp(-max(-700.0, min(700.0, (g_a - g_b) / tau))))


def raw_rewards(model, vocab, xs, ys, device, rows: int = 256):
    """r_phi before normalisation: the scalar head at the final EOS of [EOS] x y EOS, (N,).
    Left padding puts every sequence's last token in the last column."""
    out = []
    for i in range(0, len(xs), rows):
        ids = encode_prompts(vocab, [x + y + EOS for x, y in zip(xs[i:i + rows], ys[i:i + rows])], device)
        out.append(model(ids)[1][:, -1])                                    # (rows,) value head at EOS
    return torch.cat(out)


# ----------------------------------------------------------------------------- preference pairs
def sample_finished(ref, vocab, xs, cfg, device):
    """One response of ref to each x: (responses, reached EOS) as text."""
    tokens, _ = sample(ref, encode_prompts(vocab, xs, device), cfg.max_new_tokens, cfg.temperature,
                       vocab.eos_id)
    return decode_responses(vocab, tokens)


def gold_pairs(ref, vocab, prompts, gold_fn, n: int, tau: float, cfg, device, rng: random.Random):
    """n pairs of pi_ref responses to one query, both finished (a response without EOS never
    reaches r(x, y) in the loop), labelled by gold_fn through Bradley-Terry at temperature tau.
    Rows in human_eval.jsonl's format, plus the gold rewards."""
    rows, drawn = [], 0
    while len(rows) < n:
        if drawn > 20 * n + 1000:           # a pi_ref that rarely ends a sentence: say so, not loop
            raise UsageError(f"pi_ref finished both responses of only {len(rows)} of {drawn} pairs; "
                             f"pretrain it longer (--reference of a run with more --pretrain-steps)")
        xs = [rng.choice(prompts) for _ in range(min(512, 2 * (n - len(rows)) + 16))]
        drawn += len(xs)
        ys_a, done_a = sample_finished(ref, vocab, xs, cfg, device)
        ys_b, done_b = sample_finished(ref, vocab, xs, cfg, device)
        g_a = score(gold_fn, xs, ys_a, done_a, "cpu").tolist()
        g_b = score(gold_fn, xs, ys_b, done_b, "cpu").tolist()
        for x, a, b, ok_a, ok_b, ga, gb in zip(xs, ys_a, ys_b, done_a, done_b, g_a, g_b):
            if ok_a and ok_b and len(rows) < n:
                p = preference(ga, gb, tau)         # equal gold rewards: a tie, p = 0.5 exactly
                answer = "t" if ga == gb else "1" if rng.random() < p else "2"
                rows.append({"prompt": x, "response_1": x + a, "response_2": x + b, "answer": answer,
                             "gold_1": ga, "gold_2": gb, "tau": tau})
    return rows


def decided_pairs(ref, vocab, prompts, gold_fn, n: int, cfg, device, rng: random.Random):
    """n noise-free gold pairs whose gold rewards differ (a tie has no right answer), for measuring
    accuracy; UsageError when pi_ref's responses rarely differ under gold_fn (50 n pairs drawn)."""
    rows, drawn = [], 0
    while len(rows) < n and drawn < 50 * n:
        batch = gold_pairs(ref, vocab, prompts, gold_fn, min(512, 2 * (n - len(rows))), 0.0, cfg, device, rng)
        drawn += len(batch)
        rows += [r for r in batch if r["gold_1"] != r["gold_2"]][:n - len(rows)]
    if len(rows) < n:
        raise UsageError(f"the gold reward gives only {len(rows)} of {drawn} pairs of pi_ref's responses "
                         f"different rewards, too few to measure an accuracy; choose a --reward that "
                         f"separates them")
    return rows


def read_pairs(path: str, vocab, block_size: int) -> list:
    """Rows of a pairs file (pairs.jsonl, or human_eval.jsonl as `--human-eval` writes it), checked
    line by line: a malformed line is a UsageError naming its number. Skipped judgements and
    responses that never ended are kept here and dropped by training_pairs()."""
    if not os.path.isfile(path):
        raise UsageError(f"--pairs-file={path}: no such file; give a JSONL file of judged pairs, such as "
                         f"the human_eval.jsonl that train.py --human-eval writes")
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"--pairs-file={path}, line {number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UsageError(f"{where}: not JSON ({e.msg}); one JSON object per line") from None
            except (ValueError, RecursionError):    # a 5,000-digit number, [[[[... nested too deep
                raise UsageError(f"{where}: not JSON that Python reads; one JSON object per line") from None
            if not isinstance(row, dict):
                raise UsageError(f"{where}: not a JSON object")
            for key in ("prompt", "response_1", "response_2", "answer"):
                if not isinstance(row.get(key), str):
                    raise UsageError(f"{where}: no text {key!r}; each line needs prompt, response_1, "
                                     f"response_2 and answer (1, 2, t or s)")
            if row["answer"] not in (*ANSWERS, "s"):
                raise UsageError(f"{where}: answer {row['answer']!r} is not 1, 2, t or s")
            for key in ("response_1", "response_2"):
                text = row[key].removesuffix(NO_EOS)
                if not text.startswith(row["prompt"]):
                    raise UsageError(f"{where}: {key} does not begin with the prompt {row['prompt']!r}")
                if EOS in text:
                    raise UsageError(f"{where}: {key} holds a line break; one sentence per response")
                if len(text) + 2 > block_size:
                    raise UsageError(f"{where}: {key} has {len(text)} characters; the model reads at most "
                                     f"{block_size - 2} (--block-size {block_size}, less EOS at both ends)")
                try:
                    vocab.encode(text)
                except ValueError as e:
                    raise UsageError(f"{where}: {key}: {e}") from None
            rows.append(row)
    return rows


def training_pairs(rows):
    """(x, y_a, y_b, P(y_a preferred)) for every row that was judged and whose responses ended."""
    pairs = []
    for row in rows:
        a, b = row["response_1"], row["response_2"]
        if row["answer"] != "s" and not a.endswith(NO_EOS) and not b.endswith(NO_EOS):
            x = row["prompt"]
            pairs.append((x, a[len(x):], b[len(x):], ANSWERS[row["answer"]]))
    return pairs


def gold_ranking(rows):
    """(x, y_a, y_b, P(y_a preferred) without labelling errors) from the rows' own gold rewards,
    not from their drawn answers: what a held-out accuracy is measured against."""
    return [(r["prompt"], r["response_1"][len(r["prompt"]):], r["response_2"][len(r["prompt"]):],
             preference(r["gold_1"], r["gold_2"], 0.0)) for r in rows]


# ----------------------------------------------------------------------------- training
def train_reward_model(ref, vocab, pairs, epochs: int, lr: float, batch: int, device, bar=None):
    """r_phi: a copy of pi_ref whose value head (zeroed) reads the last token, fitted to the pairs
    by AdamW on the Bradley-Terry loss. Returns the model (unnormalised) and the last epoch's loss."""
    model = copy.deepcopy(ref).requires_grad_(True).train()
    torch.nn.init.zeros_(model.value_head.weight)
    torch.nn.init.zeros_(model.value_head.bias)           # r_phi = 0 everywhere: the loss starts at log 2
    xs, ys_a, ys_b, p = zip(*pairs)
    seqs = encode_prompts(vocab, [x + y + EOS for x, y in zip(xs + xs, ys_a + ys_b)], device)
    ids_a, ids_b = seqs[:len(xs)], seqs[len(xs):]                           # (N, T) each
    p = torch.tensor(p, device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    steps = epochs * math.ceil(len(xs) / batch)
    step, losses = 0, []
    for epoch in range(epochs):
        losses = []
        for idx in torch.randperm(len(xs), device=device).split(batch):
            for group in optimizer.param_groups:           # linear decay to 0
                group["lr"] = lr * (1 - step / steps)
            r = model(torch.cat([ids_a[idx], ids_b[idx]]))[1][:, -1]        # (2 mb,) r_phi at EOS
            loss = bradley_terry_loss(r[:len(idx)], r[len(idx):], p[idx])
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(loss.item())
            step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{sum(losses) / len(losses):.3f}")
    return model.eval().requires_grad_(False), sum(losses) / len(losses)


@torch.no_grad()
def accuracy(model, vocab, pairs, device) -> float:
    """Fraction of pairs whose preferred response (p = 1 or 0; ties left out) r_phi ranks strictly
    higher: a model that cannot tell them apart (equal rewards) scores 0, not chance."""
    pairs = [q for q in pairs if q[3] != 0.5]
    xs, ys_a, ys_b, p = zip(*pairs)
    d = raw_rewards(model, vocab, xs, ys_a, device) - raw_rewards(model, vocab, xs, ys_b, device)
    sign = torch.tensor(p, device=device) * 2 - 1                           # +1: y_a preferred, -1: y_b
    return (d * sign > 0).float().mean().item()


@torch.no_grad()
def reference_responses(ref, vocab, prompts, cfg, device, n: int, rng: random.Random):
    """n finished responses of pi_ref to prompts drawn uniformly: (queries, responses)."""
    xs, ys = [], []
    while len(xs) < n:
        batch = [rng.choice(prompts) for _ in range(min(512, n - len(xs) + 16))]
        texts, done = sample_finished(ref, vocab, batch, cfg, device)
        keep = [(x, y) for x, y, ok in zip(batch, texts, done) if ok][:n - len(xs)]
        xs += [x for x, _ in keep]
        ys += [y for _, y in keep]
    return xs, ys


def normalisation(r):
    """(gain, bias) making gain * r + bias have mean 0 and standard deviation 1 over the rewards r
    (r_phi of pi_ref's responses): pi_ref's mean reward is then 0, as in lm-human-preferences."""
    if not r.std().item() > 1e-6:
        raise UsageError("the reward model gives all of pi_ref's responses the same reward: it learned "
                         "nothing; train it on more pairs that are not ties")
    gain = 1 / r.std().item()
    return gain, -gain * r.mean().item()


def learned_reward(model, vocab, gain: float, bias: float, device):
    """r(x, y) for the loop: the normalised r_phi of one finished response, a float. Responses the
    loop scores again (a tuned policy repeats itself) are read from a cache."""
    cache = {}

    @torch.no_grad()
    def reward_model(x: str, y: str) -> float:
        if (x, y) not in cache:
            if len(cache) >= 100_000:
                cache.clear()
            with torch.autocast(torch.device(device).type, enabled=False):   # fp32 even under --bf16
                cache[(x, y)] = gain * raw_rewards(model, vocab, [x], [y], device)[0].item() + bias
        return cache[(x, y)]
    return reward_model


def gold_figures(gold_fn, name: str, prompts, n: int, ref_texts, pol_texts, kl_policy: float,
                 beta: float) -> dict:
    """What the gold reward says of the final evaluation's samples (texts as evaluate() returns them,
    n per prompt): its E[r], J = E[r] - beta KL and J* = beta log E_ref exp(r / beta) per prompt."""
    xs = [x for x in prompts for _ in range(n)]

    def gold(texts):
        return torch.tensor([NO_EOS_PENALTY if t.endswith(NO_EOS) else gold_fn(x, t[len(x):])
                             for x, t in zip(xs, texts)], dtype=torch.float64)
    g_ref, g_pol = gold(ref_texts), gold(pol_texts)
    j_star = sum(optimal_value(g_ref[k * n:(k + 1) * n], beta)[0] for k in range(len(prompts))) / len(prompts)
    j_pol, j_ref = g_pol.mean().item() - beta * kl_policy, g_ref.mean().item()
    return {"gold": name, "gold_reward_policy": g_pol.mean().item(), "gold_reward_reference": j_ref,
            "gold_objective_policy": j_pol, "gold_objective_reference": j_ref, "gold_objective_optimal": j_star,
            "gold_optimality_gap": (j_star - j_pol) / (j_star - j_ref) if j_star > j_ref else float("nan")}


# ----------------------------------------------------------------------------- files
def save(path: str, model, run, info: dict) -> None:
    """reward_model.pt: only tensors and plain values, so it loads with weights_only=True."""
    ckpt.save({"kind": "reward_model", **run.identity, "pretrain": info["pretrain"],
               "model": model.state_dict(), **{k: v for k, v in info.items() if k != "pretrain"}}, path)


def load(path: str, identity: dict, device, pretrain: dict = None, flag: str = "reward-model"):
    """The reward function saved in `path` (a file, or a folder holding reward_model.pt), checked
    like every checkpoint: weights-only, this run's vocabulary and model shape, finite weights, and
    (given `pretrain`, the run's PRETRAIN_KEYS settings) initialised from and normalised on this
    run's pi_ref."""
    if os.path.isdir(path):
        path = os.path.join(path, "reward_model.pt")
    if not os.path.isfile(path):
        raise UsageError(f"--{flag}={path}: no such file; train one with python -m "
                         f"minippo.extras.reward_model --out FOLDER")
    state = ckpt.load(path, "reward_model")
    again = "train a reward model on this run's pi_ref (--reference OUT/reference.pt)"
    ckpt.check_compatible(state, identity, path, again)
    if pretrain is not None and state.get("pretrain") != pretrain:
        changed = {k: (state["pretrain"].get(k), v) for k, v in pretrain.items()
                   if not isinstance(state.get("pretrain"), dict) or state["pretrain"].get(k) != v}
        raise UsageError(f"--{flag}={path}: trained on another pi_ref (its settings against this run's: "
                         f"{changed}); train one on this run's with --reference OUT/reference.pt")
    gain, bias = state.get("gain"), state.get("bias")
    if not all(isinstance(v, float) and math.isfinite(v) for v in (gain, bias)):
        raise UsageError(f"{path}: its normalisation (gain {gain!r}, bias {bias!r}) is not two finite "
                         f"floats; train the reward model again")
    model = Policy(ModelConfig(**identity["model_config"]))
    runs.load_model(model, state.get("model"), path, "train the reward model again")
    model.to(device).eval().requires_grad_(False)
    return learned_reward(model, Vocab(identity["vocab"]), gain, bias, device), state


def check_unchanged(path: str, run) -> None:
    """--resume: the reward model must be the one the run started with, so it must not have been
    written (trained again) after the run's config.json."""
    path = os.path.join(path, "reward_model.pt") if os.path.isdir(path) else path
    config = run.path("config.json")
    if run.cfg.resume and os.path.exists(config) and os.path.getmtime(path) > os.path.getmtime(config):
        raise UsageError(f"--reward-model={run.cfg.reward_model}: {path} was written after this run "
                         f"started (trained again?); start afresh with --force, or restore that model")


# ----------------------------------------------------------------------------- the command
def build_parser():
    p = argparse.ArgumentParser(prog="python -m minippo.extras.reward_model", allow_abbrev=False,
                                description="Train a reward model r_phi(x, y) on preference pairs "
                                "between two responses of pi_ref, labelled by a gold reward or a person.")
    a = p.add_argument
    a("--out", default="rm", help="folder for reference.pt, pairs.jsonl, reward_model.pt [default: rm]")
    a("--pairs", type=int, default=2000, help="preference pairs to draw and label with the gold reward "
      "[default: 2000]")
    a("--pairs-file", default="", help="train on the judged pairs of this JSONL file instead (e.g. a "
      "run's human_eval.jsonl); --pairs is then ignored")
    a("--reward", default="positive", choices=sorted(REWARDS), help="the gold reward that labels the "
      "pairs and measures the held-out accuracy [default: positive]")
    a("--tau", type=float, default=0.0, help="labelling noise: y_a preferred with probability "
      "sigma((g_a - g_b) / tau); 0 = no errors [default: 0]")
    a("--held-out", type=int, default=1000, help="fresh noise-free gold pairs to measure the accuracy "
      "on [default: 1000]")
    a("--epochs", type=int, default=4, help="passes over the pairs [default: 4]")
    a("--lr", type=float, default=1e-3, help="AdamW learning rate, decayed linearly to 0 [default: 1e-3]")
    a("--batch", type=int, default=32, help="pairs per step [default: 32]")
    a("--seed", type=int, default=0, help="seed of the pairs, and of pi_ref unless --reference is given "
      "(pretrained as by train.py --seed with its default settings) [default: 0]")
    a("--reference", default="", help="use this reference.pt (of a train.py run folder) as pi_ref; its "
      "settings (model shape, corpus, ...) then apply")
    a("--device", default="cpu", choices=("cpu", "cuda", "auto"), help="[default: cpu]")
    a("--force", action="store_true", help="replace the reward model and pairs already in --out, and a "
      "reference.pt there that was pretrained with other settings")
    p.error = one_line_error
    return p


def check(args):
    for name, low, high in (("pairs", 1, 10_000_000), ("held_out", 1, 1_000_000), ("epochs", 1, 1000),
                            ("batch", 1, 65_536), ("seed", 0, 2 ** 63 - 1)):
        if not low <= getattr(args, name) <= high:
            raise UsageError(f"--{name.replace('_', '-')}={getattr(args, name)}: must be an integer from "
                             f"{low} to {high:,}")
    if not (math.isfinite(args.tau) and args.tau >= 0):
        raise UsageError(f"--tau={args.tau}: must be a finite number >= 0")
    if not (math.isfinite(args.lr) and 0 < args.lr <= 1):
        raise UsageError(f"--lr={args.lr}: must be in (0, 1] (1e-4 - 3e-3 is typical)")
    if not args.out.strip():
        raise UsageError("--out: must name a folder")


def reference_settings(path: str) -> dict:
    """The pretraining settings (PRETRAIN_KEYS) a reference.pt was made with, or UsageError."""
    if not os.path.isfile(path):
        raise UsageError(f"--reference={path}: no such file; give the reference.pt of a train.py run folder")
    settings = ckpt.load(path, "reference").get("pretrain")
    if not isinstance(settings, dict) or set(settings) != set(runs.PRETRAIN_KEYS):
        raise UsageError(f"--reference={path}: does not say how it was pretrained (made by another "
                         f"minippo version?); train a reference with train.py")
    return settings


def command(args) -> dict:
    check(args)
    cfg = Config(out=args.out, seed=args.seed, device=args.device)
    if args.reference:                        # pi_ref of another run: its settings make the data
        cfg = Config(out=args.out, device=args.device, **reference_settings(args.reference))
    run = runs.Run(cfg)                       # the vocabulary, prompts and model shape of train.py
    path = run.path("reward_model.pt")
    if args.pairs_file:                       # read before anything is written
        rows = read_pairs(args.pairs_file, run.vocab, cfg.block_size)
        if sum(q[3] != 0.5 for q in training_pairs(rows)) < 2:
            raise UsageError(f"--pairs-file={args.pairs_file}: {len(rows)} rows but fewer than 2 pairs of "
                             f"finished responses with a winner (ties and skips teach no ranking); judge more")
    want = {k: getattr(cfg, k) for k in runs.PRETRAIN_KEYS}
    run.lock_fd = runs.lock(cfg.out)
    try:
        for name in ("reward_model.pt", "pairs.jsonl"):
            if os.path.exists(run.path(name)) and not args.force:
                raise UsageError(f"--out={cfg.out} already holds {name}; use another folder, or --force "
                                 f"to replace it")
        here = run.path("reference.pt")       # e.g. a train.py run folder's pi_ref: never replaced silently
        cached = ckpt.load(here, "reference").get("pretrain") if os.path.exists(here) else None
        if cached is not None and cached != want and not args.force:
            raise UsageError(f"--out={cfg.out} holds a reference.pt pretrained with other settings; use "
                             f"another folder, --reference {here} to start from it, or --force to replace it")
        if args.reference and cached != want:
            ckpt.atomic_write(here, lambda tmp: shutil.copyfile(args.reference, tmp))
        runs.check_cached_reference(run)
        ref, _ = runs.pretrained_policy(run)
        if ref is None:
            raise KeyboardInterrupt
        ref.requires_grad_(False)
        gold_fn, rng = REWARDS[args.reward], random.Random(args.seed)
        torch.manual_seed(args.seed + runs.RL_SEED)
        t0 = time.time()
        if not args.pairs_file:
            rows = gold_pairs(ref, run.vocab, run.prompts, gold_fn, args.pairs, args.tau, cfg, run.device, rng)
        pairs = training_pairs(rows)
        held_out = gold_ranking(decided_pairs(ref, run.vocab, run.prompts, gold_fn, args.held_out, cfg,
                                              run.device, rng))
        sampling = time.time() - t0
        steps = args.epochs * math.ceil(len(pairs) / args.batch)
        t1 = time.time()
        with tqdm(total=steps, desc="reward model", dynamic_ncols=True) as bar:
            model, loss = train_reward_model(ref, run.vocab, pairs, args.epochs, args.lr, args.batch,
                                             run.device, bar)
        training = time.time() - t1
        if not (math.isfinite(loss) and all(bool(torch.isfinite(t).all()) for t in model.parameters())):
            raise UsageError(f"--lr={args.lr}: training diverged (loss {loss:.3g}); lower it. Nothing was saved")
        with torch.no_grad():
            xs, ys = reference_responses(ref, run.vocab, run.prompts, cfg, run.device, 1024, rng)
            r_ref = raw_rewards(model, run.vocab, xs, ys, run.device).double()
            gain, bias = normalisation(r_ref)
            below = ((gain * r_ref + bias) < NO_EOS_PENALTY).double().mean().item()   # no floor: see docs
        info = {"pretrain": {k: getattr(cfg, k) for k in runs.PRETRAIN_KEYS}, "gain": gain, "bias": bias,
                "gold": args.reward, "tau": args.tau, "pairs": len(pairs),
                "pairs_file": args.pairs_file, "epochs": args.epochs, "lr": args.lr, "seed": args.seed,
                "train_loss": loss, "train_accuracy": accuracy(model, run.vocab, pairs, run.device)
                if any(q[3] != 0.5 for q in pairs) else float("nan"),
                "held_out_pairs": len(held_out),
                "held_out_accuracy": accuracy(model, run.vocab, held_out, run.device),
                "below_no_eos_penalty": below,
                "seconds": time.time() - t0, "sampling_seconds": sampling, "training_seconds": training}
        if args.pairs_file and os.path.exists(run.path("pairs.jsonl")):
            os.remove(run.path("pairs.jsonl"))      # (--force) the old pairs did not train this model
        if not args.pairs_file:
            with open(run.path("pairs.jsonl") + ".tmp", "w") as f:
                f.writelines(json.dumps(row) + "\n" for row in rows)
            os.replace(run.path("pairs.jsonl") + ".tmp", run.path("pairs.jsonl"))
        save(path, model, run, info)
        return info
    finally:
        runs.unlock(run)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        info = command(args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nstopped; nothing of the reward model was saved", file=sys.stderr)
        return 130
    except OSError as e:
        print(f"error: {e.filename or args.out}: {e.strerror or e}", file=sys.stderr)
        return 1
    source = (f"from {info['pairs_file']}" if info["pairs_file"] else
              f"labelled by gold reward {info['gold']!r}, tau {info['tau']:g}")
    print(f"reward model: {info['pairs']} pairs {source}; train loss {info['train_loss']:.3f}; held-out "
          f"accuracy against the gold reward {info['gold']!r}: {info['held_out_accuracy']:.3f} on "
          f"{info['held_out_pairs']} fresh pairs whose gold rewards differ; {info['seconds']:.0f} s "
          f"(drawing pairs {info['sampling_seconds']:.0f} s, training {info['training_seconds']:.0f} s). "
          f"{info['below_no_eos_penalty']:.0%} of pi_ref's finished responses score below the "
          f"{NO_EOS_PENALTY:g} of a response that never ends. Saved "
          f"{os.path.join(args.out, 'reward_model.pt')}; use it with python train.py --reward-model {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
