"""Where the time of one RL iteration goes: `python -m minippo.extras.bench [--json] [--device cuda]`.

    python -m minippo.extras.bench                                   # the default configuration
    python -m minippo.extras.bench --algo reinforce --batch 64 --max-new-tokens 48 --json   # TRL GRPO's work
    python -m minippo.extras.bench --algo grpo --batch 64 --max-new-tokens 48 --epochs 1 --minibatch 64   # the same
    python -m minippo.extras.bench --scaling                         # cost as batch and model grow
    python -m minippo.extras.bench --profile                         # which operations take the time

It times minippo.ppo.iteration itself on random weights, every response exactly --max-new-tokens long
(docs/performance.md). Update FLOPs = 3 (2 N + 4 n_layer S d) x tokens: forward 2 N for the N weights outside
the embeddings plus 4 n_layer S d for attention (S = sequence length), backward twice the forward."""
import argparse
import json
import math
import platform
import resource
import sys
import time
from dataclasses import replace
from unittest import mock

import torch

from minippo import ppo
from minippo.config import Config
from minippo.data import Vocab, make_corpus, make_prompts
from minippo.extras import files, launch
from minippo.extras.cli import LIMITS, check, flag, one_line_error
from minippo.extras.cuda_graphs import graph_sample
from minippo.extras.files import UsageError
from minippo.model import ModelConfig, Policy, sample
from minippo.rewards import REWARDS
from minippo.rollout import encode_prompts, score

CHARS = "\n .abcdefghiklmnopqrstuvwxyz"          # the built-in corpus's characters
PROMPT_ROOM = 1 + max(map(len, make_prompts(make_corpus(200, 0))))   # EOS + the longest prompt
PHASES = ("sampling", "scoring", "log-probs, KL, GAE", "update")


def clock(device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def matmul_peak(device, dtype=torch.float32, reps=20) -> float:
    """Measured matmul FLOP/s of this device and dtype: the ceiling the update is compared with."""
    n = 4096 if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    t = clock(device)
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (clock(device) - t)


def recompute_sample(model, prompts, max_new_tokens, temperature, eos_id=None):
    """Sampling without a KV cache: the whole prefix goes through the model for every new token."""
    x = prompts
    with torch.no_grad():
        for _ in range(max_new_tokens):
            x = torch.cat([x, torch.multinomial(torch.softmax(model(x)[0][:, -1] / temperature, -1), 1)], 1)
    return x


def profiled(fn, rows: int = 8) -> list:
    """The operations of fn() that took the most CPU time (self time: not counting what they called)."""
    with torch.profiler.profile() as prof:
        fn()
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "ms": e.self_cpu_time_total / 1e3, "share": e.self_cpu_time_total / total,
             "calls": e.count} for e in events[:rows]]


def timed(seconds: dict, phase: str, fn, device):
    def call(*args, **kwargs):
        t = clock(device)
        result = fn(*args, **kwargs)
        seconds[phase] = seconds.get(phase, 0.0) + clock(device) - t
        return result
    return call


def fixed_length(sample_fn):
    """The sampler with EOS ignored until the last token, EOS: every response max_new_tokens long, and scored."""
    def sample_fixed(model, prompt_ids, max_new_tokens, temperature, eos_id):
        tokens, logprobs = sample_fn(model, prompt_ids, max_new_tokens, temperature, -1)
        return torch.cat([tokens[:, :-1], torch.full_like(tokens[:, -1:], eos_id)], 1), logprobs
    return sample_fixed


