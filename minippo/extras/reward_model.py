"""The reward model r_phi(x, y): learned from preference pairs, then one more r(x, y) for the loop.

    python -m minippo.extras.reward_model --pairs 2000 --out rm     # ~25 s on a 2-core CPU
    python train.py --reward-model rm --out run                     # PPO against the learned proxy

r_phi: pi_ref's transformer, its value head read at x + y + EOS, fitted by Bradley-Terry to pairs
labelled by the gold reward (--reward, noise --tau) or a person (--pairs-file RUN/human_eval.jsonl),
scored on fresh noise-free gold pairs, normalised on pi_ref. More in docs/reward_model.md.
"""
import argparse
import copy
import functools
import json
import math
import os
import random
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

from minippo.config import Config
from minippo.data import EOS, Vocab
from minippo.evaluate import draw, optimal_value
from minippo.extras import cli, files, reference, runs
from minippo.extras.files import UsageError
from minippo.model import ModelConfig, Policy
from minippo.rewards import NO_EOS_PENALTY, REWARDS
from minippo.rollout import encode_prompts

NO_EOS = " <no EOS>"        # how evaluate.draw and human_eval.jsonl mark a response that never ended
ANSWERS = {"1": 1.0, "2": 0.0, "t": 0.5}      # P(response_1 preferred) that an answer says; "s" = skip
RESULTS = ("reward_model.pt", "pairs.jsonl", "held_out.jsonl")   # replaced together or not at all


def bradley_terry_loss(r_a, r_b, p):
    """Mean -[p log sigma(d) + (1 - p) log sigma(-d)], d = r_a - r_b, p = P(y_a preferred); d/dr_a = (sigma(d) - p)/N"""
    d = r_a - r_b                                                           # (N,)
    return -(p * F.logsigmoid(d) + (1 - p) * F.logsigmoid(-d)).mean()


def preference(g_a: float, g_b: float, tau: float) -> float:
    if tau == 0:
        return 1.0 if g_a > g_b else 0.0 if g_a < g_b else 0.5
    return 1 / (1 + math.exp(-max(-700.0, min(700.0, (g_a - g_b) / tau))))


def raw_rewards(model, vocab, xs, ys, device, rows: int = 256):
    """r_phi before normalisation, (N,): the head at the final EOS of [EOS] x y EOS (left padding: last column)."""
    out = []
    for i in range(0, len(xs), rows):
        ids = encode_prompts(vocab, [x + y + EOS for x, y in zip(xs[i:i + rows], ys[i:i + rows])], device)
        out.append(model(ids)[1][:, -1])                                    # (rows,) value head at EOS
    return torch.cat(out)


def gold_pairs(ref, vocab, prompts, gold_fn, n, tau, cfg, device, rng, decided=False):
    """n pairs of finished responses, as in human_eval.jsonl; `decided`: no ties (equal gold rewards)."""
    rows, drawn = [], 0
    while len(rows) < n:
        if drawn > 50 * n + 1000:           # a pi_ref that rarely ends a sentence: say so, not loop
            raise UsageError(f"pi_ref finished both responses of only {len(rows)} of {drawn} pairs")
        xs = [rng.choice(prompts) for _ in range(min(512, 2 * (n - len(rows)) + 16))]
        drawn += len(xs)
        g_a, _, texts_a = draw(ref, None, vocab, xs, gold_fn, cfg, device)  # x + y (+ NO_EOS)
        g_b, _, texts_b = draw(ref, None, vocab, xs, gold_fn, cfg, device)
        for x, a, b, ga, gb in zip(xs, texts_a, texts_b, g_a.tolist(), g_b.tolist()):
            usable = not a.endswith(NO_EOS) and not b.endswith(NO_EOS) and not (decided and ga == gb)
            if not usable or len(rows) == n:
                continue
            p = preference(ga, gb, tau)             # equal gold rewards: a tie, p = 0.5 exactly
            answer = "t" if ga == gb else "1" if rng.random() < p else "2"
            row = dict(prompt=x, response_1=a, response_2=b, answer=answer, gold_1=ga)
            rows.append({**row, "gold_2": gb})
    return rows


def read_pairs(path: str, vocab, block_size: int) -> list:
    """The judged pairs of a JSONL file, checked, or UsageError naming the line."""
    files.input_file(path, "pairs-file", "a JSONL file of judged pairs (human_eval.jsonl)")
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            try:
                rows += [pair_row(line, vocab, block_size)] if line.strip() else []
            except ValueError as e:
                raise UsageError(f"--pairs-file={path}, line {number}: {e}") from None
    return rows


