"""Where the time of one RL iteration goes: `python -m minippo.extras.bench [--json] [--device cuda]`.

Off the reading path: nothing in the lesson imports this file. It builds the default policy (random
weights, so no pretraining is needed) and times minippo.ppo.iteration, the loop's own function,
on a fixed amount of work: every response runs to exactly --max-new-tokens (EOS is ignored until
the last token), so runs compare. The phases come from wrapping what the iteration calls: the
sampler, score() and update(); the rest (teacher-forced log-probs, KL, GAE) is the remainder.

    python -m minippo.extras.bench                                   # the default configuration
    python -m minippo.extras.bench --algo reinforce --batch 64 --max-new-tokens 48 --json   # TRL GRPO's work
    python -m minippo.extras.bench --scaling                         # cost as batch and model grow
    python -m minippo.extras.bench --profile                         # which operations take the time

FLOP count of the update: per token, a forward pass costs 2 N FLOPs for the weights (N = parameters
outside the embeddings) plus 4 n_layer S d for the attention scores and values (S = sequence length,
no saving for the causal mask); backward costs twice the forward, so
    update FLOPs = 3 (2 N + 4 n_layer S d) x tokens processed.
"""
import argparse
import json
import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import replace

import torch

from minippo import ppo
from minippo.config import Config
from minippo.data import Vocab, make_corpus, make_prompts
from minippo.extras import launch
from minippo.extras.cuda_graphs import graph_sample
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


def device_name(device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


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


def recompute_sample(model, prompts, max_new_tokens, temperature):
    """Sampling without a KV cache: the whole prefix goes through the model for every new token."""
    x = prompts
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits, _ = model(x)
            x = torch.cat([x, torch.multinomial(torch.softmax(logits[:, -1] / temperature, -1), 1)], 1)
    return x


def top_operations(prof, rows: int = 8) -> list:
    """The operations that took the most CPU time (self time: not counting what they called)."""
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "ms": e.self_cpu_time_total / 1e3, "share": e.self_cpu_time_total / total,
             "calls": e.count} for e in events[:rows]]


class PhaseTimer:
    """Wraps the functions the loop calls so that each call adds its wall time to a phase."""

    def __init__(self, device):
        self.device, self.seconds = device, {}

    def wrap(self, phase, fn):
        def timed(*args, **kwargs):
            t = clock(self.device)
            result = fn(*args, **kwargs)
            self.seconds[phase] = self.seconds.get(phase, 0.0) + clock(self.device) - t
            return result
        return timed


@contextmanager
def patched(module, **replacements):
    """Replace names in a module while timing (the loop looks them up at every call)."""
    saved = {name: getattr(module, name) for name in replacements}
    for name, fn in replacements.items():
        setattr(module, name, fn)
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(module, name, fn)


def fixed_length(sample_fn):
    """The loop's sampler with EOS ignored: every response has exactly max_new_tokens tokens, the
    last one replaced by EOS so that every response is scored by the reward function."""
    def sample_fixed(model, prompt_ids, max_new_tokens, temperature, eos_id):
        tokens, logprobs = sample_fn(model, prompt_ids, max_new_tokens, temperature, -1)
        return torch.cat([tokens[:, :-1], torch.full_like(tokens[:, -1:], eos_id)], 1), logprobs
    return sample_fixed