def bench(cfg: Config, device, iters: int = 5, warmup: int = 2, with_recompute: bool = True,
          autocast: bool = False, profile: bool = False) -> dict:
    """Times minippo.ppo.iteration, split into phases by wrapping the sampler, score() and update() it calls."""
    torch.manual_seed(0)
    vocab, prompts, cfg = Vocab(CHARS), make_prompts(make_corpus(200, 0)), replace(cfg, bf16=autocast)
    mcfg = ModelConfig(vocab.size, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.d_model)
    policy, ref = Policy(mcfg).to(device), Policy(mcfg).to(device).requires_grad_(False)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)
    base_sample = fixed_length(launch.sampler(cfg, device))   # what train.py passes to the loop
    ids = encode_prompts(vocab, [prompts[i % len(prompts)] for i in range(cfg.batch)], device)
    L, S = cfg.max_new_tokens, PROMPT_ROOM + cfg.max_new_tokens          # response, prompt + response

    def run_iteration(sample_fn):
        with torch.autocast(device.type, torch.bfloat16, enabled=autocast):
            ppo.iteration(policy, ref, optimizer, vocab, prompts, REWARDS[cfg.reward], cfg, cfg.beta, sample_fn)
    spent = {}
    for it in range(warmup + iters):
        if it == warmup:                          # the timed iterations start
            spent, t = {}, clock(device)
        # the loop looks score and update up in minippo.ppo at every call: replaced there while timing
        with mock.patch.multiple(ppo, score=timed(spent, "scoring", score, device),
                                 update=timed(spent, "update", ppo.update, device)):
            run_iteration(timed(spent, "sampling", base_sample, device))
    spent["log-probs, KL, GAE"] = clock(device) - t - sum(spent.values())
    phases = {k: spent[k] / iters for k in PHASES}
    ppo_ = cfg.algo == "ppo"                      # (REINFORCE, GRPO: log pi_old from sampling)
    tokens = {"sampling": cfg.batch * L, "scoring": cfg.batch * L, "log-probs, KL, GAE": (1 + ppo_) * cfg.batch * S,
              "update": (1 if cfg.algo == "reinforce" else cfg.epochs) * cfg.batch * S}
    n_params = sum(p.numel() for p in policy.parameters())
    n_weights = n_params - policy.tok_emb.weight.numel() - policy.pos_emb.weight.numel()
    update_flops = 3 * (2 * n_weights + 4 * cfg.n_layer * S * cfg.d_model) * tokens["update"] / phases["update"]
    peak, seconds = matmul_peak(device, torch.bfloat16 if autocast else torch.float32), sum(phases.values())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    out = {"device": str(device), "device_name": name, "autocast_bf16": autocast,
           "algo": cfg.algo, "batch": cfg.batch, "max_new_tokens": cfg.max_new_tokens, "parameters": n_params,
           "seconds_per_iteration": seconds, "completions_per_s": cfg.batch / seconds,
           "phases": {k: {"seconds": v, "tokens_per_s": tokens[k] / v} for k, v in phases.items()},
           "update_flops_per_s": update_flops, "matmul_peak_flops_per_s": peak,
           "update_fraction_of_peak": update_flops / peak}
    if with_recompute:                            # sampling with and without the KV cache
        ways = {"kv_cache": fixed_length(sample), "recompute": recompute_sample}
        if device.type == "cuda":                 # the same KV-cache loop replayed as CUDA graphs
            ways["kv_cache_graphs"] = fixed_length(graph_sample)
        times = dict.fromkeys(ways, math.inf)
        for rep in range(4):                      # a warm-up, then the best of 3, interleaved: noise only adds time
            for way, fn in ways.items():
                t = clock(device)
                fn(policy.eval(), ids, L, cfg.temperature, vocab.eos_id)
                times[way] = min(times[way], clock(device) - t) if rep else math.inf
        out.update({f"sampling_{way}_s": s for way, s in times.items()})
        out["kv_cache_speedup"] = times["recompute"] / times["kv_cache"]
        if device.type == "cuda":
            out["cuda_graph_speedup"] = times["kv_cache"] / times["kv_cache_graphs"]
    if profile:                                   # one more sampling call and iteration, profiled
        out["profile"] = {"sampling": profiled(lambda: base_sample(policy, ids, L, cfg.temperature, vocab.eos_id)),
                          "iteration": profiled(lambda: run_iteration(base_sample))}
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def table(r: dict) -> str:
    lines = [f"device {r['device']} ({r['device_name']}) | {r['algo']} | {r['batch']} completions x "
             f"{r['max_new_tokens']} tokens | {r['parameters']:,} parameters"
             + (" | bf16 autocast in log-probs and update" if r["autocast_bf16"] else ""),
             f"{'phase':<18}{'seconds':>10}{'share':>8}{'tokens/s':>12}"]
    lines += [f"{k:<18}{v['seconds']:>10.4f}{v['seconds'] / r['seconds_per_iteration']:>8.0%}"
              f"{v['tokens_per_s']:>12,.0f}" for k, v in r["phases"].items()]
    lines.append(f"{'total':<18}{r['seconds_per_iteration']:>10.4f}{'':>8}"
                 f"{r['completions_per_s']:>9,.0f} completions/s")
    lines.append(f"update: {r['update_flops_per_s'] / 1e9:.1f} GFLOP/s = {r['update_fraction_of_peak']:.0%} of the "
                 f"measured {'bf16' if r['autocast_bf16'] else 'fp32'} matmul peak "
                 f"{r['matmul_peak_flops_per_s'] / 1e9:,.0f} GFLOP/s")
    if "kv_cache_speedup" in r:
        lines.append(f"sampling {r['batch']} x {r['max_new_tokens']}: KV cache {r['sampling_kv_cache_s']:.3f} s, "
                     f"recompute {r['sampling_recompute_s']:.3f} s ({r['kv_cache_speedup']:.1f}x)")
    if "cuda_graph_speedup" in r:
        lines.append(f"sampling as CUDA graphs {r['sampling_kv_cache_graphs_s']:.4f} s, eager "
                     f"{r['sampling_kv_cache_s']:.4f} s ({r['cuda_graph_speedup']:.1f}x)")
    for phase, ops in r.get("profile", {}).items():
        lines.append(f"profile of one {phase} call: CPU self time by operation")
        lines += [f"  {o['op'].removeprefix('aten::')[:50]:<50}{o['ms']:>8.1f} ms{o['share']:>5.0%}"
                  f"{o['calls']:>6} calls" for o in ops]
    return "\n".join(lines + [f"peak resident memory {r['peak_rss_mb']:.0f} MB"])


