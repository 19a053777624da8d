"""The run's plumbing, kept out of the algorithm: the output folder, data, the cached reference,
resume, checkpoints, Ctrl-C and the figures of several processes. Nothing here is PPO; the loop
(minippo/ppo.py) makes three calls to a Run: start(), log() and save().

Files in --out:
  config.json        the run's settings (a resumed run must repeat them)
  reference.pt       the pretrained policy = pi_ref; a cache reused while its settings match
  pretrain_state.pt  pretraining interrupted by Ctrl-C (removed once pretraining finishes)
  checkpoint.pt      RL state: policy + value head, AdamW, beta, iteration, every RNG state
  metrics.jsonl      one JSON object per RL iteration
  samples.txt        prompt -> response samples every --sample-every iterations
  summary.json       the final evaluation against J*
"""
import ctypes
import ctypes.util
import json
import math
import os
import re
import shlex
import signal
import sys
import time
from dataclasses import asdict, fields

import torch
from tqdm import tqdm

try:
    import fcntl                           # POSIX; on Windows a run folder is not locked
except ImportError:
    fcntl = None

from minippo.config import Config
from minippo.data import Vocab, make_corpus, make_prompts
from minippo.extras.grammar import grammatical_fraction
from minippo.extras import checkpoint as ckpt
from minippo.extras import dist
from minippo.extras.cli import PRETRAIN_KEYS, RESUMABLE, UsageError
from minippo.model import ModelConfig, Policy, sample
from minippo.pretrain import line_starts, lm_loss, pretrain
from minippo.rewards import NO_EOS_PENALTY

# Seeds: pretraining (and the initial weights) use --seed itself; RL and the final evaluation draw
# from their own streams, so that a cached pi_ref or a resumed run gives the same numbers.
RL_SEED, EVAL_SEED = 1, 2          # added to --seed
RANK_SEED_STRIDE = 1000            # under torchrun, process `rank` adds rank x 1000 to the RL seed
PER_TOKEN = ("entropy", "approx_kl", "approx_kl_k3", "clipfrac")   # means over response tokens
RUN_FILES = ("config.json", "pretrain_state.pt", "checkpoint.pt", "metrics.jsonl", "samples.txt",
             "summary.json")


class StopFlag:
    """Set by the first Ctrl-C (or SIGTERM, what a scheduler or `docker stop` sends): loops finish
    their current step, save and exit. A second one quits at once, and so does the first when
    nothing is left to save (`immediate`, e.g. during the final evaluation)."""
    requested = immediate = False
    quiet = False                       # several processes: only rank 0 says so

    def request(self, signum=None, frame=None):
        if self.requested or self.immediate:
            raise KeyboardInterrupt
        self.requested = True
        if not self.quiet:
            name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
            print(f"\n{name}: finishing this step, then saving (Ctrl-C again quits without saving)",
                  file=sys.stderr)


def short(text: str, most: int = 40) -> str:
    """repr(text), cut to `most` characters: an error line stays one short line."""
    return repr(text) if len(text) <= most else repr(text[:most]) + "..."


def read_lines(path: str, flag: str = "data") -> list[str]:
    """Non-empty lines of a UTF-8 text file, or UsageError naming what is wrong with it."""
    if not os.path.isfile(path):
        what = "not a regular file" if os.path.exists(path) else "no such file"
        raise UsageError(f"--{flag}={path}: {what}; give a UTF-8 text file, one sentence per line")
    try:
        with open(path, encoding="utf-8-sig") as f:     # (a byte-order mark is not text)
            text = f.read()
    except UnicodeDecodeError as e:
        raise UsageError(f"--{flag}={path}: not UTF-8 text (byte {e.start}); convert it to UTF-8") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise UsageError(f"--{flag}={path}: the file is empty; give one sentence per line")
    return lines