def pair_row(line: str, vocab, block_size: int) -> dict:
    try:
        row = json.loads(line)
    except (ValueError, RecursionError) as e:   # (a 5,000-digit number, [[[[... nested too deep)
        raise ValueError(f"not JSON ({getattr(e, 'msg', 'Python cannot read it')})") from None
    texts = ("prompt", "response_1", "response_2", "answer")
    if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in texts):
        raise ValueError(f"not a JSON object of texts {', '.join(texts)}")
    if row["answer"] not in (*ANSWERS, "s"):
        raise ValueError(f"answer {row['answer']!r} is not 1, 2, t or s")
    for key in ("response_1", "response_2"):
        text = row[key].removesuffix(NO_EOS)
        if not text.startswith(row["prompt"]) or EOS in text or len(text) + 2 > block_size:
            raise ValueError(f"{key}: not the prompt and one line of <= {block_size - 2} characters")
        vocab.encode(text)                  # (ValueError naming a character the vocabulary lacks)
    return row


def training_pairs(rows):
    """(x, y_1, y_2, P(y_1 preferred)) of the rows not skipped whose responses both ended."""
    pairs = []
    for r in rows:
        x, y_1, y_2 = r["prompt"], r["response_1"], r["response_2"]
        if r["answer"] != "s" and not y_1.endswith(NO_EOS) and not y_2.endswith(NO_EOS):
            pairs.append((x, y_1[len(x):], y_2[len(x):], ANSWERS[r["answer"]]))
    return pairs


