"""The reward model r_phi(x, y): learned from preference pairs, then one more r(x, y) for the loop.

    python -m minippo.extras.reward_model --pairs 2000 --out rm     # ~25 s on a 2-core CPU
    python train.py --reward-model rm --out run                     # PPO against the learned proxy

r_phi: pi_ref's transformer, its value head read at x + y + EOS, fitted by Bradley-Terry to pairs labelled by the
gold reward (--reward) or a person (--pairs-file RUN/human_eval.jsonl). More in docs/reward_model.md.
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


def gold_pairs(ref, vocab, prompts, gold_fn, n: int, tau: float, cfg, device, rng, decided=False):
    """n pairs of finished responses, as in human_eval.jsonl; `decided`: no ties (gold rewards that are equal)."""
    rows, drawn = [], 0
    while len(rows) < n:
        if drawn > 50 * n + 1000:           # a pi_ref that rarely ends a sentence: say so, not loop
            raise UsageError(f"pi_ref finished both responses{' with unequal gold rewards' * decided} of only "
                             f"{len(rows)} of {drawn} pairs; pretrain it longer (--reference of a run with more "
                             f"--pretrain-steps), or choose a --reward that separates its responses")
        xs = [rng.choice(prompts) for _ in range(min(512, 2 * (n - len(rows)) + 16))]
        drawn += len(xs)
        g_a, _, texts_a = draw(ref, None, vocab, xs, gold_fn, cfg, device)     # texts x + y (+ NO_EOS)
        g_b, _, texts_b = draw(ref, None, vocab, xs, gold_fn, cfg, device)
        for x, a, b, ga, gb in zip(xs, texts_a, texts_b, g_a.tolist(), g_b.tolist()):
            usable = not a.endswith(NO_EOS) and not b.endswith(NO_EOS) and not (decided and ga == gb)
            if usable and len(rows) < n:
                p = preference(ga, gb, tau)         # equal gold rewards: a tie, p = 0.5 exactly
                answer = "t" if ga == gb else "1" if rng.random() < p else "2"
                rows.append({"prompt": x, "response_1": a, "response_2": b, "answer": answer,
                             "gold_1": ga, "gold_2": gb, "tau": tau})
    return rows


def read_pairs(path: str, vocab, block_size: int) -> list:
    files.input_file(path, "pairs-file", "a JSONL file of judged pairs, such as a run's human_eval.jsonl")
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
    except (ValueError, RecursionError) as e:   # also a 5,000-digit number, [[[[... nested too deep
        raise ValueError(f"not JSON ({getattr(e, 'msg', 'Python cannot read it')}); one object per line") from None
    keys = ("prompt", "response_1", "response_2", "answer")
    if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in keys):
        raise ValueError(f"not a JSON object of texts {', '.join(keys)}")
    if row["answer"] not in (*ANSWERS, "s"):
        raise ValueError(f"answer {row['answer']!r} is not 1, 2, t or s")
    for key in ("response_1", "response_2"):
        text = row[key].removesuffix(NO_EOS)
        if not text.startswith(row["prompt"]) or EOS in text:
            raise ValueError(f"{key} is not the prompt {row['prompt']!r} followed by one line")
        if len(text) + 2 > block_size:
            raise ValueError(f"{key} has {len(text)} characters; the model reads at most {block_size - 2}")
        vocab.encode(text)                  # (ValueError naming a character the vocabulary lacks)
    return row


def training_pairs(rows):
    ended = [r for r in rows if not r["response_1"].endswith(NO_EOS) and not r["response_2"].endswith(NO_EOS)]
    return [(r["prompt"], r["response_1"][len(r["prompt"]):], r["response_2"][len(r["prompt"]):], ANSWERS[r["answer"]])
            for r in ended if r["answer"] != "s"]


def train_reward_model(ref, vocab, pairs, epochs: int, lr: float, batch: int, device):
    """r_phi (unnormalised) fitted to the pairs by AdamW on the Bradley-Terry loss, and the last epoch's loss."""
    model = copy.deepcopy(ref).requires_grad_(True).train()
    torch.nn.init.zeros_(model.value_head.weight)
    torch.nn.init.zeros_(model.value_head.bias)           # r_phi = 0 everywhere: the loss starts at log 2
    xs, ys_a, ys_b, p = zip(*pairs)
    seqs = encode_prompts(vocab, [x + y + EOS for x, y in zip(xs + xs, ys_a + ys_b)], device)
    ids_a, ids_b, p = seqs[:len(xs)], seqs[len(xs):], torch.tensor(p, device=device)   # (N, T), (N, T), (N,)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    steps = [idx for _ in range(epochs) for idx in torch.randperm(len(xs), device=device).split(batch)]
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
    if not r.std().item() > 1e-6:
        raise UsageError(f"the reward model gives pi_ref's responses rewards of standard deviation {r.std():.3g}: "
                         f"it learned nothing (train it on more pairs that are not ties) or diverged (lower --lr)")
    gain = 1 / r.std().item()
    return gain, -gain * r.mean().item()


