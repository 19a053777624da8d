"""Saving and loading runs safely: atomic writes, weights-only loads, full RNG state.

A checkpoint holds only state_dicts and plain Python values (numbers, strings, lists, dicts,
tensors), so `torch.load(weights_only=True)` can read it without running pickled code, and a file
holding anything else is refused. Every write goes to a temporary file first and is then renamed
over the old one: a crash or Ctrl-C mid-write never leaves a half-written checkpoint behind.
"""
import json
import math
import os
import random

import numpy as np
import torch

from minippo.extras.cli import UsageError


def atomic_write(path: str, write) -> None:
    """write(tmp_path) then rename: readers see the old file or the new one, never a partial one."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        try:
            write(tmp)
        except RuntimeError as e:           # torch.save's own words for a failed write (disk full)
            raise OSError(f"could not write {path} ({str(e).splitlines()[0][:120]}): disk full or a "
                          f"file-size limit?") from None
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save(obj: dict, path: str) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_json(obj, path: str) -> None:
    """JSON as the standard has it: a NaN or infinite figure (a gap that cannot be computed, say)
    is written as null, never as NaN or Infinity."""
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(finite(obj), f, indent=2, allow_nan=False)
    atomic_write(path, write)


def finite(x):
    """x with every float that is NaN or infinite replaced by None, in nested dicts and lists."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    return x


def load(path: str, kind: str) -> dict:
    """Load a minippo checkpoint of the given kind, or raise UsageError with one clear line."""
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such checkpoint file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # truncated, not a torch file, or holds pickled code: never run it
        raise UsageError(f"{path}: not a readable minippo checkpoint (truncated, not a torch file, "
                         f"or holding pickled objects that weights-only loading refuses); delete it "
                         f"or point to another file") from None
    if not isinstance(obj, dict) or obj.get("kind") != kind:
        raise UsageError(f"{path}: not a minippo {kind} checkpoint")
    return obj


def check_compatible(state: dict, expected: dict, path: str,
                     advice: str = "use a matching configuration or another --out folder") -> None:
    """Refuse a checkpoint whose model shape or vocabulary differs, before any shape error."""
    for key, want in expected.items():
        have = state.get(key)
        if have != want:
            raise UsageError(f"{path}: made with {key}={have!r}, this run has {key}={want!r}; {advice}")


def rng_state() -> dict:
    """The state of every random generator the run uses (python, numpy, torch, cuda)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(_tuples(state["python"]))
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def check_rng_state(state) -> None:
    """Raise (TypeError, ValueError, KeyError, RuntimeError) if `state` is not what rng_state()
    returns, trying each part on a fresh generator so the running ones are left alone."""
    if not isinstance(state, dict):
        raise TypeError("not a dict")
    random.Random().setstate(_tuples(state["python"]))
    if not isinstance(state["torch"], torch.Tensor):
        raise TypeError("torch state is not a tensor")
    torch.Generator().set_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    if not isinstance(keys, torch.Tensor):
        raise TypeError("numpy keys are not a tensor")
    np.random.RandomState().set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))


def _tuples(x):
    """random.setstate needs tuples where a round trip through torch.save may give lists."""
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
