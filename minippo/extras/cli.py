"""The command line of train.py: flags generated from Config, every value checked before any work.

The checks are data: LIMITS and CHOICES say what each setting may be, and check() adds the few
rules that tie two settings together. A bad value is one line naming the flag, exit code 2.
"""
import argparse
import inspect
import json
import math
import os
import re
import sys
from dataclasses import asdict, fields

import torch

from minippo import rl
from minippo.config import Config
from minippo.extras.files import UsageError, say

# what each setting may be: (lowest, highest); beyond the upper limits a run would exhaust memory,
# never end, or overflow (beta: -beta KL and exp(r / beta))
BIG, BATCH = 10**7, (1, 65_536)
LIMITS = {"seed": (0, 2**63 - 1), "n_layer": (1, 64), "n_head": (1, 64), "d_model": (1, 4096)}
LIMITS |= {"block_size": (2, 4096), "corpus_lines": (1, BIG), "pretrain_steps": (1, BIG)}
LIMITS |= {"pretrain_batch": BATCH, "pretrain_lr": (0, 1), "iters": (1, BIG), "batch": BATCH}
LIMITS |= {"max_new_tokens": (1, 4095), "temperature": (0.01, 100), "beta": (0, 1000)}
LIMITS |= {"target_kl": (0, 10**6), "kl_horizon": (1, 10**12), "lr": (0, 1), "epochs": (1, 100)}
LIMITS |= {"minibatch": BATCH, "clip": (0, 1), "vf_coef": (0, 1000), "gamma": (0, 1), "lam": (0, 1)}
LIMITS |= {"ent_coef": (0, 1000), "max_grad_norm": (0, 10**6), "sample_every": (1, BIG)}
LIMITS |= {"ckpt_every": (1, BIG), "eval_samples": (1, 100_000), "human_eval": (0, 10_000)}
LIMITS |= {"group": (2, 65_536)}
ABOVE_LOWEST = {"pretrain_lr", "lr", "clip", "max_grad_norm"}     # 0 itself is refused
# (and --reward: one of minippo.rewards.REWARDS; --kl-penalty: auto or one of rl.KL_PENALTIES)
CHOICES = {"algo": ("ppo", "reinforce", "grpo"), "device": ("auto", "cpu", "cuda")}
CHOICES |= {"variant": ("std", "no_std", "dr")}
# settings only some algorithms read: given with another, a flag would be ignored, so it is refused
USED_BY = dict.fromkeys(["group", "variant"], "grpo")
USED_BY |= dict.fromkeys(["gamma", "lam", "vf_coef", "whiten"], "ppo")
USED_BY |= dict.fromkeys(["epochs", "minibatch", "clip", "ent_coef"], "ppo grpo")
# settings that may differ when resuming (where the run is saved, how long it goes on, what is added)
RESUMABLE = {"out", "resume", "force", "iters", "plot", "human_eval"}
# settings the cached reference depends on
PRETRAIN_KEYS = ("seed", "data", "n_layer", "n_head", "d_model", "block_size", "corpus_lines")
PRETRAIN_KEYS += ("pretrain_steps", "pretrain_batch", "pretrain_lr")


def helps() -> dict:
    """Each setting's help: the comment after its field in minippo/config.py, continued by the
    comment lines ("#   ...") below it."""
    out, name = {}, None
    for line in inspect.getsource(Config).splitlines():
        if m := re.match(r"\s+(\w+): \w+ = [^#]*# (.*)", line):
            name, out[m[1]] = m[1], m[2]
        elif name and (m := re.match(r"\s+#   (.*)", line)):
            out[name] += " " + m[1]
        else:
            name = None
    return out


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def one_line_error(message):
    """argparse's errors as one line and exit code 2 (argparse would print its whole usage block).
    Under torchrun every process parses the flags; process 0 alone says what is wrong."""
    say(f"error: {message} (see --help)")
    sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    about = "Pretrain a tiny character-level GPT, then tune it with PPO, REINFORCE or GRPO."
    p, meaning = argparse.ArgumentParser(description=about, allow_abbrev=False), helps()
    for f in fields(Config):
        help = f"{meaning[f.name]} [default: {f.default}]".replace("%", "%%")
        if f.type is bool:
            p.add_argument(flag(f.name), action=argparse.BooleanOptionalAction, help=help)
        else:
            p.add_argument(flag(f.name), type=str, default=None, metavar=f.name.upper(), help=help)
    p.error = one_line_error
    return p


def within(name: str, value, low, high, above: bool = False) -> None:
    """UsageError naming the flag unless low <= value <= high (above: low < value); NaN is never within."""
    if not (low < value if above else low <= value) or not value <= high:
        bound = "above" if above else "at least"
        raise UsageError(f"{flag(name)}={value!r}: must be {bound} {low} and at most {high:,}")