def learned_reward(model, vocab, gain: float, bias: float, device):
    """r(x, y) for the loop: normalised r_phi in fp32 (even under --bf16), cached (a tuned policy repeats)."""
    @functools.lru_cache(maxsize=100_000)
    @torch.no_grad()
    def reward_model(x: str, y: str) -> float:
        with torch.autocast(torch.device(device).type, enabled=False):
            return gain * raw_rewards(model, vocab, [x], [y], device)[0].item() + bias
    return reward_model


def gold_figures(gold_fn, name: str, prompts, n: int, ref_texts, pol_texts, kl_policy: float, beta: float):
    """The gold reward's E[r], J = E[r] - beta KL and J* of the final evaluation's texts (n per prompt)."""
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


def load(path: str, identity: dict, device, pretrain: dict = None, flag: str = "reward-model"):
    """(r(x, y), state) of a reward_model.pt (or a folder holding one) made for this model and pi_ref (`pretrain`)."""
    path = os.path.join(path, "reward_model.pt") if os.path.isdir(path) else path
    files.input_file(path, flag, "a reward_model.pt (python -m minippo.extras.reward_model --out FOLDER)")
    state = files.load(path, "reward_model")
    changed = {**files.differences(state, identity), **files.differences(state.get("pretrain"), pretrain or {})}
    if changed:
        raise UsageError(f"--{flag}={path}: trained on another pi_ref or model (its settings against this "
                         f"run's: {changed}); train one on this run's with --reference OUT/reference.pt")
    gain, bias = state.get("gain"), state.get("bias")
    if not all(isinstance(v, float) and math.isfinite(v) for v in (gain, bias)):
        raise UsageError(f"{path}: its normalisation (gain {gain!r}, bias {bias!r}) is not finite; train it again")
    model = Policy(ModelConfig(**identity["model_config"]))
    files.load_model(model, state.get("model"), path, "train it again").to(device).eval().requires_grad_(False)
    return learned_reward(model, Vocab(identity["vocab"]), gain, bias, device), state


def check_unchanged(path: str, run) -> None:
    path = os.path.join(path, "reward_model.pt") if os.path.isdir(path) else path
    config = run.path("config.json")
    if run.cfg.resume and os.path.exists(config) and os.path.getmtime(path) > os.path.getmtime(config):
        raise UsageError(f"--reward-model={run.cfg.reward_model}: {path} was written after this run "
                         f"started (trained again?); start afresh with --force, or restore that model")


def reference_settings(path: str) -> dict:
    files.input_file(path, "reference", "the reference.pt of a train.py run folder")
    settings = files.load(path, "reference").get("pretrain")
    if not isinstance(settings, dict) or set(settings) != set(cli.PRETRAIN_KEYS):
        raise UsageError(f"--reference={path}: does not say how it was pretrained; train a reference with train.py")
    return settings


# the numeric flags: default, lowest, highest (--lr: above it), meaning
NUMBERS = {"pairs": (2000, 1, 10 ** 7, "preference pairs to label with the gold reward"),
           "tau": (0.0, 0, 10 ** 6, "labelling noise: y_a preferred with probability sigma((g_a - g_b) / tau)"),
           "held_out": (1000, 1, 10 ** 6, "fresh noise-free gold pairs to measure the accuracy on"),
           "epochs": (4, 1, 1000, "passes over the pairs"),
           "lr": (1e-3, 0, 1, "AdamW learning rate, decayed linearly to 0"),
           "batch": (32, 1, 65_536, "pairs per step"),
           "seed": (0, 0, 2 ** 63 - 1, "seed of the pairs, and of pi_ref unless --reference is given")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minippo.extras.reward_model", allow_abbrev=False,
                                description="Train a reward model r_phi(x, y) on preference pairs.")
    a = p.add_argument
    a("--out", default="rm", help="folder for reference.pt, pairs.jsonl, reward_model.pt [default: rm]")
    a("--pairs-file", default="", help="train on this JSONL file's judged pairs (e.g. a run's human_eval.jsonl)")
    a("--reward", default="positive", choices=sorted(REWARDS), help="the gold reward [default: positive]")
    for name, (default, _, _, meaning) in NUMBERS.items():
        a(cli.flag(name), type=type(default), default=default, help=f"{meaning} [default: {default}]")
    a("--reference", default="", help="pi_ref: this reference.pt of a train.py run, with its settings")
    a("--device", default="cpu", choices=("cpu", "cuda", "auto"), help="[default: cpu]")
    a("--force", action="store_true", help="replace the model, pairs and a reference.pt of other settings in --out")
    p.error = cli.one_line_error
    return files.boundary(command, p.parse_args(argv), after_stop=lambda: "nothing of the reward model was saved")


