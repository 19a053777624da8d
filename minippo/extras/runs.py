"""The run folder of train.py, kept out of the algorithm: nothing here is PPO. The loop
(minippo/ppo.py) calls a Run four times: start(), average_gradients(), log() and save().

Files in --out: config.json (the settings; `--resume DIR` alone takes them), reference.pt (pi_ref,
also cached by minippo/extras/reference.py), checkpoint.pt (policy, AdamW, beta, iteration, the
random state, the log lines so far), metrics.jsonl (a JSON object per iteration), samples.txt,
summary.json (the evaluation against J*). A resume rewrites the logs from checkpoint.pt.
"""
import json
import os
import shlex
import time
from dataclasses import asdict

import torch
from tqdm import tqdm

from minippo.config import Config
from minippo.data import make_corpus, prepare
from minippo.extras import dist, files
from minippo.extras.cli import PRETRAIN_KEYS, RESUMABLE, flag, read_settings
from minippo.extras.files import UsageError
from minippo.extras.grammar import grammatical_fraction
from minippo.model import ModelConfig, Policy
from minippo.rewards import NO_EOS_PENALTY

# Seeds: pretraining (and the initial weights) use --seed itself; RL and the final evaluation draw
# from their own streams, so that a cached pi_ref or a resumed run gives the same numbers.
RL_SEED, EVAL_SEED = 1, 2          # added to --seed
RANK_SEED_STRIDE = 1000            # under torchrun, process `rank` adds rank x 1000 to the RL seed
PER_TOKEN = ("entropy", "approx_kl", "approx_kl_k3", "clipfrac")   # means over response tokens
LOGS = ("metrics.jsonl", "samples.txt")
RUN_FILES = ("config.json", "checkpoint.pt", *LOGS, "summary.json")
FRESH = "delete it, or start afresh with --force"
NOT_SAVED = (LookupError, TypeError, ValueError, RuntimeError, AttributeError, AssertionError)


