"""pi_ref for train.py and the reward model: pretrained once per pretraining settings, then reused.

A cache folder (MINIPPO_CACHE, default ~/.cache/minippo) holds reference-KEY.pt, KEY a hash of the
exact pretraining settings (a --data file by its content), so a second run with the same settings
reuses pi_ref in any folder, and says so. The run folder gets its own copy (reference.pt): a run
stays whole when the cache is cleared. Ctrl-C during pretraining stops at once; it takes seconds.
"""
import hashlib
import json
import os
import time

import torch

from minippo.extras import files
from minippo.extras.files import UsageError
from minippo.extras.grammar import grammatical_fraction
from minippo.model import Policy, sample
from minippo.pretrain import line_starts, lm_loss, pretrain
from minippo.rollout import decode_responses


def cache_path(settings: dict) -> str:
    """Where the pi_ref of these pretraining settings is cached: a name derived from their values."""
    exact = dict(settings)
    if exact.get("data"):                   # the file's bytes, not its name, decide what pi_ref learned
        with open(exact["data"], "rb") as f:
            exact["data"] = hashlib.sha256(f.read()).hexdigest()
    key = hashlib.sha256(json.dumps(exact, sort_keys=True).encode()).hexdigest()[:16]
    folder = os.environ.get("MINIPPO_CACHE") or os.path.expanduser("~/.cache/minippo")
    return os.path.join(folder, f"reference-{key}.pt")


def pretrained_policy(run, build: bool = True):
    """The pretrained policy (and the seconds pretraining took): the run folder's reference.pt,
    the cache's, or pretrained now (build=False: the run folder's only, which another process of a
    torchrun has just written)."""
    cfg, path, cached = run.cfg, run.path("reference.pt"), cache_path(run.pretrain)
    files.seed_everything(cfg.seed)         # the initial weights too: torch seeds itself randomly
    policy = Policy(run.model_config)
    if build:                               # (the other processes of a torchrun stay quiet)
        n, chars = sum(p.numel() for p in policy.parameters()), run.vocab.chars
        print(f"policy: {n:,} parameters, vocabulary {run.vocab.size} characters {chars!r} + PAD")
    state = run.cached_reference()          # the run folder's own, when its settings are these
    if state is None and build and os.path.isfile(cached):
        state = {**run.cached_reference(cached, settings=False), "pretrain": run.pretrain}
        files.save(state, path)
        print(f"reference: reusing {cached}, pretrained earlier with these settings")
    if state is not None:
        files.load_model(policy, state["model"], path)
        if build:
            print(f"reference: {path} ({state.get('stats')})")
        return policy.to(run.device).eval(), 0.0
    if not build:
        raise UsageError(f"{path}: not there; with several machines, --out must be a shared folder")
    t0, stop = time.time(), run.stop
    stop.immediate = True                   # Ctrl-C now stops at once: nothing is saved half-way
    pretrain(policy.to(run.device), run.train_ids.to(run.device), run.vocab.eos_id, cfg)
    stop.immediate = False
    seconds = time.time() - t0
    lines = sample_lines(policy, run.vocab, 256)
    val = val_loss(policy, run.val_ids.to(run.device), run.vocab.eos_id, cfg.block_size)
    stats = {"val_loss": round(val, 4), "seconds": round(seconds, 1)}
    if run.grammar:
        stats["grammatical"] = grammatical_fraction(lines)
    print(f"reference: pretrained in {seconds:.1f} s, {stats}; samples:")
    print("".join(f"  {line}\n" for line in lines[:5]), end="")
    state = {"kind": "reference", **run.identity, "pretrain": run.pretrain, "stats": stats}
    state["model"] = policy.state_dict()
    files.save(state, path)
    try:                                    # the cache is a convenience: a failed write is a note
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        files.save(state, cached)
    except OSError as e:
        print(f"reference: not cached ({e}); set MINIPPO_CACHE to a folder this user can write")
    return policy.eval(), seconds


@torch.no_grad()
def val_loss(model, ids, eos_id: int, block_size: int, max_windows: int = 64) -> float:
    """Mean next-character loss over the first line-aligned windows of the held-out text."""
    starts = line_starts(ids, eos_id, block_size)[:max_windows]
    windows = ids[starts[:, None] + torch.arange(block_size + 1, device=ids.device)]
    return lm_loss(model, windows[:, :-1], windows[:, 1:]).item()


@torch.no_grad()
def sample_lines(model, vocab, n: int) -> list[str]:
    """n lines written by the model from scratch (each line begins after an EOS)."""
    start = torch.full((n, 1), vocab.eos_id, device=model.lm_head.weight.device)
    texts, finished = decode_responses(vocab, sample(model, start, 64, 1.0, vocab.eos_id)[0])
    return [y if done else y + " <no EOS>" for y, done in zip(texts, finished)]
