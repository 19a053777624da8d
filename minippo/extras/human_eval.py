"""Blind human evaluation of a saved run: which response is better, pi_ref's or the tuned policy's?

    python -m minippo.extras.human_eval out --n 20                    # you answer in the terminal
    printf '1\\n2\\nt\\n' | python -m minippo.extras.human_eval out --n 3  # or pipe the answers in

Pairs are shown in random order as 1: and 2: (answer 1, 2, t = tie or s = skip); it prints the tuned policy's
win rate with a 95% Wilson interval and appends each judgement to RUN_DIR/human_eval.jsonl (docs/experiments.md)."""
import argparse
import io
import json
import math
import os
import random
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from minippo.extras import cli, files, runs
from minippo.extras.cli import LIMITS, check, config_from, one_line_error
from minippo.extras.files import UsageError
from minippo.model import Policy, sample
from minippo.rollout import decode_responses, encode_prompts

ANSWERS = {"1": "1", "2": "2", "t": "t", "tie": "t", "s": "s", "skip": "s"}


def wilson(wins: float, n: int, z: float = 1.959964):
    """95% Wilson score interval of p = wins / n (a tie is half a win): it inverts the normal test of p, so it
    stays inside [0, 1] and is not zero-width at p = 0 or 1, right for a handful of judgements."""
    if n == 0:
        return 0.0, 1.0
    p, z2 = wins / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def answer_stream(stdin):
    """The terminal, or the piped text; UsageError when nothing was piped (call it before slow work)."""
    if stdin.isatty():
        return stdin
    text = stdin.read()
    if not text.strip():
        raise UsageError("standard input is not a terminal and no answers were piped in; run this in a terminal, or "
                         "pipe one answer per line (1, 2, t or s), e.g. printf '1\\n2\\nt\\n' | ... --n 3")
    return io.StringIO(text)


def ask(stdin, stdout):
    """One answer, re-asked until valid; None when the answers end (end of input, or Ctrl-C)."""
    while True:
        stdout.write("which is better? 1, 2, t (tie) or s (skip): ")
        stdout.flush()
        try:
            line = stdin.readline()
        except KeyboardInterrupt:
            return None
        if not stdin.isatty():
            stdout.write(line.strip() + "\n")     # piped answers: keep the transcript readable
        if not line or line.strip().lower() in ANSWERS:
            return ANSWERS.get(line.strip().lower())
        stdout.write(f"  {line.strip()!r} is not an answer\n")


def human_eval(policy, ref, vocab, prompts, cfg, device, n: int, seed: int, stdin, stdout, out_path: str) -> dict:
    stdin, rng = answer_stream(stdin), random.Random(seed)
    xs = rng.sample(prompts, n) if n <= len(prompts) else [rng.choice(prompts) for _ in range(n)]
    torch.manual_seed(seed)
    texts = []                                  # one response per prompt from each, at the run's temperature
    for model in (ref, policy):
        tokens = sample(model, encode_prompts(vocab, xs, device), cfg.max_new_tokens, cfg.temperature, vocab.eos_id)[0]
        ys, finished = decode_responses(vocab, tokens)
        texts.append([x + y + ("" if done else " <no EOS>") for x, y, done in zip(xs, ys, finished)])
    counts = {"policy": 0, "reference": 0, "tie": 0, "skip": 0}
    saved = Path(out_path).read_bytes() if os.path.exists(out_path) else b""      # appended to, never replaced
    for i, (x, ref_text, pol_text) in enumerate(zip(xs, *texts)):
        policy_is = rng.choice((1, 2))          # the blind: a coin decides which one is shown first
        first, second = (pol_text, ref_text) if policy_is == 1 else (ref_text, pol_text)
        stdout.write(f"\npair {i + 1} of {n}, prompt {x!r}\n  1: {first}\n  2: {second}\n")
        answer = ask(stdin, stdout)
        if answer is None:
            stdout.write(f"\nanswers ended after {i} of {n} pairs\n")
            break
        winner = {"t": "tie", "s": "skip"}.get(answer) or ("policy" if int(answer) == policy_is else "reference")
        counts[winner] += 1
        saved += (json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "prompt": x, "response_1": first,
                              "response_2": second, "policy_is": policy_is, "answer": answer, "winner": winner,
                              "seed": seed}) + "\n").encode()
        files.atomic_write(out_path, lambda tmp: Path(tmp).write_bytes(saved))   # after each answer, whole
    shown = sum(counts.values())
    if shown == 0:
        raise UsageError("no pair was answered: answers are 1, 2, t (tie) or s (skip), one per line")
    judged, wins = shown - counts["skip"], counts["policy"] + 0.5 * counts["tie"]    # a tie: half a win each
    low, high = wilson(wins, judged)
    rate = (f"win rate of the tuned policy {wins / judged:.3f} (ties count half), 95% CI [{low:.3f}, {high:.3f}] "
            f"(Wilson); 0.5 = no better than pi_ref" if judged else "no pair was judged, so there is no win rate")
    stdout.write(f"\ntuned policy against pi_ref, blind: {counts['policy']} wins, {counts['reference']} losses, "
                 f"{counts['tie']} ties, {counts['skip']} skipped\n{rate}\njudgements appended to {out_path}\n")
    return {"pairs": shown, "wins": counts["policy"], "losses": counts["reference"], "ties": counts["tie"],
            "skips": counts["skip"], "win_rate": wins / judged if judged else math.nan, "ci_low": low, "ci_high": high}


def load_run(run_dir: str, device: str = "cpu"):
    """A saved run's Run, tuned policy and pi_ref, loaded all or nothing as `train.py --resume` loads them."""
    cfg = config_from(os.path.join(run_dir, "config.json"))
    run = runs.Run(check(replace(cfg, out=run_dir, resume="", force=False, device=device, bf16=False)))
    models = []
    for name, kind in (("checkpoint.pt", "rl"), ("reference.pt", "reference")):
        state = files.load(run.path(name), kind)
        run.check_identity(state, run.path(name))
        model = files.load_model(Policy(run.model_config), state.get("model"), run.path(name), "train the run again")
        models.append(model.to(run.device).eval().requires_grad_(False))
    return run, models[0], models[1]


def command(args) -> None:
    cli.within("n", args.n, 1, LIMITS["human_eval"][1])
    cli.within("seed", args.seed, *LIMITS["seed"])
    config_from(os.path.join(args.run_dir, "config.json"))    # a run folder? said before asking for answers
    answers = answer_stream(sys.stdin)                          # and those before the slow loading
    run, policy, ref = load_run(args.run_dir, args.device)
    human_eval(policy, ref, run.vocab, run.prompts, run.cfg, run.device, args.n, args.seed, answers, sys.stdout,
               run.path("human_eval.jsonl"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minippo.extras.human_eval", description=__doc__.splitlines()[0])
    p.add_argument("run_dir", help="a run folder written by train.py (config.json, checkpoint.pt, reference.pt)")
    p.add_argument("--n", type=int, default=10, help="pairs to judge [default: 10]")
    p.add_argument("--seed", type=int, default=0, help="which prompts, samples and order [default: 0]")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto [default: cpu]")
    p.error = one_line_error
    return files.boundary(command, p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
