"""The run folder of train.py, kept out of the algorithm: nothing here is PPO. The loop
(minippo/ppo.py) calls a Run four times: start(), average_gradients(), log() and save().

Files in --out: config.json (the settings; a resumed run must repeat them), reference.pt (pi_ref,
also kept in the cache of minippo/extras/reference.py), checkpoint.pt (policy, AdamW, beta, iteration, every random state, and the log lines so far),
metrics.jsonl (a JSON object per iteration), samples.txt, summary.json (the evaluation against J*).
checkpoint.pt is the truth: a resume rewrites metrics.jsonl and samples.txt from it.
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
from minippo.extras.cli import PRETRAIN_KEYS, RESUMABLE, changed_flags, flag, read_settings
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


class Run:
    """The data (checked before any file is written) and the folder of a run; rank > 0 never writes."""

    def __init__(self, cfg: Config, rank: int = 0, world: int = 1, stop: files.StopFlag = None):
        self.cfg, self.rank, self.world, self.stop = cfg, rank, world, stop or files.StopFlag()
        self.stopped, self.rl_seconds, self.rl_seconds_before, self.lock_fd = False, 0.0, 0.0, None
        self.pretrain_seconds = 0.0       # this run's pretraining (launch.py sets it; a resume adds the saved)
        self.average_gradients = dist.average_gradients   # torchrun: each gradient's mean over the processes
        self.logs = {name: [] for name in LOGS}     # every line written to metrics.jsonl and samples.txt
        self.device = torch.device("cuda" if cfg.device == "auto" and torch.cuda.is_available() else
                                   "cpu" if cfg.device == "auto" else cfg.device)
        lines = files.read_lines(cfg.data, "data") if cfg.data else make_corpus(cfg.corpus_lines, cfg.seed)
        self.grammar = not cfg.data           # fluency is only defined for the built-in grammar
        prompts = files.read_lines(cfg.prompts, "prompts") if cfg.prompts else ()
        self.vocab, self.train_ids, self.val_ids, self.prompts = prepare(lines, prompts)
        given = f"--prompts={cfg.prompts}: " if cfg.prompts else ""
        for x in self.prompts:
            try:
                self.vocab.encode(x)
            except ValueError as e:
                raise UsageError(f"{given}prompt {x[:40]!r}: {e}") from None
        if not self.prompts or len(self.val_ids) < cfg.block_size + 2 or len(self.train_ids) < 4 * cfg.block_size:
            if cfg.data:
                raise UsageError(f"--data={cfg.data}: too short ({len(lines)} lines, {len(self.prompts)} "
                                 f"distinct prompts); give at least a few hundred lines of 3+ words")
            name = "block_size" if cfg.block_size > Config.block_size else "corpus_lines"
            raise UsageError(f"{flag(name)}={getattr(cfg, name)}: the {len(lines)} built-in sentences hold "
                             f"{len(self.val_ids)} characters of held-out text, fewer than --block-size + 2 = "
                             f"{cfg.block_size + 2}; raise --corpus-lines or lower --block-size")
        longest = max(self.prompts, key=len)
        if len(longest) + 1 + cfg.max_new_tokens > cfg.block_size:
            raise UsageError(f"{given}the prompt {longest[:40]!r} ({len(longest)} characters) plus "
                             f"--max-new-tokens={cfg.max_new_tokens} exceed --block-size={cfg.block_size}; "
                             f"shorten it, or raise --block-size")
        self.model_config = ModelConfig(self.vocab.size, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.d_model)
        self.identity = {"vocab": self.vocab.chars, "model_config": vars(self.model_config)}
        self.pretrain = {k: getattr(cfg, k) for k in PRETRAIN_KEYS}
        launcher = "python" if world == 1 else f"torchrun --standalone --nproc_per_node {world}"
        self.resume_hint = " ".join([launcher, "train.py", *changed_flags(cfg), "--resume", shlex.quote(cfg.out)])
        self.gold = None                  # with --reward-model: the gold r(x, y), logged beside it

    def path(self, name: str) -> str:
        return os.path.join(self.cfg.out, name)

    # ---------------------------------------------------------------- the folder
    def open(self) -> None:
        """Lock the folder, then check it against --resume / --force before anything is written:
        resuming, the saved settings must be the run's; starting, the folder must hold no run (or
        --force, which removes only a minippo run's files, never an input). Writes config.json."""
        if self.rank > 0:                     # several processes: rank 0 alone checks and writes
            return
        cfg, existed = self.cfg, os.path.isdir(self.cfg.out)
        self.lock_fd = files.lock(cfg.out)
        try:
            here = [f for f in RUN_FILES if os.path.exists(self.path(f))]
            if cfg.resume:
                if "config.json" not in here:
                    raise UsageError(f"--resume={cfg.resume}: no run to resume there (no config.json)")
                changed = files.differences(read_settings(self.path("config.json")), asdict(cfg), RESUMABLE)
                for key, (saved, given) in list(changed.items())[:1]:
                    raise UsageError(f"--resume={cfg.resume}: that run used {flag(key)}={saved!r}, this "
                                     f"command has {given!r}; repeat its settings")
            elif here and not cfg.force:
                raise UsageError(f"--out={cfg.out} already holds a run ({', '.join(here)}); continue it with "
                                 f"--resume {cfg.out}, or start afresh with --force (keeps reference.pt)")
            elif here and "config.json" not in here:
                raise UsageError(f"--force: {cfg.out} holds {', '.join(here)} but no config.json, so nothing "
                                 f"says they are a minippo run's; remove them yourself or use another --out")
            elif here:
                read_settings(self.path("config.json"))        # a minippo run's, or refused
            self.cached_reference()               # a reference.pt that will be reused must load
            if not cfg.resume:
                files.remove_outputs([self.path(f) for f in here], [cfg.data, cfg.prompts, cfg.reward_model],
                                     "--force")
                files.save_json(asdict(cfg), self.path("config.json"))
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
        changed = files.differences(state, self.identity)
        for key, (saved, want) in list(changed.items())[:1]:
            raise UsageError(f"{path}: made with {key}={saved!r}, this run has {key}={want!r}; use a matching "
                             f"configuration or another --out folder")

    def restore(self, path: str, kind: str, model, optimizer) -> dict:
        """The state saved in `path`, loaded into model and optimizer (and the random generators),
        or UsageError: it must be what this run itself would save, everything finite."""
        state = files.load(path, kind)
        self.check_identity(state, path)
        files.load_model(model, state.get("model"), path)
        try:
            optimizer.load_state_dict(state["optimizer"])
            files.set_rng_state(state["rng"][self.rank])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
            raise UsageError(f"{path}: its optimizer or random-generator state does not fit this run "
                             f"({type(e).__name__}: {str(e)[:60]}); {FRESH}") from None
        return state

    # ---------------------------------------------------------------- the calls of the loop
    def start(self, policy, optimizer):
        """Before the first iteration: (iteration, beta) to start from, restoring checkpoint.pt when
        resuming (and cutting metrics.jsonl and samples.txt back to what it had seen)."""
        path, rank, cfg = self.path("checkpoint.pt"), self.rank, self.cfg
        start, beta = 0, cfg.beta
        if cfg.resume and os.path.exists(path):
            state = self.restore(path, "rl", policy, optimizer)
            try:                                    # the numbers this run saves, and nothing else
                start, beta, self.logs = state["iter"], state["beta"], state["logs"]
                self.rl_seconds_before = self.rl_seconds = float(state["rl_seconds"])
                self.pretrain_seconds += float(state.get("pretrain_seconds", 0.0))
                assert type(start) is int and type(beta) is float and 0 <= start and 0 <= beta < 1e6
                assert all(type(line) is str for name in LOGS for line in self.logs[name])
            except (KeyError, TypeError, ValueError, AssertionError):
                raise UsageError(f"{path}: its iteration, beta, log lines or seconds are not a run's; "
                                 f"{FRESH}") from None
            if start > cfg.iters:
                raise UsageError(f"--iters={cfg.iters}: that run already did {start} iterations; resume with "
                                 f"--iters {start} or more")
            if len(state["rng"]) != self.world:
                raise UsageError(f"--resume={cfg.out}: that run had {len(state['rng'])} processes, this one "
                                 f"has {self.world}; resume with the same number")
            if rank == 0:
                print(f"resuming at iteration {start} (beta {beta:.4g})")
        else:
            files.seed_everything(cfg.seed + RL_SEED + RANK_SEED_STRIDE * rank)
        if rank == 0:                               # what the checkpoint saw, whatever the files hold now
            for name in LOGS:
                files.save_lines(self.logs[name], self.path(name))
        self.bar = tqdm(total=cfg.iters, initial=start, desc="rl", dynamic_ncols=True, disable=rank > 0)
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
        m.update(response_length=dist.all_mean(out["response_length"]),
                 no_eos=1 - sum(done for _, _, done in texts) / n, **text_figures([y for _, y, _ in texts], False))
        if out["explained_variance"] is not None:     # how well V(s_t) predicts the return
            m["explained_variance"] = dist.all_mean(out["explained_variance"])
        if self.grammar:
            m["grammatical"] = grammatical_fraction([x + y for x, y, _ in texts])
        if self.gold is not None and self.rank == 0:   # a learned reward is optimised: the gold one says
            m["gold_reward"] = sum(self.gold(x, y) if done else NO_EOS_PENALTY for x, y, done in texts) / n
        m["responses"] = n
        m["seconds"] = time.time() - self.t_last
        if self.rank == 0:
            self.append("metrics.jsonl", json.dumps(files.finite(m), allow_nan=False) + "\n")  # NaN as null
            self.bar.update(1)
            gold = {"gold": f"{m['gold_reward']:.2f}"} if "gold_reward" in m else {}
            self.bar.set_postfix(reward=f"{reward:.2f}", **gold, kl_ref=f"{kl:.2f}", J=f"{m['objective']:.3f}")
            if it % self.cfg.sample_every == 0 or it == 1:
                rows = [(x, y, r) for (x, y, _), r in zip(out["texts"][:4], out["scores"][:4])]
                text = f"iteration {it}\n" + "".join(f"  [{r:+.2f}] {x!r} -> {y!r}\n" for x, y, r in rows)
                self.append("samples.txt", text)
                self.bar.write(text.rstrip())
        return m

    def append(self, name: str, text: str) -> None:
        self.logs[name].append(text)
        with open(self.path(name), "a") as f:
            f.write(text)

    def save(self, it: int, policy, optimizer, beta: float) -> bool:
        """After iteration `it`: checkpoint.pt every --ckpt-every iterations, at the end and on Ctrl-C.
        True when the loop must stop (Ctrl-C, in this or another process)."""
        if not all(bool(torch.isfinite(p).all()) for p in policy.parameters()):
            raise files.Failure(f"the weights became non-finite at iteration {it} (a learning rate too high?)")
        self.stopped = dist.any_process(self.stop.requested)     # (at the last iteration too)
        if it % self.cfg.ckpt_every == 0 or it == self.cfg.iters or self.stopped:
            rngs = dist.gather([files.rng_state()])            # every process's random state
            if self.rank == 0:
                files.save({"kind": "rl", **self.identity, "iter": it, "beta": float(beta), "logs": self.logs,
                            "model": policy.state_dict(), "optimizer": optimizer.state_dict(), "rng": rngs,
                            "rl_seconds": self.rl_seconds_before + time.time() - self.t_start,
                            "pretrain_seconds": self.pretrain_seconds},
                           self.path("checkpoint.pt"))
        if it == self.cfg.iters or self.stopped:
            self.close_bar()
            self.rl_seconds = self.rl_seconds_before + time.time() - self.t_start
        if self.stopped:
            files.say(f"interrupted: saved iteration {it} in {self.cfg.out}; continue with `{self.resume_hint}`")
        self.t_last = time.time()           # the next iteration's seconds start here
        return self.stopped

    def close_bar(self):
        if getattr(self, "bar", None) is not None:
            self.bar.close()

    def samples_to_reach(self, objective: float):
        """Responses sampled until the first iteration whose batch objective reached `objective`."""
        hits = [m["iter"] for m in map(json.loads, self.logs["metrics.jsonl"]) if m["objective"] >= objective]
        return hits[0] * self.cfg.batch if hits else None


def distinct_ngrams(texts, n: int = 2) -> float:
    """distinct-n (Li et al. 2016): distinct / all word n-grams of the texts; towards 0: the policy repeats itself."""
    grams = [tuple(w[i:i + n]) for t in texts for w in [t.split()] for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def text_figures(texts, grammar: bool, name: str = "") -> dict:
    """Diversity (and grammar) of sampled texts: distinct = the fraction of texts that differ."""
    out = {f"distinct{name}": len(set(texts)) / len(texts), f"distinct_2grams{name}": distinct_ngrams(texts)}
    return {**out, f"grammatical{name}": grammatical_fraction(texts)} if grammar else out


def global_steps(steps: list) -> list:
    """The statistics of each optimizer step over all processes: per-token figures weighted by
    each process's tokens, as if one process had had the whole batch; the others averaged."""
    return [{k: dist.all_mean(v * d["tokens"]) / dist.all_mean(d["tokens"]) if k in PER_TOKEN
             else dist.all_mean(v) for k, v in d.items() if k != "tokens"} for d in steps]