class Run:
    """The data (checked before any file is written) and the folder of a run; rank > 0 never writes."""

    def __init__(self, cfg: Config, rank: int = 0, world: int = 1, stop: files.StopFlag = None):
        self.cfg, self.rank, self.world, self.stop = cfg, rank, world, stop or files.StopFlag()
        self.stopped, self.lock_fd, self.bar = False, None, None
        self.rl_seconds = self.rl_seconds_before = self.pretrain_seconds = 0.0
        self.average_gradients = dist.average_gradients   # torchrun: the mean over the processes
        self.logs = {name: [] for name in LOGS}     # every line of metrics.jsonl and samples.txt
        self.gold = None                  # with --reward-model: the gold r(x, y), logged beside it
        auto = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(auto if cfg.device == "auto" else cfg.device)
        read, self.grammar = files.read_lines, not cfg.data   # fluency: the built-in grammar's only
        lines = read(cfg.data, "data") if cfg.data else make_corpus(cfg.corpus_lines, cfg.seed)
        prompts = read(cfg.prompts, "prompts") if cfg.prompts else ()
        self.vocab, self.train_ids, self.val_ids, self.prompts = prepare(lines, prompts)
        given = f"--prompts={cfg.prompts}: " if cfg.prompts else ""
        for x in self.prompts:
            try:
                self.vocab.encode(x)
            except ValueError as e:
                raise UsageError(f"{given}prompt {x[:40]!r}: {e}") from None
        short = len(self.val_ids) < cfg.block_size + 2 or len(self.train_ids) < 4 * cfg.block_size
        if short or not self.prompts:
            name = "block_size" if cfg.block_size > Config.block_size else "corpus_lines"
            name = "data" if cfg.data else name
            why = f"{len(lines)} lines are too short a text for --block-size={cfg.block_size}"
            raise UsageError(f"{flag(name)}={getattr(cfg, name)}: {why}; give more, or lower it")
        longest = max(self.prompts, key=len)
        if len(longest) + 1 + cfg.max_new_tokens > cfg.block_size:
            room = f"--max-new-tokens={cfg.max_new_tokens} exceed --block-size={cfg.block_size}"
            prompt = f"{given}{longest[:40]!r} ({len(longest)} characters)"
            raise UsageError(f"{prompt} plus {room}; shorten it")
        sizes = (cfg.block_size, cfg.n_layer, cfg.n_head, cfg.d_model)
        self.model_config = ModelConfig(self.vocab.size, *sizes)
        self.identity = {"vocab": self.vocab.chars, "model_config": vars(self.model_config)}
        self.pretrain = {k: getattr(cfg, k) for k in PRETRAIN_KEYS}
        launcher = "python" if world == 1 else f"torchrun --standalone --nproc_per_node {world}"
        # --resume alone: the settings come from config.json
        self.resume_hint = f"{launcher} train.py --resume {shlex.quote(cfg.out)}"

    def path(self, name: str) -> str:
        return os.path.join(self.cfg.out, name)

    # ---------------------------------------------------------------- the folder
    def open(self) -> None:
        """Lock the folder, then check it against --resume / --force before anything is written:
        resuming, the saved settings must be the run's; starting, the folder must hold no run (or
        --force, which removes only a minippo run's files, never an input). Writes config.json."""
        if self.rank > 0:                     # several processes: rank 0 alone checks and writes
            return
        cfg, existed, config = self.cfg, os.path.isdir(self.cfg.out), self.path("config.json")
        self.lock_fd = files.lock(cfg.out)
        try:
            here = [f for f in RUN_FILES if os.path.exists(self.path(f))]
            if cfg.resume:
                if "config.json" not in here:
                    raise UsageError(f"--resume={cfg.resume}: no run to resume (no config.json)")
                changed = files.differences(read_settings(config), asdict(cfg), RESUMABLE)
                for key, (saved, given) in list(changed.items())[:1]:
                    used = f"that run used {flag(key)}={saved!r}, this command {given!r}"
                    raise UsageError(f"--resume={cfg.resume}: {used}; leave {flag(key)} out")
            elif here and not cfg.force:
                hint = f"continue it with --resume {cfg.out}, or start afresh with --force"
                raise UsageError(f"--out={cfg.out} already holds a run ({', '.join(here)}); {hint}")
            elif here and "config.json" not in here:
                why = f"holds {', '.join(here)} but no config.json (not a run's?)"
                raise UsageError(f"--force: {cfg.out} {why}; remove them yourself")
            elif here:
                read_settings(config)        # a minippo run's, or refused
            self.cached_reference()               # a reference.pt that will be reused must load
            if not cfg.resume:
                inputs = [cfg.data, cfg.prompts, cfg.reward_model]
                files.remove_outputs([self.path(f) for f in here], inputs, "--force")
                files.save_json(asdict(cfg), config)
        except BaseException:                 # refused: the folder stays as it was
            self.close()
            if not existed and not os.listdir(cfg.out):
                os.rmdir(cfg.out)
            raise

    def close(self) -> None:
        files.unlock(self.cfg.out, self.lock_fd)
        self.lock_fd = None

    def cached_reference(self, path: str = "", settings: bool = True):
        """reference.pt (or `path`) when it was pretrained with this run's settings (`settings`:
        compared; else known from the cache's name), checked whole; else None."""
        path = path or self.path("reference.pt")
        if not os.path.exists(path):
            return None
        cached = files.load(path, "reference")
        if settings and files.differences(cached.get("pretrain"), self.pretrain):
            return None
        self.check_identity(cached, path)
        files.load_model(Policy(self.model_config), cached.get("model"), path)
        return cached

    def check_identity(self, state: dict, path: str) -> None:
        for key, (saved, want) in list(files.differences(state, self.identity).items())[:1]:
            raise UsageError(f"{path}: made with {key}={saved!r}, not {want!r}; use another --out")

    # ---------------------------------------------------------------- the calls of the loop
    def start(self, policy, optimizer):
        """Before the first iteration: (iteration, beta) to start from; resuming, checkpoint.pt is
        restored, all of it or refused (and the logs cut back to what it had seen)."""
        path, rank, cfg = self.path("checkpoint.pt"), self.rank, self.cfg
        start, beta = 0, cfg.beta
        if cfg.resume and os.path.exists(path):
            state = files.load(path, "rl")
            self.check_identity(state, path)
            files.load_model(policy, state.get("model"), path)
            try:                                    # what this run saves, and nothing else
                optimizer.load_state_dict(state["optimizer"])
                rng = state["rng"][rank]
                torch.set_rng_state(rng["torch"])
                if "cuda" in rng and torch.cuda.is_available():
                    torch.cuda.set_rng_state_all(rng["cuda"])
                start, beta, self.logs = state["iter"], state["beta"], state["logs"]
                self.rl_seconds_before = self.rl_seconds = float(state["rl_seconds"])
                self.pretrain_seconds += float(state.get("pretrain_seconds", 0.0))
                assert type(start) is int and type(beta) is float and 0 <= start and 0 <= beta < 1e6
                assert all(type(line) is str for name in LOGS for line in self.logs[name])
            except NOT_SAVED as e:
                what = "its optimizer, random state, iteration, beta, log lines or seconds"
                raise UsageError(f"{path}: {what} are not a run's ({e!r:.60}); {FRESH}") from None
            if start > cfg.iters:
                raise UsageError(f"--iters={cfg.iters}: that run already did {start} iterations")
            if len(state["rng"]) != self.world:
                had = f"that run had {len(state['rng'])} processes, this one {self.world}"
                raise UsageError(f"--resume={cfg.out}: {had}; resume with as many")
            if rank == 0:
                print(f"resuming at iteration {start} (beta {beta:.4g})")
        else:
            files.seed_everything(cfg.seed + RL_SEED + RANK_SEED_STRIDE * rank)
        if rank == 0:                               # what the checkpoint saw, whatever the files hold now
            for name in LOGS:
                files.save_lines(self.logs[name], self.path(name))
        bar = dict(desc="rl", dynamic_ncols=True, disable=rank > 0)
        self.bar = tqdm(total=cfg.iters, initial=start, **bar)
        self.t_start = self.t_last = time.time()
        return start, beta

    def log(self, it: int, beta: float, out: dict) -> dict:
        """After iteration `it` (1-based): the metrics line of the whole batch (several processes:
        means over all of them, texts gathered), written by rank 0. Returns it."""
        texts, mean = dist.gather(out["texts"]), dist.all_mean          # (x, y, reached EOS)
        n, reward, kl = len(texts), mean(out["reward"]), mean(out["kl"])
        m = {"iter": it, "reward": reward, "kl": kl, "objective": reward - beta * kl, "beta": beta}
        steps = global_steps(out["steps"])
        m.update({k: sum(d[k] for d in steps) / len(steps) for k in steps[0]})
        m["response_length"] = mean(out["response_length"])
        m["no_eos"] = 1 - sum(done for _, _, done in texts) / n
        m.update(text_figures([y for _, y, _ in texts], False))
        if out["explained_variance"] is not None:     # how well V(s_t) predicts the return
            m["explained_variance"] = mean(out["explained_variance"])
        if self.grammar:
            m["grammatical"] = grammatical_fraction([x + y for x, y, _ in texts])
        if self.gold is not None and self.rank == 0:   # a learned reward: what the gold one says
            m["gold_reward"] = sum(self.gold(x, y) if done else NO_EOS_PENALTY for x, y, done in texts) / n
        m["responses"], m["seconds"] = n, time.time() - self.t_last
        if self.rank == 0:
            self.append("metrics.jsonl", json.dumps(files.finite(m), allow_nan=False) + "\n")
            gold = f", gold={m['gold_reward']:.2f}" if "gold_reward" in m else ""
            self.bar.update(1)
            figures = f"kl_ref={kl:.2f}, J={m['objective']:.3f}"
            self.bar.set_postfix_str(f"reward={reward:.2f}{gold}, {figures}")
            if it % self.cfg.sample_every == 0 or it == 1:
                pairs = zip(out["texts"][:4], out["scores"][:4])
                text = "".join(f"  [{r:+.2f}] {x!r} -> {y!r}\n" for (x, y, _), r in pairs)
                self.append("samples.txt", f"iteration {it}\n{text}")
                self.bar.write(f"iteration {it}\n{text}".rstrip())
        return m

    def append(self, name: str, text: str) -> None:
        self.logs[name].append(text)
        with open(self.path(name), "a") as f:
            f.write(text)

    def save(self, it: int, policy, optimizer, beta: float) -> bool:
        """After iteration `it`: checkpoint.pt every --ckpt-every iterations, at the end and on Ctrl-C.
        True when the loop must stop (Ctrl-C, in this or another process)."""
        if not all(bool(torch.isfinite(p).all()) for p in policy.parameters()):
            raise files.Failure(f"the weights became non-finite at iteration {it} (lr too high?)")
        self.stopped = dist.any_process(self.stop.requested)     # (at the last iteration too)
        end = it == self.cfg.iters or self.stopped
        seconds = self.rl_seconds_before + time.time() - self.t_start
        if it % self.cfg.ckpt_every == 0 or end:
            cuda = {"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_available() else {}
            rngs = dist.gather([{"torch": torch.get_rng_state(), **cuda}])   # every process's
            state = {"kind": "rl", **self.identity, "iter": it, "beta": float(beta)}
            state.update(model=policy.state_dict(), optimizer=optimizer.state_dict(), rng=rngs)
            state.update(logs=self.logs, rl_seconds=seconds, pretrain_seconds=self.pretrain_seconds)
            if self.rank == 0:
                files.save(state, self.path("checkpoint.pt"))
        if end:
            self.close_bar()
            self.rl_seconds = seconds
        if self.stopped:
            files.say(f"interrupted: saved iteration {it}; continue with `{self.resume_hint}`")
        self.t_last = time.time()           # the next iteration's seconds start here
        return self.stopped

    def close_bar(self):
        if self.bar is not None:
            self.bar.close()


def text_figures(texts, grammar: bool, name: str = "") -> dict:
    """Diversity (and grammar) of sampled texts: distinct, the fraction of texts that differ, and
    distinct-2 (Li et al. 2016), that of word bigrams; towards 0: the policy repeats itself."""
    grams = [(w[i], w[i + 1]) for w in map(str.split, texts) for i in range(len(w) - 1)]
    out = {f"distinct{name}": len(set(texts)) / len(texts)}
    out[f"distinct_2grams{name}"] = len(set(grams)) / len(grams) if grams else 0.0
    if grammar:
        out[f"grammatical{name}"] = grammatical_fraction(texts)
    return out


def global_steps(steps: list) -> list:
    """The statistics of each optimizer step over all processes: per-token figures weighted by
    each process's tokens, as if one process had had the whole batch; the others averaged."""
    mean, out = dist.all_mean, []
    for d in steps:
        t = d["tokens"]
        row = {k: mean(v * t) / mean(t) if k in PER_TOKEN else mean(v) for k, v in d.items()}
        out.append({k: v for k, v in row.items() if k != "tokens"})
    return out