class Run:
    def __init__(self, cfg: Config, rank: int = 0, world: int = 1, stop: "StopFlag" = None):
        self.cfg, self.rank, self.world, self.stop = cfg, rank, world, stop or StopFlag()
        self.stopped, self.rl_seconds, self.rl_seconds_before = False, 0.0, 0.0
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
                    raise UsageError(f"--prompts={cfg.prompts}: prompt {short(x)}: {e}") from None
        if not self.prompts or len(self.val_ids) < cfg.block_size + 2 or len(self.train_ids) < 4 * cfg.block_size:
            if cfg.data:
                raise UsageError(f"--data={cfg.data}: too short ({len(lines)} lines, {len(self.prompts)} "
                                 f"distinct prompts); give at least a few hundred lines of 3+ words")
            flag = "block_size" if cfg.block_size > Config.block_size else "corpus_lines"
            raise UsageError(f"--{flag.replace('_', '-')}={getattr(cfg, flag)}: the {len(lines)} built-in "
                             f"sentences hold {len(self.val_ids)} characters of held-out text, fewer than "
                             f"--block-size + 2 = {cfg.block_size + 2}; raise --corpus-lines or lower --block-size")
        longest = max(self.prompts, key=len)
        if len(longest) + 1 + cfg.max_new_tokens > cfg.block_size:
            flag = f"--prompts={cfg.prompts}: the prompt" if cfg.prompts else "the prompt"
            raise UsageError(f"{flag} {short(longest)} ({len(longest)} characters) plus --max-new-tokens="
                             f"{cfg.max_new_tokens} exceed --block-size={cfg.block_size}; shorten it, or "
                             f"raise --block-size")
        self.model_config = ModelConfig(self.vocab.size, cfg.block_size,
                                        cfg.n_layer, cfg.n_head, cfg.d_model)
        self.identity = {"vocab": self.vocab.chars, "model_config": vars(self.model_config)}
        defaults = Config()
        flags = []                        # the flags that differ from the defaults
        for f in fields(cfg):
            value, flag = getattr(cfg, f.name), "--" + f.name.replace("_", "-")
            if f.name not in ("out", "resume", "force") and value != getattr(defaults, f.name):
                flags.append((flag if value else "--no-" + flag[2:]) if f.type is bool
                             else f"{flag} {shlex.quote(str(value))}")
        world = int(os.environ.get("WORLD_SIZE", "1"))      # set by torchrun
        launcher = "python" if world == 1 else f"torchrun --standalone --nproc_per_node {world}"
        self.resume_hint = " ".join([launcher, "train.py"] + flags + [f"--resume {shlex.quote(cfg.out)}"])
        self.lock_fd = None
        self.gold = None                  # with --reward-model: the gold r(x, y), logged beside it

    def describe(self) -> str:
        c = self.cfg
        reward = f"learned reward {c.reward_model!r} (gold {c.reward!r})" if c.reward_model else f"reward {c.reward!r}"
        return (f"minippo | device {self.device} | {len(self.prompts)} prompts | {c.algo}, {reward}, beta {c.beta}, T {c.temperature} | {c.batch} responses x <= "
                f"{c.max_new_tokens} tokens per iteration, {c.iters} iterations | out: {c.out}")

    # ---------------------------------------------------------------- the three calls of the loop
    def start(self, policy, optimizer):
        """Before the first iteration: (iteration, beta) to start from, restoring checkpoint.pt when
        resuming; guards the optimizer (a step whose gradients are not finite raises instead of
        reaching the weights) and, under torchrun, averages the gradients over the processes."""
        optimizer.register_step_pre_hook(refuse_non_finite_gradients)
        dist.average_gradients_in_backward(policy)
        path, rank = self.path("checkpoint.pt"), self.rank
        start, beta = 0, self.cfg.beta
        if self.cfg.resume and os.path.exists(path):
            state = ckpt.load(path, "rl")
            ckpt.check_compatible(state, self.identity, path)
            check_rl_state(state, path, self.cfg, self.world)
            load_model(policy, state["model"], path)
            load_optimizer(optimizer, state, path)
            ckpt.set_rng_state(state["rng"][rank])
            refusal = None
            if rank == 0:
                try:
                    for name in ("metrics.jsonl", "samples.txt"):   # lines written after the checkpoint go
                        size, saved = file_size(self.path(name)), state[f"{name.split('.')[0]}_bytes"]
                        if size < saved:    # never extend a file: that would pad it with NUL bytes
                            raise UsageError(f"{self.path(name)}: {size} bytes, but it had {saved} when "
                                             f"{path} was saved: lines were lost; restore it, or start "
                                             f"afresh with --force")
                except UsageError as e:
                    refusal = e
            if dist.any_process(refusal is not None):   # rank 0 alone reads the files: all stop
                raise refusal or UsageError("refused by process 0")
            if rank == 0:
                for name in ("metrics.jsonl", "samples.txt"):
                    with open(self.path(name), "r+b") as f:
                        f.truncate(state[f"{name.split('.')[0]}_bytes"])
                print(f"resuming at iteration {state['iter']} (beta {state['beta']:.4g})")
            start, beta = state["iter"], state["beta"]
            self.rl_seconds_before = state.get("rl_seconds", 0.0)
        else:
            if rank == 0:
                for name in ("metrics.jsonl", "samples.txt"):
                    open(self.path(name), "w").close()
            ckpt.seed_everything(self.cfg.seed + RL_SEED + RANK_SEED_STRIDE * rank)
        self.bar = tqdm(total=self.cfg.iters, initial=start, desc="rl", dynamic_ncols=True,
                        disable=rank > 0)
        self.t_start = self.t_last = time.time()
        return start, beta

    def log(self, it: int, beta: float, out: dict) -> dict:
        """After iteration `it` (1-based): the metrics line of the whole batch (several processes:
        means over all of them, texts gathered), written by rank 0. Returns it."""
        texts = dist.gather(out["texts"])                                # (x, y, reached EOS)
        n = len(texts)
        reward, kl = dist.all_mean(out["reward"]), dist.all_mean(out["kl"])
        m = {"iter": it, "reward": reward, "kl": kl, "objective": reward - beta * kl, "beta": beta}
        steps = global_steps(out["steps"])
        m.update({k: sum(d[k] for d in steps) / len(steps) for k in steps[0]})
        m.update({"response_length": dist.all_mean(out["response_length"]),
                  "no_eos": 1 - sum(done for _, _, done in texts) / n,
                  "distinct": distinct([y for _, y, _ in texts]),
                  "distinct_2grams": distinct_ngrams([y for _, y, _ in texts], 2)})
        if out["explained_variance"] is not None:     # how well V(s_t) predicts the return
            m["explained_variance"] = dist.all_mean(out["explained_variance"])
        if self.grammar:
            m["grammatical"] = grammatical_fraction([x + y for x, y, _ in texts])
        if self.gold is not None and self.rank == 0:   # a learned reward is optimised: the gold one says
            m["gold_reward"] = sum(self.gold(x, y) if done else NO_EOS_PENALTY for x, y, done in texts) / n
        m["responses"] = n
        m["seconds"] = time.time() - self.t_last
        release_memory()
        if self.rank == 0:
            with open(self.path("metrics.jsonl"), "a") as f:     # (NaN, e.g. an undefined
                f.write(json.dumps(ckpt.finite(m), allow_nan=False) + "\n")   # variance, as null)
            self.bar.update(1)
            gold = {"gold": f"{m['gold_reward']:.2f}"} if "gold_reward" in m else {}
            self.bar.set_postfix(reward=f"{reward:.2f}", **gold, kl=f"{kl:.2f}", J=f"{m['objective']:.3f}")
            if it % self.cfg.sample_every == 0 or it == 1:
                self.log_samples(it, [(x, y, r) for (x, y, _), r in zip(out["texts"][:4], out["scores"][:4])])
        return m

    def save(self, it: int, policy, optimizer, beta: float) -> bool:
        """After iteration `it`: checkpoint.pt every --ckpt-every iterations, at the end and on Ctrl-C.
        True when the loop must stop (Ctrl-C, in this or another process)."""
        if not bool(torch.stack([torch.isfinite(p).all() for p in policy.parameters()]).all()):
            raise FloatingPointError(f"parameters became non-finite by iteration {it}")
        self.stopped = dist.any_process(self.stop.requested) and it < self.cfg.iters
        if it % self.cfg.ckpt_every == 0 or it == self.cfg.iters or self.stopped:
            rngs = dist.gather([ckpt.rng_state()])            # every process's random state
            if self.rank == 0:
                self.save_rl(policy, optimizer, it, beta, rngs)
        if it == self.cfg.iters or self.stopped:
            self.close_bar()
            self.rl_seconds = self.rl_seconds_before + time.time() - self.t_start
        if self.stopped and self.rank == 0:
            print(f"interrupted: saved iteration {it} in {self.cfg.out}; continue with "
                  f"`{self.resume_hint}`", file=sys.stderr)
        self.t_last = time.time()           # the next iteration's seconds start here
        return self.stopped

    def close_bar(self):
        if getattr(self, "bar", None) is not None:
            self.bar.close()

    # ---------------------------------------------------------------- files
    def log_samples(self, it, rows):
        text = "".join(f"  [{r:+.2f}] {x!r} -> {y!r}\n" for x, y, r in rows)
        with open(self.path("samples.txt"), "a") as f:
            f.write(f"iteration {it}\n{text}")
        self.bar.write(f"iteration {it}\n{text.rstrip()}")

    def save_rl(self, policy, optimizer, it: int, beta: float, rngs: list):
        """rngs: the random-generator state of every process (one in a single-process run)."""
        ckpt.save({"kind": "rl", **self.identity, "config": asdict(self.cfg), "iter": it,
                   "beta": beta, "model": policy.state_dict(), "optimizer": optimizer.state_dict(),
                   "rng": rngs, "rl_seconds": self.rl_seconds_before + time.time() - self.t_start,
                   "metrics_bytes": os.path.getsize(self.path("metrics.jsonl")),
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


def distinct_ngrams(texts, n: int = 2) -> float:
    """distinct-n (Li et al. 2016): distinct word n-grams / all word n-grams over the texts.
    Near 1: varied responses; falling towards 0: the policy repeats itself (collapse)."""
    grams = [tuple(words[i:i + n]) for t in texts for words in [t.split()]
             for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def distinct(texts) -> float:
    """The fraction of the texts that are distinct: 1 = all different, 1/n = one text n times."""
    return len(set(texts)) / len(texts)


def text_figures(ref_texts, pol_texts, grammar: bool) -> dict:
    """The final evaluation's diversity (and grammar) of pi_ref's and pi_theta's samples."""
    out = {}
    for name, texts in (("policy", pol_texts), ("reference", ref_texts)):
        out[f"distinct_{name}"] = distinct(texts)
        out[f"distinct_2grams_{name}"] = distinct_ngrams(texts, 2)
        if grammar:
            out[f"grammatical_{name}"] = grammatical_fraction(texts)
    return out


def global_steps(steps: list) -> list:
    """The statistics of each optimizer step over all processes: per-token figures weighted by
    each process's tokens, as if one process had had the whole batch; the others averaged."""
    return [{k: dist.all_mean(v * d["tokens"]) / dist.all_mean(d["tokens"]) if k in PER_TOKEN
             else dist.all_mean(v) for k, v in d.items() if k != "tokens"} for d in steps]


@torch.no_grad()
def val_loss(model, ids, eos_id: int, block_size: int, max_windows: int = 64) -> float:
    """Mean next-character loss over the first line-aligned windows of the held-out text."""
    starts = line_starts(ids, eos_id, block_size)[:max_windows]
    windows = ids[starts[:, None] + torch.arange(block_size + 1, device=ids.device)]
    return lm_loss(model, windows[:, :-1], windows[:, 1:]).item()


@torch.no_grad()
def sample_lines(model, vocab, n: int, prompt: str = "", temperature: float = 1.0,
                 max_new_tokens: int = 64) -> list[str]:
    """n lines written by the model after `prompt` (each line begins after an EOS)."""
    device = model.lm_head.weight.device
    start = torch.tensor([[vocab.eos_id] + vocab.encode(prompt)] * n, device=device)
    tokens, _ = sample(model, start, max_new_tokens, temperature, vocab.eos_id)
    lines = []
    for row in tokens.tolist():
        text = vocab.decode(row)
        lines.append(prompt + text[:-1] if text.endswith("\n") else prompt + text + " <no EOS>")
    return lines


def refuse_non_finite_gradients(optimizer, args, kwargs):
    """An optimizer step pre-hook: a non-finite gradient never reaches the weights."""
    grads = [p.grad.reshape(-1) for group in optimizer.param_groups for p in group["params"]
             if p.grad is not None]
    if grads and not bool(torch.isfinite(torch.cat(grads)).all()):
        raise FloatingPointError("a gradient became non-finite (a reward too large, or a learning rate "
                                 "too high?); that step was not taken")


def open_run(cfg: Config, rank: int = 0, world: int = 1, stop: StopFlag = None, check=None) -> Run:
    """Check the output folder against --resume / --force, load the data, write config.json.
    Every input is checked before the first file is written or removed (`check(run)`: more checks)."""
    run = Run(cfg, rank, world, stop)      # validates data and sizes before any file is touched
    if check is not None:
        check(run)
    if rank > 0:                           # several processes: only rank 0 checks and writes files
        return run
    existed = os.path.isdir(cfg.out)
    run.lock_fd = lock(cfg.out)            # one writer per run folder
    try:
        check_folder(run)
    except BaseException:                  # refused: leave the folder as it was
        unlock(run)
        if not existed and not os.listdir(cfg.out):
            os.rmdir(cfg.out)
        raise
    return run


def check_folder(run: Run) -> None:
    """--resume: the saved run's settings must match; a fresh start: the folder must hold no run
    (or --force, which removes only a minippo run's files). Then config.json is written."""
    cfg = run.cfg
    here = [f for f in RUN_FILES if os.path.exists(run.path(f))]
    if cfg.resume:
        if "config.json" not in here:
            raise UsageError(f"--resume={cfg.resume}: no run to resume there (no config.json)")
        saved = read_run_config(run.path("config.json"))
        check_cached_reference(run)
        defaults = asdict(Config())
        for key, value in asdict(cfg).items():   # a setting newer than the run: it ran with the default
            if key not in RESUMABLE and saved.get(key, defaults[key]) != value:
                raise UsageError(f"--resume={cfg.resume}: that run used --{key.replace('_', '-')}="
                                 f"{saved.get(key, defaults[key])!r}, this command has {value!r}; repeat its "
                                 f"settings")
        return
    if here and not cfg.force:
        raise UsageError(f"--out={cfg.out} already holds a run ({', '.join(here)}); continue it with "
                         f"--resume {shlex.quote(cfg.out)}, or start afresh with --force (keeps reference.pt)")
    if "config.json" in here:              # --force: only a minippo run's files go
        read_run_config(run.path("config.json"))
    elif here:
        raise UsageError(f"--force: {cfg.out} holds {', '.join(here)} but no config.json, so nothing "
                         f"says they are a minippo run's; remove them yourself or use another --out")
    check_cached_reference(run)
    for f in here:                         # --force: the old run goes, the cached reference stays
        os.remove(run.path(f))
    ckpt.save_json(asdict(cfg), run.path("config.json"))


LOCK_NOTE = ".minippo_in_use"             # inside a locked folder: which process holds it
TMP_PATTERN = re.compile(r"(config\.json|reference\.pt|checkpoint\.pt|pretrain_state\.pt|summary\.json)"
                         r"\.tmp\d+$")       # what ckpt.atomic_write leaves when killed mid-write


def lock(folder: str) -> int:
    """Hold `folder` until this process releases it or ends: a second train.py, --resume or
    --force on the same folder is refused with one line naming the holder. The kernel drops the
    lock when its process ends, however it ends, so a killed run never blocks the next one.
    Leftover temporary files of an interrupted write are removed (nobody else writes here)."""
    try:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY) if fcntl is not None else -1
    except OSError as e:
        raise UsageError(f"--out={folder}: {e.strerror}; give a folder this user can write") from None
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        try:
            with open(os.path.join(folder, LOCK_NOTE)) as f:
                holder = f.read().strip() or "another process"
        except OSError:
            holder = "another process"
        raise UsageError(f"{folder} is in use by {holder}; wait for it to end, or use another "
                         f"folder") from None
    note = os.path.join(folder, LOCK_NOTE)
    if not os.path.exists(note) or open(note, errors="replace").read().startswith("process "):
        with open(note, "w") as f:                 # (a file of the user's by that name stays)
            f.write(f"process {os.getpid()} ({' '.join(sys.argv)[:200]})\n")
    for name in os.listdir(folder):
        if TMP_PATTERN.fullmatch(name):
            os.remove(os.path.join(folder, name))
    return fd


def unlock(run: Run) -> None:
    if run.lock_fd is not None:
        try:
            if open(run.path(LOCK_NOTE)).read().startswith(f"process {os.getpid()} "):
                os.remove(run.path(LOCK_NOTE))
        except OSError:
            pass
        if run.lock_fd >= 0:
            os.close(run.lock_fd)
        run.lock_fd = None


def read_run_config(path: str) -> dict:
    """A run's config.json, or UsageError when the file is not one minippo wrote."""
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path}: not a readable minippo run configuration ({type(e).__name__}); "
                         f"this folder holds something else: choose another folder") from None
    if not isinstance(saved, dict) or not {"out", "seed", "algo", "beta", "iters"} <= set(saved):
        raise UsageError(f"{path}: not a minippo run configuration; this folder holds something "
                         f"else: choose another folder")
    return saved


