"""The run's plumbing, kept out of the algorithm: the output folder, data, the cached reference,
resume and Ctrl-C. Nothing here is PPO; read it when you want to know where files go.

Files in --out:
  config.json        the run's settings (a resumed run must repeat them)
  reference.pt       the pretrained policy = pi_ref; a cache reused while its settings match
  pretrain_state.pt  pretraining interrupted by Ctrl-C (removed once pretraining finishes)
  checkpoint.pt      RL state: policy + value head, AdamW, beta, iteration, every RNG state
  metrics.jsonl      one JSON object per RL iteration
  samples.txt        prompt -> response samples every --sample-every iterations
  summary.json       the final evaluation against J*
"""
import copy
import ctypes
import ctypes.util
import json
import os
import sys
import time
from dataclasses import fields

import torch

from minippo import checkpoint as ckpt
from minippo.adamw import AdamW
from minippo.config import PRETRAIN_KEYS, RESUMABLE, Config, UsageError
from minippo.data import Vocab, make_corpus, make_prompts
from minippo.model import ModelConfig, Policy
from minippo.pretrain import grammatical_fraction, pretrain, sample_lines, val_loss

RUN_FILES = ("config.json", "pretrain_state.pt", "checkpoint.pt", "metrics.jsonl", "samples.txt",
             "summary.json")


class StopFlag:
    """Set by the first Ctrl-C; loops finish their current step, save and exit. A second one quits."""
    requested = False

    def request(self, signum=None, frame=None):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nCtrl-C: finishing this step, then saving (Ctrl-C again quits without saving)",
              file=sys.stderr)


def read_lines(path: str, flag: str = "data") -> list[str]:
    """Non-empty lines of a UTF-8 text file, or UsageError naming what is wrong with it."""
    if not os.path.isfile(path):
        raise UsageError(f"--{flag}={path}: no such file")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise UsageError(f"--{flag}={path}: not UTF-8 text (byte {e.start}); convert it to UTF-8") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise UsageError(f"--{flag}={path}: the file is empty; give one sentence per line")
    return lines


