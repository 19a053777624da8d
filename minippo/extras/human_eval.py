"""Blind human evaluation of a saved run: which response is better, pi_ref's or the tuned policy's?

    python -m minippo.extras.human_eval out --n 20                    # you answer in the terminal
    printf '1\\n2\\nt\\n' | python -m minippo.extras.human_eval out --n 3  # or pipe the answers in

Pairs are shown in random order as 1: and 2: (answer 1, 2, t = tie or s = skip); it prints the tuned
policy's win rate with a 95% Wilson interval and appends each judgement to RUN_DIR/human_eval.jsonl,
holding the run folder meanwhile as train.py does (docs/experiments.md)."""
import argparse
import itertools
import json
import math
import os
import random
import sys
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import torch

from minippo.extras import cli, files, runs
from minippo.extras.cli import LIMITS, check, config_from, one_line_error
from minippo.extras.files import UsageError
from minippo.model import Policy, sample
from minippo.rollout import decode_responses, encode_prompts

ANSWERS = {"1": "1", "2": "2", "t": "t", "tie": "t", "s": "s", "skip": "s"}
HOW = "answers are 1, 2, t (tie) or s (skip), one per line"


def wilson(wins: float, n: int, z: float = 1.959964):
    """95% Wilson score interval of p = wins / n (a tie is half a win): it inverts the normal test of
    p, so it stays in [0, 1] and is not zero-width at p = 0 or 1, right for a few judgements."""
    if n == 0:
        return 0.0, 1.0
    p, z2 = wins / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def answer_stream(stdin):
    """The terminal, or the piped answers, read one line at a time as the pairs ask for them (never
    all of standard input: `yes 1 |` never ends); UsageError when nothing was piped, decided by its
    first line (call it before slow work: train.py does, before training)."""
    if stdin.isatty():
        return stdin
    first = stdin.readline()
    if not first:
        how = f"run this in a terminal, or pipe them ({HOW}): printf '1\\n2\\n' | ... --n 2"
        raise UsageError(f"standard input is not a terminal and no answers were piped in; {how}")
    lines = itertools.chain([first], iter(stdin.readline, ""))
    return SimpleNamespace(readline=lambda: next(lines, ""), isatty=lambda: False)


def ask(answers, stdout):
    """One answer, re-asked until valid; None when the answers end (end of input, or Ctrl-C)."""
    while True:
        print("which is better? 1, 2, t (tie) or s (skip): ", end="", file=stdout, flush=True)
        try:
            line = answers.readline()
        except KeyboardInterrupt:
            return None
        if not answers.isatty():
            stdout.write(line.strip() + "\n")  # piped answers: keep the transcript readable
        if not line or line.strip().lower() in ANSWERS:
            return ANSWERS.get(line.strip().lower())
        stdout.write(f"  {line.strip()!r} is not an answer\n")