def check_cached_reference(run: Run) -> None:
    """A reference.pt that this run would reuse must load and fit, before anything is written."""
    path = run.path("reference.pt")
    if os.path.exists(path):
        cached = ckpt.load(path, "reference")
        want = {k: getattr(run.cfg, k) for k in PRETRAIN_KEYS}
        if cached.get("pretrain") == want:
            ckpt.check_compatible(cached, run.identity, path)
            load_model(Policy(run.model_config), cached.get("model"), path)


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        raise UsageError(f"{path}: missing; it belongs to the run being resumed: restore it, or "
                         f"start afresh with --force") from None


def load_model(model, state, path: str, advice: str = "delete it, or start afresh with --force") -> None:
    """model.load_state_dict(state), or UsageError when the weights do not fit or are not finite."""
    want = model.state_dict()
    if not isinstance(state, dict) or set(state) != set(want):
        raise UsageError(f"{path}: its weights are not this model's (other or missing tensors); {advice}")
    for name, t in state.items():
        if not isinstance(t, torch.Tensor) or t.shape != want[name].shape or t.dtype != want[name].dtype:
            raise UsageError(f"{path}: its weight {name} has the wrong shape or type; {advice}")
        if not bool(torch.isfinite(t).all()):
            raise UsageError(f"{path}: its weight {name} is not finite (NaN or inf); {advice}")
    model.load_state_dict(state)


