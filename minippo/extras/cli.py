"""The command line of train.py: flags generated from Config, every value checked before any work.

A bad value prints one line naming the setting, the value and what is allowed, and exits with
code 2. Off the reading path: the lesson reads a Config; this file makes one from the flags.
"""
import argparse
import math
import os
import sys
from dataclasses import fields

from minippo.config import Config


ALGOS = ("ppo", "reinforce")
DEVICES = ("auto", "cpu", "cuda")
# settings that may differ when resuming (where the run is saved, how long it goes on)
RESUMABLE = {"out", "resume", "force", "iters", "plot", "human_eval"}
# settings the cached reference depends on
PRETRAIN_KEYS = ("seed", "data", "n_layer", "n_head", "d_model", "block_size", "corpus_lines",
                 "pretrain_steps", "pretrain_batch", "pretrain_lr")


UPPER = {"n_layer": 64, "n_head": 64, "d_model": 4096, "block_size": 4096, "corpus_lines": 10_000_000,
         "pretrain_steps": 10_000_000, "pretrain_batch": 65_536, "iters": 10_000_000, "batch": 65_536,
         "epochs": 100, "kl_horizon": 10 ** 12, "eval_samples": 100_000, "human_eval": 10_000}


class UsageError(Exception):
    """A bad setting or input file: the message is one line, the exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Pretrain a tiny character-level GPT, then tune it with "
                                "KL-penalised PPO or REINFORCE.", allow_abbrev=False)
    for f in fields(Config):
        flag = "--" + f.name.replace("_", "-")
        help = f"{f.metadata['help']} [default: {f.default}]"
        if f.type is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=help)
        else:
            p.add_argument(flag, type=str, default=None, metavar=f.name.upper(), help=help)

    p.error = one_line_error
    return p


def one_line_error(message):
    """argparse's errors as one line and exit code 2 (argparse would print its whole usage block).
    Under torchrun every process parses the flags; process 0 alone says what is wrong."""
    if os.environ.get("RANK", "0") == "0":
        print(f"error: {message} (see --help)", file=sys.stderr)
    sys.exit(2)


def _convert(name, text, kind):
    try:
        value = kind(text)
    except ValueError:
        raise UsageError(f"--{name.replace('_', '-')}={text}: expected {kind.__name__}") from None
    if kind is float and not math.isfinite(value):     # e.g. 1e400: say what was typed, not inf
        raise UsageError(f"--{name.replace('_', '-')}={text}: must be a finite number")
    return value


def check(cfg: Config, rewards=()):
    """Raise UsageError naming the first setting that is out of range."""
    def bad(name, allowed):
        raise UsageError(f"--{name.replace('_', '-')}={getattr(cfg, name)!r}: {allowed}")

    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, float) and not math.isfinite(v):
            bad(f.name, "must be a finite number")
    for name in ("n_layer", "n_head", "d_model", "block_size", "corpus_lines", "pretrain_steps",
                 "pretrain_batch", "iters", "batch", "max_new_tokens", "epochs", "minibatch",
                 "kl_horizon", "sample_every", "ckpt_every", "eval_samples"):
        if getattr(cfg, name) <= 0:
            bad(name, "must be a positive integer")
    for name, most in UPPER.items():       # beyond these a run would exhaust memory or never end
        if getattr(cfg, name) > most:
            bad(name, f"must be at most {most:,}")
    if not 0 <= cfg.seed < 2 ** 63:
        bad("seed", "must be in 0 .. 2^63 - 1")
    if not cfg.out.strip():
        bad("out", "must name a folder")
    for name in ("pretrain_lr", "lr", "temperature", "max_grad_norm"):
        if getattr(cfg, name) <= 0:
            bad(name, "must be > 0")
    for name in ("beta", "target_kl", "vf_coef", "ent_coef", "human_eval"):
        if getattr(cfg, name) < 0:
            bad(name, "must be >= 0")
    for name in ("gamma", "lam"):
        if not 0 <= getattr(cfg, name) <= 1:
            bad(name, "must be in [0, 1]")
    if not 0 < cfg.clip < 1:
        bad("clip", "must be in (0, 1)")
    if cfg.d_model % cfg.n_head:
        bad("n_head", f"must divide --d-model={cfg.d_model}")
    if cfg.batch % cfg.minibatch:
        bad("minibatch", f"must divide --batch={cfg.batch}")
    if cfg.target_kl > 0 and cfg.kl_horizon <= 0.2 * cfg.batch:
        bad("kl_horizon", f"must be above 0.2 x --batch = {0.2 * cfg.batch:g} with --target-kl: a step "
                          f"moves beta by up to 20% x batch / horizon, and beta must stay above 0")
    if cfg.algo == "reinforce" and cfg.batch < 2:
        bad("batch", "must be at least 2 with --algo reinforce (its baseline is the others' mean return)")
    if cfg.max_new_tokens >= cfg.block_size:
        bad("max_new_tokens", f"must be < --block-size={cfg.block_size} (the prompt needs room)")
    if cfg.algo not in ALGOS:
        bad("algo", f"must be one of {', '.join(ALGOS)}")
    if rewards and cfg.reward not in rewards:
        bad("reward", f"must be one of {', '.join(rewards)} (add yours in minippo/rewards.py)")
    if cfg.device not in DEVICES:
        bad("device", f"must be one of {', '.join(DEVICES)}")


def parse_config(argv=None, rewards=()) -> Config:
    """Command line -> checked Config. Bad values exit with code 2 and one line on stderr."""
    args = build_parser().parse_args(argv)
    values = {}
    try:
        for f in fields(Config):
            v = getattr(args, f.name)
            if v is None:
                continue
            values[f.name] = v if f.type is bool else _convert(f.name, v, f.type)
        cfg = Config(**values)
        if cfg.resume and values.get("out", cfg.resume) != cfg.resume:
            raise UsageError(f"--out={values['out']} and --resume={cfg.resume}: a resumed run stays in "
                             f"its folder; give --resume alone")
        if cfg.resume:
            cfg.out = cfg.resume
        check(cfg, rewards)
    except UsageError as e:
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    return cfg