class Run:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.path = lambda name: os.path.join(cfg.out, name)
        self.device = pick_device(cfg.device)
        lines = read_lines(cfg.data) if cfg.data else make_corpus(cfg.corpus_lines, cfg.seed)
        self.grammar = not cfg.data           # fluency is only defined for the built-in grammar
        n_val = max(1, len(lines) // 20)      # 5% of the lines are held out for validation
        self.vocab = Vocab.from_text("\n".join(lines))
        self.train_ids = torch.tensor(self.vocab.encode("\n" + "\n".join(lines[n_val:]) + "\n"))
        self.val_ids = torch.tensor(self.vocab.encode("\n" + "\n".join(lines[:n_val]) + "\n"))
        self.prompts = make_prompts(lines)
        if cfg.prompts:
            self.prompts = read_lines(cfg.prompts, "prompts")
            for x in self.prompts:
                try:
                    self.vocab.encode(x)
                except ValueError as e:
                    raise UsageError(f"--prompts={cfg.prompts}: prompt {x!r}: {e}") from None
        if not self.prompts or len(self.val_ids) < cfg.block_size + 2 or len(self.train_ids) < 4 * cfg.block_size:
            raise UsageError(f"--data={cfg.data}: too short ({len(lines)} lines, {len(self.prompts)} "
                             f"distinct prompts); give at least a few hundred lines of 3+ words")
        longest = max(self.prompts, key=len)
        if len(longest) + 1 + cfg.max_new_tokens > cfg.block_size:
            raise UsageError(f"--max-new-tokens={cfg.max_new_tokens}: the prompt {longest!r} plus the "
                             f"response exceed --block-size={cfg.block_size}")
        self.model_config = ModelConfig(self.vocab.size, cfg.block_size,
                                        cfg.n_layer, cfg.n_head, cfg.d_model)
        self.identity = {"vocab": self.vocab.chars, "model_config": vars(self.model_config)}
        defaults = Config()
        flags = []                        # the flags that differ from the defaults
        for f in fields(cfg):
            value, flag = getattr(cfg, f.name), "--" + f.name.replace("_", "-")
            if f.name not in ("out", "resume", "force") and value != getattr(defaults, f.name):
                flags.append((flag if value else "--no-" + flag[2:]) if f.type is bool else f"{flag} {value}")
        world = int(os.environ.get("WORLD_SIZE", "1"))      # set by torchrun
        launcher = "python" if world == 1 else f"torchrun --standalone --nproc_per_node {world}"
        self.resume_hint = " ".join([launcher, "train.py"] + flags + [f"--resume {cfg.out}"])

    def describe(self) -> str:
        c = self.cfg
        return (f"minippo | device {self.device} | {len(self.prompts)} prompts | {c.algo}, reward "
                f"{c.reward!r}, beta {c.beta}, T {c.temperature} | {c.batch} responses x <= "
                f"{c.max_new_tokens} tokens per iteration, {c.iters} iterations | out: {c.out}")

    def log_metrics(self, m: dict):
        with open(self.path("metrics.jsonl"), "a") as f:
            f.write(json.dumps(m) + "\n")

    def log_samples(self, it, xs, ys, scores, bar):
        text = "".join(f"  [{r:+.2f}] {x!r} -> {y!r}\n" for x, y, r in zip(xs, ys, scores))
        with open(self.path("samples.txt"), "a") as f:
            f.write(f"iteration {it}\n{text}")
        bar.write(f"iteration {it}\n{text.rstrip()}")

    def save_rl(self, policy, optimizer, it: int, beta: float, rngs: list):
        """rngs: the random-generator state of every process (one in a single-process run)."""
        if not all(torch.isfinite(p).all() for p in policy.parameters()):
            raise FloatingPointError(f"parameters became non-finite by iteration {it}")
        ckpt.save({"kind": "rl", **self.identity, "config": self.cfg.to_dict(), "iter": it,
                   "beta": beta, "model": policy.state_dict(), "optimizer": optimizer.state_dict(),
                   "rng": rngs, "metrics_bytes": os.path.getsize(self.path("metrics.jsonl")),
                   "samples_bytes": os.path.getsize(self.path("samples.txt"))}, self.path("checkpoint.pt"))

    def samples_to_reach(self, objective: float):
        """Responses sampled until the first iteration whose batch objective reached `objective`."""
        with open(self.path("metrics.jsonl")) as f:
            for line in f:
                m = json.loads(line)
                if m["objective"] >= objective:
                    return m["iter"] * self.cfg.batch
        return None

    def save_summary(self, results: dict):
        ckpt.save_json(results, self.path("summary.json"))


def release_memory():
    """Hand freed memory back to the OS. Tensors change size every iteration (responses differ in
    length) and glibc's allocator otherwise keeps the freed blocks, so resident memory creeps up
    (+8% from iteration 10 to 200, measured) although nothing leaks; with this it stays flat."""
    if _LIBC is not None and hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if ctypes.util.find_library("c") else None


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device=cuda: no CUDA GPU is available here; use --device cpu or auto")
    return torch.device("cuda" if name == "auto" and torch.cuda.is_available() else
                        "cpu" if name == "auto" else name)


def open_run(cfg: Config, rank: int = 0) -> Run:
    """Check the output folder against --resume / --force, load the data, write config.json."""
    run = Run(cfg)                         # validates data and sizes before any file is touched
    if rank > 0:                           # several processes: only rank 0 checks and writes files
        return run
    here = [f for f in RUN_FILES if os.path.exists(run.path(f))]
    if cfg.resume:
        if "config.json" not in here:
            raise UsageError(f"--resume={cfg.resume}: no run to resume there (no config.json)")
        with open(run.path("config.json")) as f:
            saved = json.load(f)
        for key, value in cfg.to_dict().items():
            if key not in RESUMABLE and saved.get(key) != value:
                raise UsageError(f"--resume={cfg.resume}: that run used --{key.replace('_', '-')}="
                                 f"{saved.get(key)!r}, this command has {value!r}; repeat its settings")
        return run
    if here and not cfg.force:
        raise UsageError(f"--out={cfg.out} already holds a run ({', '.join(here)}); continue it with "
                         f"--resume {cfg.out}, or start afresh with --force (keeps reference.pt)")
    os.makedirs(cfg.out, exist_ok=True)
    for f in here:                         # --force: the old run goes, the cached reference stays
        os.remove(run.path(f))
    ckpt.save_json(cfg.to_dict(), run.path("config.json"))
    return run


def pretrained_policy(run: Run, stop: StopFlag, build: bool = True):
    """The pretrained policy and its frozen copy pi_ref, from the cache or by pretraining now
    (build=False: from the cache only, which another process has just written)."""
    cfg, path = run.cfg, run.path("reference.pt")
    want = {k: getattr(cfg, k) for k in PRETRAIN_KEYS}
    ckpt.seed_everything(cfg.seed)          # the initial weights too: torch seeds itself randomly
    policy = Policy(run.model_config)
    if build:                               # (the other processes of a torchrun stay quiet)
        print(f"policy: {sum(p.numel() for p in policy.parameters()):,} parameters, vocabulary "
              f"{run.vocab.size} characters {run.vocab.chars!r} + PAD")
    seconds = 0.0
    cached = ckpt.load(path, "reference") if os.path.exists(path) else None
    if cached is not None and cached["pretrain"] == want:
        ckpt.check_compatible(cached, run.identity, path)
        policy.load_state_dict(cached["model"])
        if build:
            print(f"reference: reusing {path} ({cached['stats']})")
    elif not build:
        raise UsageError(f"{path}: not there for this process; with several machines --out must be a "
                         f"folder they all share")
    else:
        if cached is not None:
            changed = {k: (cached["pretrain"].get(k), v) for k, v in want.items() if cached["pretrain"].get(k) != v}
            print(f"reference: {path} was pretrained with other settings {changed}; pretraining again")
        policy.to(run.device)
        optimizer = AdamW(policy.parameters(), lr=cfg.pretrain_lr, betas=(0.9, 0.99))
        step, state_path = 0, run.path("pretrain_state.pt")
        if cfg.resume and os.path.exists(state_path):
            state = ckpt.load(state_path, "pretrain")
            ckpt.check_compatible(state, run.identity, state_path)
            policy.load_state_dict(state["model"])
            load_optimizer(optimizer, state, state_path)
            ckpt.set_rng_state(state["rng"])
            step = state["step"]
        t0 = time.time()
        step = pretrain(policy, optimizer, run.train_ids.to(run.device), run.vocab.eos_id, cfg, step,
                        should_stop=lambda: stop.requested)
        if step < cfg.pretrain_steps:      # Ctrl-C: keep everything needed to continue exactly
            ckpt.save({"kind": "pretrain", **run.identity, "step": step, "model": policy.state_dict(),
                       "optimizer": optimizer.state_dict(), "rng": ckpt.rng_state()}, state_path)
            print(f"interrupted: pretraining saved at step {step} in {cfg.out}; continue with "
                  f"`{run.resume_hint}`", file=sys.stderr)
            return None, None, 0.0
        seconds = time.time() - t0
        lines = sample_lines(policy, run.vocab, 256)
        stats = {"val_loss": round(val_loss(policy, run.val_ids.to(run.device), run.vocab.eos_id, cfg.block_size), 4),
                 "seconds": round(seconds, 1)}
        if run.grammar:
            stats["grammatical"] = grammatical_fraction(lines)
        print(f"reference: pretrained in {seconds:.1f} s, {stats}; samples:")
        print("".join(f"  {line}\n" for line in lines[:5]), end="")
        ckpt.save({"kind": "reference", **run.identity, "pretrain": want, "stats": stats,
                   "model": policy.state_dict()}, path)
        if os.path.exists(state_path):
            os.remove(state_path)
    policy.to(run.device).eval()
    ref = copy.deepcopy(policy).requires_grad_(False)           # pi_ref: frozen from here on
    return policy, ref, seconds


def load_optimizer(optimizer, state: dict, path: str):
    try:
        optimizer.load_state_dict(state.get("optimizer"))
    except ValueError as e:
        raise UsageError(f"{path}: {e}; delete it, or start afresh with --force") from None


def resume_rl(run: Run, policy, optimizer, rank: int = 0, world: int = 1) -> dict:
    """Iteration and beta to start from; restores the checkpoint when resuming. With several
    processes each has its own random stream (seeded from the run's seed and its rank)."""
    path = run.path("checkpoint.pt")
    if run.cfg.resume and os.path.exists(path):
        state = ckpt.load(path, "rl")
        ckpt.check_compatible(state, run.identity, path)
        if len(state["rng"]) != world:
            raise UsageError(f"--resume={run.cfg.out}: that run had {len(state['rng'])} processes, "
                             f"this one has {world}; resume with the same number")
        policy.load_state_dict(state["model"])
        load_optimizer(optimizer, state, path)
        ckpt.set_rng_state(state["rng"][rank])
        if rank == 0:
            for name in ("metrics", "samples"):   # drop lines written after the checkpoint
                with open(run.path(f"{name}.{'jsonl' if name == 'metrics' else 'txt'}"), "r+b") as f:
                    f.truncate(state[f"{name}_bytes"])
            print(f"resuming at iteration {state['iter']} (beta {state['beta']:.4g})")
        return {"iter": state["iter"], "beta": state["beta"]}
    if rank == 0:
        for name in ("metrics.jsonl", "samples.txt"):
            open(run.path(name), "w").close()
    ckpt.seed_everything(run.cfg.seed + 1 + 1000 * rank)  # RL reproducible, pi_ref cached or not
    return {"iter": 0, "beta": run.cfg.beta}