def check_rl_state(state: dict, path: str, cfg: Config, world: int) -> None:
    """The fields of checkpoint.pt that are not weights: present, of the right type and in range."""
    it, beta, rng = state.get("iter"), state.get("beta"), state.get("rng")
    if type(it) is not int or it < 0:
        raise UsageError(f"{path}: its iteration {it!r} is not a count; delete it, or start afresh with --force")
    if it > cfg.iters:
        raise UsageError(f"--iters={cfg.iters}: that run already did {it} iterations; resume with "
                         f"--iters {it} or more")
    if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not math.isfinite(beta) or beta < 0:
        raise UsageError(f"{path}: its beta {beta!r} is not a number >= 0; delete it, or start afresh with --force")
    if not isinstance(rng, list) or len(rng) != world:
        count = len(rng) if isinstance(rng, list) else "?"
        raise UsageError(f"--resume={cfg.out}: that run had {count} processes, this one has {world}; "
                         f"resume with the same number")
    seconds = state.get("rl_seconds", 0.0)
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 <= seconds < 1e12:
        raise UsageError(f"{path}: its rl_seconds {seconds!r} is not a duration; delete it, or start "
                         f"afresh with --force")
    for key in ("metrics_bytes", "samples_bytes"):
        if type(state.get(key)) is not int or state[key] < 0:
            raise UsageError(f"{path}: its {key} {state.get(key)!r} is not a size; delete it, or start "
                             f"afresh with --force")
    for r in rng:
        try:
            ckpt.check_rng_state(r)
        except (TypeError, ValueError, KeyError, IndexError, RuntimeError) as e:
            raise UsageError(f"{path}: its random-generator state is malformed ({e}); delete it, or "
                             f"start afresh with --force") from None