def bench(cfg: Config, device, iters: int = 5, warmup: int = 2, with_recompute: bool = True,
          autocast: bool = False, profile: bool = False) -> dict:
    """Times minippo.ppo.iteration itself (the loop's own code), split into phases by wrapping
    the sampler, score() and update() that it calls."""
    torch.manual_seed(0)
    vocab, prompts = Vocab(CHARS), make_prompts(make_corpus(200, 0))
    mcfg = ModelConfig(vocab.size, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.d_model)
    policy = Policy(mcfg).to(device)
    ref = Policy(mcfg).to(device).requires_grad_(False)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)
    cfg = replace(cfg, bf16=autocast)
    base_sample = fixed_length(launch.sampler(cfg, device))   # what train.py passes to the loop
    run_iteration = lambda sample_fn: ppo.iteration(policy, ref, optimizer, vocab, prompts,
                                                    REWARDS[cfg.reward], cfg, cfg.beta, sample_fn)
    total, timer = 0.0, PhaseTimer(device)
    for it in range(warmup + iters):
        if it == warmup:
            timer.seconds = {}
        t = clock(device)
        with patched(ppo, score=timer.wrap("scoring", score), update=timer.wrap("update", ppo.update)), \
                torch.autocast(device.type, torch.bfloat16, enabled=autocast):
            run_iteration(timer.wrap("sampling", base_sample))
        total += (clock(device) - t) if it >= warmup else 0.0
    timer.seconds["log-probs, KL, GAE"] = total - sum(timer.seconds.values())
    phases = {k: timer.seconds[k] / iters for k in PHASES}
    profiles = {}
    if profile:                                   # one more sampling call and iteration, profiled
        from torch.profiler import profile as profiler
        ids = encode_prompts(vocab, [prompts[i % len(prompts)] for i in range(cfg.batch)], device)
        with profiler() as prof:
            base_sample(policy, ids, cfg.max_new_tokens, cfg.temperature, vocab.eos_id)
        profiles["sampling"] = top_operations(prof)
        with profiler() as prof, torch.autocast(device.type, torch.bfloat16, enabled=autocast):
            run_iteration(base_sample)
        profiles["iteration"] = top_operations(prof)
    P = max(len(x) for x in prompts) + 1
    L, S = cfg.max_new_tokens, P + cfg.max_new_tokens
    epochs = cfg.epochs if cfg.algo == "ppo" else 1
    tokens_of = {"sampling": cfg.batch * L, "scoring": cfg.batch * L,
                 "log-probs, KL, GAE": (2 if cfg.algo == "ppo" else 1) * cfg.batch * S,
                 "update": epochs * cfg.batch * S}
    n_params = sum(p.numel() for p in policy.parameters())
    n_weights = n_params - policy.tok_emb.weight.numel() - policy.pos_emb.weight.numel()
    update_flops = 3 * (2 * n_weights + 4 * cfg.n_layer * S * cfg.d_model) * tokens_of["update"]
    peak = matmul_peak(device, torch.bfloat16 if autocast else torch.float32)
    seconds = sum(phases.values())
    out = {"device": str(device), "device_name": device_name(device), "autocast_bf16": autocast,
           "algo": cfg.algo, "batch": cfg.batch,
           "max_new_tokens": cfg.max_new_tokens, "parameters": n_params,
           "seconds_per_iteration": seconds, "completions_per_s": cfg.batch / seconds,
           "phases": {k: {"seconds": v, "tokens_per_s": tokens_of[k] / v} for k, v in phases.items()},
           "update_flops_per_s": update_flops / phases["update"], "matmul_peak_flops_per_s": peak,
           "update_fraction_of_peak": update_flops / phases["update"] / peak}
    if with_recompute:
        policy.eval()
        times = {}
        ids = encode_prompts(vocab, [prompts[i % len(prompts)] for i in range(cfg.batch)], device)
        kv = fixed_length(sample)
        runs = [("kv_cache", lambda: kv(policy, ids, L, cfg.temperature, vocab.eos_id)),
                ("recompute", lambda: recompute_sample(policy, ids, L, cfg.temperature))]
        if device.type == "cuda":     # the same KV-cache loop replayed as CUDA graphs
            graphs = fixed_length(graph_sample)
            runs.append(("kv_cache_graphs", lambda: graphs(policy, ids, L, cfg.temperature, vocab.eos_id)))
        for name, fn in runs:
            fn()                                  # warm-up
        for _ in range(3):                        # best of 3, interleaved: noise only ever adds time
            for name, fn in runs:
                t = clock(device)
                fn()
                times[name] = min(times.get(name, float("inf")), clock(device) - t)
        out["sampling_kv_cache_s"], out["sampling_recompute_s"] = times["kv_cache"], times["recompute"]
        out["kv_cache_speedup"] = times["recompute"] / times["kv_cache"]
        if "kv_cache_graphs" in times:
            out["sampling_kv_cache_graphs_s"] = times["kv_cache_graphs"]
            out["cuda_graph_speedup"] = times["kv_cache"] / times["kv_cache_graphs"]
    if profiles:
        out["profile"] = profiles
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def table(r: dict) -> str:
    autocast = " | bf16 autocast in log-probs and update" if r["autocast_bf16"] else ""
    lines = [f"device {r['device']} ({r['device_name']}) | {r['algo']} | {r['batch']} completions x "
             f"{r['max_new_tokens']} tokens | {r['parameters']:,} parameters{autocast}",
             f"{'phase':<18}{'seconds':>10}{'share':>8}{'tokens/s':>12}"]
    for k, v in r["phases"].items():
        lines.append(f"{k:<18}{v['seconds']:>10.4f}{v['seconds'] / r['seconds_per_iteration']:>8.0%}"
                     f"{v['tokens_per_s']:>12,.0f}")
    lines.append(f"{'total':<18}{r['seconds_per_iteration']:>10.4f}{'':>8}"
                 f"{r['completions_per_s']:>9,.0f} completions/s")
    lines.append(f"update: {r['update_flops_per_s'] / 1e9:.1f} GFLOP/s = {r['update_fraction_of_peak']:.0%} "
                 f"of the measured {'bf16' if r['autocast_bf16'] else 'fp32'} matmul peak "
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
    lines.append(f"peak resident memory {r['peak_rss_mb']:.0f} MB")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--algo", default="ppo", choices=("ppo", "reinforce"))
    p.add_argument("--batch", type=int, default=Config.batch)
    p.add_argument("--max-new-tokens", type=int, default=Config.max_new_tokens)
    p.add_argument("--d-model", type=int, default=Config.d_model)
    p.add_argument("--n-layer", type=int, default=Config.n_layer)
    p.add_argument("--autocast", action="store_true", help="bf16 autocast for the log-probs and the update (GPU only; sampling stays fp32)")
    p.add_argument("--iters", type=int, default=5, help="timed iterations (after 2 warm-up ones)")
    p.add_argument("--scaling", action="store_true", help="then the default PPO configuration at larger batches and models")
    p.add_argument("--profile", action="store_true", help="add torch.profiler's top operations of sampling and update")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.error = lambda message: p.exit(2, f"error: {message}\n")      # one line, not the usage block
    a = p.parse_args(argv)
    for flag, value, most in (("--batch", a.batch, 65_536), ("--iters", a.iters, 1000),
                              ("--max-new-tokens", a.max_new_tokens, 256)):
        if not 0 < value <= most:
            p.exit(2, f"error: {flag}={value}: must be in 1 .. {most}\n")
    if not 0 < a.d_model <= 4096 or not 0 < a.n_layer <= 64 or a.d_model % Config.n_head:
        p.exit(2, f"error: need 0 < --n-layer <= 64 and --d-model a multiple of {Config.n_head} up to 4096\n")
    if a.device == "cuda" and not torch.cuda.is_available():
        p.exit(2, "error: --device=cuda: no CUDA GPU is available here\n")
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                          "cpu" if a.device == "auto" else a.device)
    if a.autocast and device.type != "cuda":
        p.exit(2, "error: --autocast needs a CUDA GPU (bf16 matmuls on a CPU are ~50x slower than fp32)\n")
    cfg = Config(algo=a.algo, batch=a.batch, max_new_tokens=a.max_new_tokens, d_model=a.d_model,
                 n_layer=a.n_layer, block_size=max(Config.block_size, PROMPT_ROOM + a.max_new_tokens),
                 minibatch=min(Config.minibatch, a.batch) if a.batch % Config.minibatch == 0 else a.batch)
    runs = [bench(cfg, device, a.iters, autocast=a.autocast, profile=a.profile)]
    if a.scaling:
        for batch in (32, 128, 256):
            runs.append(bench(Config(batch=batch, minibatch=32), device, a.iters, with_recompute=False))
        for d, layers in ((128, 2), (256, 4)):
            runs.append(bench(Config(d_model=d, n_layer=layers), device, a.iters, with_recompute=False))
    if a.json:
        print(json.dumps(runs[0] if len(runs) == 1 else runs, indent=1))
    else:
        print("\n\n".join(table(r) for r in runs))


if __name__ == "__main__":
    sys.exit(main())
