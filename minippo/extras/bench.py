"""Where the time of one RL iteration goes: `python -m minippo.extras.bench [--json] [--device cuda]`.

    python -m minippo.extras.bench                                   # the default PPO iteration
    python -m minippo.extras.bench --algo reinforce --batch 64 --max-new-tokens 48   # TRL GRPO's work
    python -m minippo.extras.bench --algo grpo --batch 64 --max-new-tokens 48 --epochs 1 --minibatch 64

It times minippo.ppo.iteration itself on random weights, every response exactly --max-new-tokens
long, split into phases by timing the sample(), score() and update() it calls; the rest (log-probs
of pi_theta and pi_ref, the KL, GAE) is the remainder. Then it samples once without the KV cache."""
import argparse
import json
import platform
import resource
import sys
import time
from unittest import mock

import torch

from minippo import ppo
from minippo.config import Config
from minippo.data import Vocab, make_corpus, make_prompts
from minippo.extras import files
from minippo.extras.cli import LIMITS, check, flag, helps, one_line_error
from minippo.extras.files import Failure, UsageError
from minippo.model import ModelConfig, Policy, sample
from minippo.rewards import REWARDS
from minippo.rollout import encode_prompts, score

CHARS = "\n .abcdefghiklmnopqrstuvwxyz"          # the built-in corpus's characters
PROMPT_ROOM = 1 + max(map(len, make_prompts(make_corpus(200, 0))))   # EOS + the longest prompt
FLAGS = "device algo batch max_new_tokens d_model n_layer n_head epochs group".split()
PHASES = ("sampling", "scoring", "log-probs, KL, GAE", "update")  # the third: what the others leave


def clock(device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def timed(seconds: dict, phase: str, fn, device):
    def call(*args, **kwargs):
        t = clock(device)
        result = fn(*args, **kwargs)
        seconds[phase] = seconds.get(phase, 0.0) + clock(device) - t
        return result

    return call


def fixed_length(model, prompt_ids, max_new_tokens, temperature, eos_id):
    """sample() with EOS ignored until the last token, EOS: every response as long, and scored."""
    tokens, logprobs = sample(model, prompt_ids, max_new_tokens, temperature, -1)
    return torch.cat([tokens[:, :-1], torch.full_like(tokens[:, -1:], eos_id)], 1), logprobs


def bench(cfg: Config, device, iters: int = 5, warmup: int = 2) -> dict:
    """Times minippo.ppo.iteration, split by timing the sample(), score() and update() it calls."""
    torch.manual_seed(0)
    vocab, prompts = Vocab(CHARS), make_prompts(make_corpus(200, 0))
    mcfg = ModelConfig(vocab.size, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.d_model)
    policy, ref = Policy(mcfg).to(device), Policy(mcfg).to(device).requires_grad_(False)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)
    spent, reward_fn = {}, REWARDS[cfg.reward]
    # the loop looks sample, score and update up in minippo.ppo at each call: replaced there
    fns = {"sample": ("sampling", fixed_length), "score": ("scoring", score)}
    fns["update"] = ("update", ppo.update)
    with mock.patch.multiple(ppo, **{k: timed(spent, *v, device) for k, v in fns.items()}):
        for it in range(warmup + iters):
            if it == warmup:                      # the timed iterations start
                spent.clear()
                start = clock(device)
            ppo.iteration(policy, ref, optimizer, vocab, prompts, reward_fn, cfg, cfg.beta)
        total = clock(device) - start
    if "sampling" not in spent:                   # it sampled its own way: lengths and split unknown
        raise Failure("ppo.iteration did not call ppo.sample, so its sampling cannot be timed")
    spent["log-probs, KL, GAE"] = total - sum(spent.values())
    phases, seconds = {k: spent[k] / iters for k in PHASES}, total / iters
    B, L, S = cfg.batch, cfg.max_new_tokens, PROMPT_ROOM + cfg.max_new_tokens   # S: + the prompt
    passes = 2 if cfg.algo == "ppo" else 1        # teacher-forced: pi_theta (PPO) and pi_ref
    steps = 1 if cfg.algo == "reinforce" else cfg.epochs
    tokens = dict(zip(PHASES, (B * L, B * L, passes * B * S, steps * B * S)))

    x, t = encode_prompts(vocab, (prompts * B)[:B], device), clock(device)
    with torch.inference_mode():                  # no KV cache: the whole prefix for every token
        for _ in range(L):
            probs = torch.softmax(policy(x)[0][:, -1] / cfg.temperature, -1)
            x = torch.cat([x, torch.multinomial(probs, 1)], 1)
    recompute = clock(device) - t

    name = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    out = dict(device=str(device), device_name=name, algo=cfg.algo, batch=B, max_new_tokens=L)
    out["parameters"] = sum(p.numel() for p in policy.parameters())
    out.update(seconds_per_iteration=seconds, completions_per_s=B / seconds)
    out["phases"] = {}
    for k, v in phases.items():
        out["phases"][k] = {"seconds": v, "share": v / seconds, "tokens_per_s": tokens[k] / v}
    out.update(sampling_recompute_s=recompute, kv_cache_speedup=recompute / phases["sampling"])
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux: KiB
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def table(r: dict) -> str:
    head = f"device {r['device']} ({r['device_name']}) | {r['algo']} | {r['batch']} completions "
    head += f"x {r['max_new_tokens']} tokens | {r['parameters']:,} parameters"
    lines = [head, f"{'phase':<18}{'seconds':>10}{'share':>8}{'tokens/s':>12}"]
    for k, v in r["phases"].items():
        lines.append(f"{k:<18}{v['seconds']:>10.4f}{v['share']:>8.0%}{v['tokens_per_s']:>12,.0f}")
    total = f"{r['seconds_per_iteration']:>10.4f}{'':>8}{r['completions_per_s']:>9,.0f}"
    lines.append(f"{'total':<18}{total} completions/s")
    cache = f"the cache is {r['kv_cache_speedup']:.1f}x faster"
    lines.append(f"sampling without the KV cache {r['sampling_recompute_s']:.3f} s: {cache}")
    gpu = f", GPU {r['peak_cuda_mb']:.0f} MB allocated" if "peak_cuda_mb" in r else ""
    return "\n".join(lines + [f"peak resident memory {r['peak_rss_mb']:.0f} MB{gpu}"])