def pretrained_policy(run: Run, build: bool = True):
    """The pretrained policy (and the seconds pretraining took), from the cache or by pretraining
    now (build=False: from the cache only, which another process has just written). None when
    Ctrl-C interrupted pretraining (its state is saved)."""
    cfg, path = run.cfg, run.path("reference.pt")
    want = {k: getattr(cfg, k) for k in PRETRAIN_KEYS}
    ckpt.seed_everything(cfg.seed)          # the initial weights too: torch seeds itself randomly
    policy = Policy(run.model_config)
    if build:                               # (the other processes of a torchrun stay quiet)
        print(f"policy: {sum(p.numel() for p in policy.parameters()):,} parameters, vocabulary "
              f"{run.vocab.size} characters {run.vocab.chars!r} + PAD")
    seconds = 0.0
    cached = ckpt.load(path, "reference") if os.path.exists(path) else None
    if cached is not None and cached.get("pretrain") == want:
        ckpt.check_compatible(cached, run.identity, path)
        load_model(policy, cached.get("model"), path)
        if build:
            print(f"reference: reusing {path} ({cached.get('stats')})")
    elif not build:
        raise UsageError(f"{path}: not there for this process; with several machines --out must be a "
                         f"folder they all share")
    else:
        if cached is not None:
            saved = cached.get("pretrain") if isinstance(cached.get("pretrain"), dict) else {}
            changed = {k: (saved.get(k), v) for k, v in want.items() if saved.get(k) != v}
            print(f"reference: {path} was pretrained with other settings {changed}; pretraining again")
        policy.to(run.device)
        optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.pretrain_lr, betas=(0.9, 0.99))
        step, state_path = 0, run.path("pretrain_state.pt")
        if cfg.resume and os.path.exists(state_path):
            state = ckpt.load(state_path, "pretrain")
            ckpt.check_compatible(state, run.identity, state_path)
            step = state.get("step")
            if type(step) is not int or not 0 <= step <= cfg.pretrain_steps:
                raise UsageError(f"{state_path}: its step {step!r} is not one of 0 .. {cfg.pretrain_steps}; "
                                 f"delete it, or start afresh with --force")
            try:
                ckpt.check_rng_state(state.get("rng"))
            except (TypeError, ValueError, KeyError, IndexError, RuntimeError) as e:
                raise UsageError(f"{state_path}: its random-generator state is malformed ({e}); delete "
                                 f"it, or start afresh with --force") from None
            load_model(policy, state.get("model"), state_path)
            load_optimizer(optimizer, state, state_path)
            ckpt.set_rng_state(state["rng"])
        t0 = time.time()
        optimizer.register_step_pre_hook(refuse_non_finite_gradients)   # e.g. a --pretrain-lr too high
        reached = [step]

        def steps():                       # step numbers, with a progress bar, until Ctrl-C
            bar = tqdm(range(step, cfg.pretrain_steps), desc="pretrain", initial=step,
                       total=cfg.pretrain_steps, dynamic_ncols=True)
            for s in bar:
                if run.stop.requested:
                    break
                yield s
                reached[0] = s + 1
            bar.close()
        pretrain(policy, optimizer, run.train_ids.to(run.device), run.vocab.eos_id, cfg, steps())
        step = reached[0]
        if step < cfg.pretrain_steps:      # Ctrl-C: keep everything needed to continue exactly
            ckpt.save({"kind": "pretrain", **run.identity, "step": step, "model": policy.state_dict(),
                       "optimizer": optimizer.state_dict(), "rng": ckpt.rng_state()}, state_path)
            print(f"interrupted: pretraining saved at step {step} in {cfg.out}; continue with "
                  f"`{run.resume_hint}`", file=sys.stderr)
            return None, 0.0
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
    return policy.to(run.device).eval(), seconds