def command(args) -> int:
    for name, (_, low, high, _) in NUMBERS.items():
        cli.within(name, getattr(args, name), low, high, above=name == "lr")
    settings = reference_settings(args.reference) if args.reference else {"seed": args.seed}
    run = runs.Run(cli.check(Config(**settings, out=args.out, device=args.device)))   # train.py's checks and shapes
    rows = read_pairs(args.pairs_file, run.vocab, run.cfg.block_size) if args.pairs_file else None   # before writing
    if rows is not None and sum(q[3] != 0.5 for q in training_pairs(rows)) < 2:
        raise UsageError(f"--pairs-file={args.pairs_file}: {len(rows)} rows but fewer than 2 pairs of finished "
                         f"responses with a winner (ties and skips teach no ranking); judge more")
    is_input = rows is not None and os.path.realpath(args.pairs_file) == os.path.realpath(run.path("pairs.jsonl"))
    run.lock_fd = files.lock(args.out)
    try:
        for name in ["reward_model.pt"] + ["pairs.jsonl"] * (not is_input):    # an input is never replaced
            if os.path.exists(run.path(name)) and not args.force:
                raise UsageError(f"--out={args.out} already holds {name}; use another folder, or --force")
        here, cached = run.path("reference.pt"), run.cached_reference()   # e.g. a run folder's pi_ref
        if cached is None and os.path.exists(here) and not args.force:
            raise UsageError(f"--out={args.out} holds a reference.pt pretrained with other settings; use another "
                             f"folder, --reference {here} to start from it, or --force to replace it")
        if cached is None and args.reference:
            files.save(files.load(args.reference, "reference"), here)
        ref, _ = reference.pretrained_policy(run)
        if ref is None:
            raise KeyboardInterrupt
        gold_fn, rng, t0 = REWARDS[args.reward], random.Random(args.seed), time.time()
        torch.manual_seed(args.seed + runs.RL_SEED)
        sample = lambda n, tau, decided=False: gold_pairs(ref.requires_grad_(False), run.vocab, run.prompts,
                                                          gold_fn, n, tau, run.cfg, run.device, rng, decided)
        rows = rows if rows is not None else sample(args.pairs, args.tau)
        pairs, held_out = training_pairs(rows), training_pairs(sample(args.held_out, 0.0, decided=True))
        model, loss = train_reward_model(ref, run.vocab, pairs, args.epochs, args.lr, args.batch, run.device)
        xs, ys_a, ys_b, _ = zip(*training_pairs(sample(512, 0.0)))       # normalised on 1,024 responses of pi_ref
        r_ref = raw_rewards(model, run.vocab, xs + xs, ys_a + ys_b, run.device).double()
        gain, bias = normalisation(r_ref)
        info = {"pretrain": run.pretrain, "gain": gain, "bias": bias, "gold": args.reward, "tau": args.tau,
                "pairs": len(pairs), "pairs_file": args.pairs_file, "epochs": args.epochs, "lr": args.lr,
                "seed": args.seed, "train_loss": loss, "train_accuracy": accuracy(model, run.vocab, pairs, run.device),
                "held_out_pairs": len(held_out), "held_out_accuracy": accuracy(model, run.vocab, held_out, run.device),
                "below_no_eos_penalty": ((gain * r_ref + bias) < NO_EOS_PENALTY).double().mean().item(),
                "seconds": time.time() - t0}
        files.save({"kind": "reward_model", **run.identity, "model": model.state_dict(), **info},
                   run.path("reward_model.pt"))     # first: a failed write keeps the old model and pairs
        if not is_input:
            files.save_lines([json.dumps(row) + "\n" for row in rows], run.path("pairs.jsonl"))
    finally:
        run.close()
    print(f"reward model: {len(pairs)} pairs, loss {loss:.3f}; held-out accuracy against {args.reward!r}: "
          f"{info['held_out_accuracy']:.3f} on {len(held_out)} decided pairs; {info['seconds']:.0f} s. "
          f"{info['below_no_eos_penalty']:.0%} of pi_ref's finished responses score below the {NO_EOS_PENALTY:g} "
          f"of one that never ends. Use it: train.py --reward-model {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