def human_eval(policy, ref, vocab, prompts, cfg, device, n, seed, answers, stdout, out_path):
    """n blind pairs judged (`answers`: a stream, or answer_stream's), each appended to out_path as
    soon as it is given; the counts, the win rate and its interval."""
    rng = random.Random(seed)
    xs = rng.sample(prompts, n) if n <= len(prompts) else [rng.choice(prompts) for _ in range(n)]
    torch.manual_seed(seed)
    texts, ids = [], encode_prompts(vocab, xs, device)  # a response to each from each model
    for model in (ref, policy):
        tokens = sample(model, ids, cfg.max_new_tokens, cfg.temperature, vocab.eos_id)[0]
        ys, done = decode_responses(vocab, tokens)
        texts.append([x + y + ("" if d else " <no EOS>") for x, y, d in zip(xs, ys, done)])
    counts = {"policy": 0, "reference": 0, "tie": 0, "skip": 0}
    # appended to, never replaced: the file is rewritten whole (atomically) after each answer
    saved = Path(out_path).read_bytes() if os.path.exists(out_path) else b""
    for i, (x, ref_text, pol_text) in enumerate(zip(xs, *texts)):
        policy_is = rng.choice((1, 2))  # the blind: a coin decides which one is shown first
        first, second = (pol_text, ref_text) if policy_is == 1 else (ref_text, pol_text)
        stdout.write(f"\npair {i + 1} of {n}, prompt {x!r}\n  1: {first}\n  2: {second}\n")
        answer = ask(answers, stdout)
        if answer is None:
            stdout.write(f"\nanswers ended after {i} of {n} pairs\n")
            break
        won = "policy" if answer == str(policy_is) else "reference"
        winner = {"t": "tie", "s": "skip"}.get(answer, won)
        counts[winner] += 1
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "prompt": x, "response_1": first}
        record.update(response_2=second, policy_is=policy_is, answer=answer, winner=winner)
        saved += (json.dumps({**record, "seed": seed}) + "\n").encode()
        files.atomic_write(out_path, lambda tmp, data=saved: Path(tmp).write_bytes(data))
    shown = sum(counts.values())
    if shown == 0:
        raise UsageError(f"no pair was answered; {HOW}")
    judged, wins = shown - counts["skip"], counts["policy"] + 0.5 * counts["tie"]  # a tie: half
    low, high = wilson(wins, judged)
    rate = "no pair was judged, so there is no win rate"
    if judged:
        rate = f"win rate of the tuned policy {wins / judged:.3f} (ties count half), 95% CI "
        rate += f"[{low:.3f}, {high:.3f}] (Wilson); 0.5 = no better than pi_ref"
    tally = f"{counts['policy']} wins, {counts['reference']} losses, {counts['tie']} ties"
    stdout.write(f"\ntuned policy against pi_ref, blind: {tally}, {counts['skip']} skipped\n")
    stdout.write(f"{rate}\njudgements appended to {out_path}\n")
    win_rate = wins / judged if judged else math.nan
    return {"pairs": shown, **counts, "win_rate": win_rate, "ci_low": low, "ci_high": high}


def load_run(run_dir: str, device: str = "cpu"):
    """A saved run's Run, tuned policy and pi_ref, loaded all or nothing as `train.py --resume` does."""
    cfg = config_from(os.path.join(run_dir, "config.json"))
    run = runs.Run(check(replace(cfg, out=run_dir, resume="", force=False, device=device)))
    models = []
    for name, kind in (("checkpoint.pt", "rl"), ("reference.pt", "reference")):
        state, model = files.load(run.path(name), kind), Policy(run.model_config)
        run.check_identity(state, run.path(name))
        files.load_model(model, state.get("model"), run.path(name), "train the run again")
        models.append(model.to(run.device).eval().requires_grad_(False))
    return run, *models


def command(args) -> None:
    cli.within("n", args.n, 1, LIMITS["human_eval"][1])
    cli.within("seed", args.seed, *LIMITS["seed"])
    # a run folder? (said before the lock, which would make one) and answers, before slow loading
    config_from(os.path.join(args.run_dir, "config.json"))
    answers = answer_stream(sys.stdin)
    held = files.lock(args.run_dir, "run_dir")  # one writer: not while train.py --resume runs
    try:
        run, policy, ref = load_run(args.run_dir, args.device)
        given = (args.n, args.seed, answers, sys.stdout, run.path("human_eval.jsonl"))
        human_eval(policy, ref, run.vocab, run.prompts, run.cfg, run.device, *given)
    finally:
        files.unlock(args.run_dir, held)


def main(argv=None) -> int:
    p = argparse.ArgumentParser("python -m minippo.extras.human_eval")
    p.description = __doc__.splitlines()[0]
    p.add_argument("run_dir", help="a run folder (config.json, checkpoint.pt, reference.pt)")
    p.add_argument("--n", type=int, default=10, help="pairs to judge [default: 10]")
    p.add_argument("--seed", type=int, default=0, help="prompts, samples and order [default: 0]")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto [default: cpu]")
    p.error = one_line_error
    return files.boundary(command, p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