def command(a) -> None:
    # checked as train.py's flags are (cli.check); minibatch and context follow from batch and response
    block = min(LIMITS["block_size"][1], max(Config.block_size, PROMPT_ROOM + a.max_new_tokens))
    minibatch = a.minibatch or (Config.minibatch if a.batch % Config.minibatch == 0 else a.batch)
    given = {name: getattr(a, name) for name in FLAGS}
    cfg = check(Config(**given, iters=a.iters, block_size=block, minibatch=minibatch))
    if PROMPT_ROOM + cfg.max_new_tokens > block:
        most = f"must be at most {block - PROMPT_ROOM} (a prompt takes up to {PROMPT_ROOM})"
        raise UsageError(f"--max-new-tokens={cfg.max_new_tokens}: {most}")
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    r = bench(cfg, torch.device(auto if cfg.device == "auto" else cfg.device), cfg.iters)
    print(json.dumps(r, indent=1) if a.json else table(r))


def main(argv=None) -> int:
    about, meaning = __doc__.splitlines()[0], helps()
    p = argparse.ArgumentParser(prog="python -m minippo.extras.bench", description=about)
    for name in FLAGS:
        f = Config.__dataclass_fields__[name]
        help = f"{meaning[name]} [{f.default}]"
        p.add_argument(flag(name), type=f.type, default=f.default, help=help)
    p.add_argument("--minibatch", type=int, default=0, help="responses per step [32, or the batch]")
    p.add_argument("--iters", type=int, default=5, help="timed iterations (after 2 warm-up ones)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.error = one_line_error
    return files.boundary(command, p.parse_args(argv))     # (out of memory too: one line)


if __name__ == "__main__":
    sys.exit(main())