def train_reward_model(ref, vocab, pairs, epochs: int, lr: float, batch: int, device):
    """r_phi (unnormalised) fitted to the pairs by AdamW on the Bradley-Terry loss; its last epoch's loss."""
    model = copy.deepcopy(ref).requires_grad_(True).train()
    torch.nn.init.zeros_(model.value_head.weight)
    torch.nn.init.zeros_(model.value_head.bias)           # r_phi = 0 everywhere: the loss starts at log 2
    xs, ys_a, ys_b, p = zip(*pairs)
    seqs = encode_prompts(vocab, [x + y + EOS for x, y in zip(xs + xs, ys_a + ys_b)], device)
    (ids_a, ids_b), p = seqs.split(len(xs)), torch.tensor(p, device=device)     # (N, T) each, (N,)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    perms = [torch.randperm(len(xs), device=device).split(batch) for _ in range(epochs)]
    steps = [idx for perm in perms for idx in perm]
    losses = []
    for step, idx in enumerate(bar := tqdm(steps, desc="reward model", dynamic_ncols=True)):
        optimizer.param_groups[0]["lr"] = lr * (1 - step / len(steps))    # linear decay to 0
        r = model(torch.cat([ids_a[idx], ids_b[idx]]))[1][:, -1]            # (2 mb,) r_phi at EOS
        loss = bradley_terry_loss(r[:len(idx)], r[len(idx):], p[idx])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    last_epoch = losses[-(len(steps) // epochs):]
    return model.eval().requires_grad_(False), sum(last_epoch) / len(last_epoch)


@torch.no_grad()
def accuracy(model, vocab, pairs, device) -> float:
    pairs = [q for q in pairs if q[3] != 0.5]
    if not pairs:
        return float("nan")
    xs, ys_a, ys_b, p = zip(*pairs)
    d = raw_rewards(model, vocab, xs, ys_a, device) - raw_rewards(model, vocab, xs, ys_b, device)
    sign = torch.tensor(p, device=device) * 2 - 1                           # +1: y_a preferred, -1: y_b
    return (d * sign > 0).float().mean().item()


def normalisation(r):
    """(gain, bias, low): gain r + bias has mean 0 and sd 1 over r; low: its share < NO_EOS_PENALTY."""
    if not r.std().item() > 1e-6:           # (NaN too: a model that diverged)
        raise UsageError(f"r_phi gives pi_ref's responses sd {r.std():.3g}: it learned nothing")
    gain = 1 / r.std().item()
    bias = -gain * r.mean().item()
    return gain, bias, ((gain * r + bias) < NO_EOS_PENALTY).double().mean().item()


def learned_reward(model, vocab, gain: float, bias: float, device):
    """r(x, y) for the loop: gain r_phi + bias, cached (a tuned policy repeats itself)."""
    @functools.lru_cache(maxsize=100_000)
    @torch.no_grad()
    def reward_model(x: str, y: str) -> float:
        return gain * raw_rewards(model, vocab, [x], [y], device)[0].item() + bias
    return reward_model


def gold_figures(gold_fn, name, prompts, n, ref_texts, pol_texts, kl_policy, beta):
    """The gold reward's E[r], J = E[r] - beta KL and J* of the final evaluation's texts (n per prompt)."""
    xs = [x for x in prompts for _ in range(n)]
    def gold(texts):                    # a response that never ended: NO_EOS_PENALTY, as in the loop
        g = [NO_EOS_PENALTY if t.endswith(NO_EOS) else gold_fn(x, t[len(x):]) for x, t in texts]
        return torch.tensor(g, dtype=torch.float64)
    g_ref, g_pol = gold(zip(xs, ref_texts)), gold(zip(xs, pol_texts))
    per_prompt = [optimal_value(g_ref[k * n:(k + 1) * n], beta)[0] for k in range(len(prompts))]
    j_star = sum(per_prompt) / len(prompts)
    j_pol, j_ref = g_pol.mean().item() - beta * kl_policy, g_ref.mean().item()
    gap = (j_star - j_pol) / (j_star - j_ref) if j_star > j_ref else float("nan")
    out = dict(reward_policy=g_pol.mean().item(), reward_reference=j_ref, objective_policy=j_pol)
    out.update(objective_reference=j_ref, objective_optimal=j_star, optimality_gap=gap)
    return {"gold": name, **{f"gold_{k}": v for k, v in out.items()}}


def reward_model_file(path: str) -> str:
    return os.path.join(path, "reward_model.pt") if os.path.isdir(path) else path


def load(path: str, identity: dict, device, pretrain: dict):
    """(r(x, y), state) of a reward_model.pt (or its folder) made for this model and pi_ref (`pretrain`)."""
    path = files.input_file(reward_model_file(path), "reward-model", "a reward model's folder")
    state = files.load(path, "reward_model")
    changed = files.differences({**state, **state.get("pretrain", {})}, {**identity, **pretrain})
    if changed:
        raise UsageError(f"--reward-model={path}: made for another pi_ref or model: {changed}")
    model = Policy(ModelConfig(**identity["model_config"]))
    files.load_model(model, state.get("model"), path).to(device).eval().requires_grad_(False)
    gain, bias = state.get("gain"), state.get("bias")
    return learned_reward(model, Vocab(identity["vocab"]), gain, bias, device), state


def check_unchanged(path: str, run) -> None:
    """A resumed --reward-model run goes on only with the reward model it started with."""
    config, mtime = run.path("config.json"), os.path.getmtime
    if run.cfg.resume and os.path.exists(config) and mtime(reward_model_file(path)) > mtime(config):
        raise UsageError(f"{path}: trained again since this run started; restore it or start afresh")


def jsonl(rows):
    """A write(tmp) for files.write_together: one JSON object per line."""
    def write(tmp):
        with open(tmp, "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in rows)
    return write


# the numeric flags: default, lowest, highest (--lr: above it), meaning
NUMBERS = {"pairs": (2000, 1, 10 ** 7, "preference pairs to label with the gold reward"),
           "tau": (0.0, 0, 10 ** 6, "labelling noise: y_a wins with probability sigma((g_a - g_b) / tau)"),
           "held_out": (1000, 1, 10 ** 6, "fresh noise-free gold pairs to measure the accuracy on"),
           "epochs": (4, 1, 1000, "passes over the pairs"),
           "lr": (1e-3, 0, 1, "AdamW learning rate, decayed linearly to 0"),
           "batch": (32, 1, 65_536, "pairs per step"),
           "seed": (0, 0, 2 ** 63 - 1, "seed of the pairs, and of pi_ref unless --reference is given")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser("python -m minippo.extras.reward_model", allow_abbrev=False)
    a = p.add_argument
    a("--out", default="rm", help=f"folder for reference.pt, {', '.join(RESULTS)} [default: rm]")
    a("--pairs-file", default="", help="train on this JSONL file's judged pairs (human_eval.jsonl)")
    a("--reward", default="positive", choices=sorted(REWARDS), help="the gold reward [positive]")
    for name, (default, _, _, meaning) in NUMBERS.items():
        a(cli.flag(name), type=type(default), default=default, help=f"{meaning} [{default}]")
    a("--reference", default="", help="pi_ref and its settings: a train.py run's reference.pt")
    a("--device", default="cpu", choices=("cpu", "cuda", "auto"), help="[default: cpu]")
    a("--force", action="store_true", help="replace the results (and a reference.pt of others)")
    p.error = cli.one_line_error
    args = p.parse_args(argv)
    return files.boundary(command, args, after_stop=lambda: "nothing of the reward model was saved")


def command(args) -> int:
    for name, (_, low, high, _) in NUMBERS.items():
        cli.within(name, getattr(args, name), low, high, above=name == "lr")
    path = args.reference and files.input_file(args.reference, "reference", "a run's reference.pt")
    given = files.load(path, "reference") if path else None
    if given and not isinstance(given.get("pretrain"), dict):
        raise UsageError(f"--reference={path}: does not say how it was pretrained")
    settings = given["pretrain"] if given else {"seed": args.seed}
    run = runs.Run(cli.check(Config(**settings, out=args.out, device=args.device)))
    rows = read_pairs(args.pairs_file, run.vocab, run.cfg.block_size) if args.pairs_file else None
    if rows is not None and all(q[3] == 0.5 for q in training_pairs(rows)):
        raise UsageError(f"--pairs-file={args.pairs_file}: no finished pair has a winner")
    inputs = {os.path.realpath(args.pairs_file)} if args.pairs_file else set()
    results = [f for f in RESULTS if os.path.realpath(run.path(f)) not in inputs]  # inputs: kept
    run.lock_fd = files.lock(args.out)
    try:
        here, cached = run.path("reference.pt"), run.cached_reference()  # a run folder's pi_ref?
        held = [f for f in results if os.path.exists(run.path(f))]
        held += ["a reference.pt of other settings"] * (cached is None and os.path.exists(here))
        if held and not args.force:
            raise UsageError(f"--out={args.out}: holds {held[0]}; use another folder, or --force")
        if cached is None and given:
            files.save(given, here)
        state, rows, held_rows = fit(run, args, rows)
        writes = [lambda tmp: torch.save(state, tmp), jsonl(rows), jsonl(held_rows)]
        files.write_together({run.path(f): w for f, w in zip(RESULTS, writes) if f in results})
    finally:
        run.close()
    print(f"reward model: {state['pairs']} pairs, loss {state['train_loss']:.3f}; held-out accuracy "
          f"{state['held_out_accuracy']:.3f} on {state['held_out_pairs']} decided pairs of the gold "
          f"{args.reward!r}; {state['seconds']:.0f} s; {state['below_no_eos_penalty']:.0%} of pi_ref's "
          f"responses score below {NO_EOS_PENALTY:g}. Use it: train.py --reward-model {args.out}")
    return 0


def fit(run, args, rows):
    """pi_ref, the pairs (`rows` or gold ones), held-out pairs, r_phi: (reward_model.pt, rows, held-out)."""
    ref = reference.pretrained_policy(run)[0].requires_grad_(False)
    gold_fn, rng, t0 = REWARDS[args.reward], random.Random(args.seed), time.time()
    torch.manual_seed(args.seed + runs.RL_SEED)
    sample = functools.partial(gold_pairs, ref, run.vocab, run.prompts, gold_fn, cfg=run.cfg,
                               device=run.device, rng=rng)
    rows = rows if rows is not None else sample(args.pairs, args.tau)
    held_rows = sample(args.held_out, 0.0, decided=True)      # fresh, and labelled without noise
    pairs, held_out = training_pairs(rows), training_pairs(held_rows)
    model, loss = train_reward_model(ref, run.vocab, pairs, args.epochs, args.lr, args.batch, run.device)
    xs, ys_a, ys_b, _ = zip(*training_pairs(sample(512, 0.0)))   # normalised on 1,024 of pi_ref's
    r_ref = raw_rewards(model, run.vocab, xs + xs, ys_a + ys_b, run.device).double()
    gain, bias, low = normalisation(r_ref)
    acc = accuracy(model, run.vocab, held_out, run.device)
    info = dict(pairs=len(pairs), held_out_pairs=len(held_out), held_out_accuracy=acc, gain=gain)
    info.update(bias=bias, train_loss=loss, below_no_eos_penalty=low, seconds=time.time() - t0)
    state = {"kind": "reward_model", **run.identity, "pretrain": run.pretrain, **info}
    return {**state, "settings": vars(args), "model": model.state_dict()}, rows, held_rows


if __name__ == "__main__":
    raise SystemExit(main())