def command(a) -> None:
    # checked as train.py's flags are (cli.check); the minibatch and the context follow from batch and response
    block = min(LIMITS["block_size"][1], max(Config.block_size, PROMPT_ROOM + a.max_new_tokens))
    cfg = check(Config(device=a.device, algo=a.algo, bf16=a.bf16, batch=a.batch, iters=a.iters, block_size=block,
                       minibatch=a.minibatch or (a.batch if a.batch % Config.minibatch else
                                                 min(Config.minibatch, a.batch)),
                       epochs=a.epochs, group=a.group,
                       max_new_tokens=a.max_new_tokens, d_model=a.d_model, n_layer=a.n_layer, n_head=a.n_head))
    if PROMPT_ROOM + cfg.max_new_tokens > block:
        raise UsageError(f"--max-new-tokens={cfg.max_new_tokens}: must be at most {block - PROMPT_ROOM} "
                         f"(a prompt takes up to {PROMPT_ROOM} of the {block:,} positions)")
    device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                          "cpu" if cfg.device == "auto" else cfg.device)
    runs = [bench(cfg, device, cfg.iters, autocast=cfg.bf16, profile=a.profile)]
    larger = [Config(batch=32, minibatch=32), Config(batch=128, minibatch=32), Config(batch=256, minibatch=32),
              Config(d_model=128), Config(d_model=256, n_layer=4)]           # --scaling: larger batches and models
    runs += [bench(c, device, cfg.iters, with_recompute=False) for c in larger] if a.scaling else []
    print(json.dumps(runs[0] if len(runs) == 1 else runs, indent=1) if a.json else "\n\n".join(map(table, runs)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minippo.extras.bench", description=__doc__.splitlines()[0])
    for name in ("device", "algo", "batch", "max_new_tokens", "d_model", "n_layer", "n_head", "epochs", "group"):
        f = Config.__dataclass_fields__[name]
        p.add_argument(flag(name), type=f.type, default=f.default, help=f"{f.metadata['help']} [{f.default}]")
    p.add_argument("--bf16", "--autocast", action="store_true", help="bf16 autocast for the log-probs and "
                   "the update (GPU only; sampling stays fp32)")
    p.add_argument("--minibatch", type=int, default=0, help="responses per step [32, or the batch]")
    p.add_argument("--iters", type=int, default=5, help="timed iterations (after 2 warm-up ones)")
    p.add_argument("--scaling", action="store_true", help="then the default PPO at larger batches and models")
    p.add_argument("--profile", action="store_true", help="add torch.profiler's top operations")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.error = one_line_error
    return files.boundary(command, p.parse_args(argv))     # (out of memory too: one line)


if __name__ == "__main__":
    sys.exit(main())