def check(cfg: Config, rewards=(), here: bool = True) -> Config:
    """cfg, or UsageError naming the first setting that is not allowed (`here`: on this machine)."""
    def bad(name, allowed):
        raise UsageError(f"{flag(name)}={getattr(cfg, name)!r}: {allowed}")

    for name, (low, high) in LIMITS.items():
        within(name, getattr(cfg, name), low, high, name in ABOVE_LOWEST)
    read = {"reward": rewards or (cfg.reward,), "kl_penalty": ("auto", *rl.KL_PENALTIES)}
    for name, allowed in {**CHOICES, **read}.items():
        if getattr(cfg, name) not in allowed:
            bad(name, f"must be one of {', '.join(allowed)}")
    if not cfg.out.strip():
        bad("out", "must name a folder")
    if cfg.d_model % cfg.n_head:
        bad("n_head", f"must divide --d-model={cfg.d_model}")
    if cfg.algo != "reinforce" and cfg.batch % cfg.minibatch:
        bad("minibatch", f"must divide --batch={cfg.batch}")
    if cfg.max_new_tokens >= cfg.block_size:
        bad("max_new_tokens", f"must be < --block-size={cfg.block_size} (the prompt needs room)")
    if cfg.target_kl > 0 and cfg.kl_horizon <= 0.2 * cfg.batch:   # else beta can turn negative
        bad("kl_horizon", f"must be above 0.2 x --batch = {0.2 * cfg.batch:g} with --target-kl")
    if cfg.algo == "grpo" and cfg.batch % cfg.group:
        bad("group", f"must divide --batch={cfg.batch}")
    if cfg.algo == "reinforce" and cfg.batch < 2:
        bad("batch", "must be at least 2 with --algo reinforce (its baseline: the others' mean)")
    if here and cfg.device == "cuda" and not torch.cuda.is_available():
        bad("device", "no CUDA GPU is available here; use --device cpu or auto")
    return cfg


def parse_config(argv=None, rewards=()) -> Config:
    """Command line -> checked Config, or UsageError. With --resume DIR the settings are that run's
    (its config.json); a flag given beside it that differs is refused when the folder is opened."""
    args, given = build_parser().parse_args(argv), {}           # the flags given, typed
    for f in fields(Config):
        if (text := getattr(args, f.name)) is None:
            continue
        try:
            given[f.name] = text if f.type is bool else f.type(text)
        except ValueError:
            raise UsageError(f"{flag(f.name)}={text}: expected {f.type.__name__}") from None
        if f.type is float and not math.isfinite(given[f.name]):   # e.g. 1e400: say what was typed
            raise UsageError(f"{flag(f.name)}={text}: must be a finite number")
    saved = os.path.join(given.get("resume", ""), "config.json")
    cfg = config_from(saved, rewards) if given.get("resume") and os.path.isfile(saved) else Config()
    cfg = Config(**{**asdict(cfg), **given})
    for name, algos in USED_BY.items():     # a flag given that this algorithm would ignore
        if name in given and cfg.algo not in algos.split():
            raise UsageError(f"{flag(name)}: --algo {cfg.algo} does not use it; leave it out")
    if cfg.resume and args.out is not None and args.out != cfg.resume:
        raise UsageError(f"--out={args.out} and --resume={cfg.resume}: give --resume alone")
    cfg.out = cfg.resume or cfg.out
    return check(cfg, rewards)


def read_settings(path: str) -> dict:
    """Every setting of a run folder's config.json (one newer than the run: its default), or
    UsageError when the file is not one minippo wrote."""
    try:
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        assert isinstance(saved, dict) and {"out", "seed", "algo", "beta", "iters"} <= set(saved)
    except (OSError, UnicodeDecodeError, ValueError, AssertionError, RecursionError):
        raise UsageError(f"{path}: not a minippo run's config.json; use another folder") from None
    return {**asdict(Config()), **saved}


def config_from(path: str, rewards=()) -> Config:
    """The Config of a run folder's config.json, typed and checked as flags are, or UsageError."""
    saved, values = read_settings(path), {}
    for f in fields(Config):
        v = values[f.name] = saved[f.name]
        if not (type(v) is f.type or (f.type is float and type(v) is int)):
            raise UsageError(f"{path}: its {f.name} is {v!r}, not a {f.type.__name__}")
    try:
        return check(Config(**values), rewards, here=False)      # (a GPU's run, read on a CPU)
    except UsageError as e:
        raise UsageError(f"{path}: {e}") from None