def load_optimizer(optimizer, state: dict, path: str):
    """Restore an AdamW state_dict, or UsageError (changing nothing) when it does not fit."""
    saved = state.get("optimizer")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    try:
        groups, per_param = saved["param_groups"], saved["state"]
        assert len(groups) == len(optimizer.param_groups)
        for mine, theirs in zip(optimizer.param_groups, groups):   # the same AdamW, lr aside
            assert all(theirs.get(k) == v for k, v in mine.items() if k not in ("params", "lr"))
        assert all(isinstance(g.get("lr"), (int, float)) and math.isfinite(g["lr"]) and g["lr"] >= 0
                   for g in groups)
        for i, p in enumerate(params):
            if i not in per_param:
                continue
            s = per_param[i]
            assert set(s) == {"step", "exp_avg", "exp_avg_sq"}
            assert float(s["step"]) >= 0 and math.isfinite(float(s["step"]))
            for k in ("exp_avg", "exp_avg_sq"):
                t = s[k]
                assert isinstance(t, torch.Tensor) and t.shape == p.shape and t.dtype == p.dtype
                assert bool(torch.isfinite(t).all())
            assert bool((s["exp_avg_sq"] >= 0).all())       # a mean of squares
        assert all(i < len(params) for i in per_param)
        optimizer.load_state_dict(saved)
    except (AssertionError, KeyError, TypeError, ValueError, AttributeError, IndexError):
        raise UsageError(f"{path}: its optimizer state does not fit this model (from another minippo "
                         f"version?); delete it, or start afresh with --force") from None
