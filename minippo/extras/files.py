"""The invariants every command keeps, in one place instead of a check at each site:

1. One error boundary per command (`boundary`): a refused input (UsageError) is one line and exit 2;
   a failed write, a run that cannot go on or memory that runs out, one line and exit 1; Ctrl-C 130.
   Anything else is a bug and keeps its traceback.
2. Every file is written atomically (`atomic_write`, `write_together`): to a temporary file beside
   it, then renamed over it, so old results are replaced only once all the new ones are saved.
3. Loading is all or nothing (`load`, `load_model`): weights-only files, strict load_state_dict,
   finite tensors. Saved settings are compared in one go (`differences`), not field by field.
4. One writer per folder (`lock`), and a file given as input is never removed (`remove_outputs`).
"""
import json
import math
import os
import random
import re
import signal
import sys

import numpy as np
import torch

try:
    import fcntl                           # POSIX; on Windows a folder is not locked
except ImportError:
    fcntl = None


class UsageError(Exception):
    """A refused input (flag, file or folder): one line, exit code 2, nothing written."""


class Failure(Exception):
    """The run cannot go on (a reward that raised, a non-finite gradient): one line, exit code 1."""


def say(line: str) -> None:
    """Print to stderr, once: under torchrun only process 0 speaks."""
    if os.environ.get("RANK", "0") == "0":
        print(line, file=sys.stderr, flush=True)


def boundary(command, *args, stop=None, after_stop=lambda: "nothing half-written was kept") -> int:
    """Run command(*args) and turn how it ends into an exit code and at most one line. Ctrl-C and
    SIGTERM (what a scheduler or `docker stop` sends) go to `stop` (finish the step, then save) or,
    without one, stop the command at once."""
    handlers = {sig: signal.signal(sig, stop.request if stop else interrupt)
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return command(*args) or 0
    except UsageError as e:
        say(f"error: {e}")
        return 2
    except OSError as e:                   # the file system refused: full, read-only, a size limit, ...
        say(f"error: {e.filename or ''}{': ' if e.filename else ''}{e.strerror or e}; {after_stop()}")
        return 1
    except (Failure, FloatingPointError) as e:
        say(f"error: {e}; {after_stop()}")
        return 1
    except (MemoryError, RuntimeError) as e:   # a CPU's "can't allocate memory" is a RuntimeError
        if not isinstance(e, MemoryError) and "allocate" not in str(e) and "out of memory" not in str(e):
            raise
        say(f"error: out of memory ({type(e).__name__}); use a smaller model or batch; {after_stop()}")
        return 1
    except KeyboardInterrupt:
        say(f"\nstopped; {after_stop()}")
        return 130
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def interrupt(signum, frame):
    raise KeyboardInterrupt


class StopFlag:
    """Set by the first Ctrl-C or SIGTERM: loops finish their current step, save and exit. A
    second one quits at once, and so does the first when nothing would be saved (`immediate`:
    pretraining, which is rerun in seconds, and the final evaluation)."""
    requested = immediate = False

    def request(self, signum=None, frame=None):
        if self.requested or self.immediate:
            raise KeyboardInterrupt
        self.requested = True
        name = "SIGTERM" if signum == signal.SIGTERM else "Ctrl-C"
        say(f"\n{name}: finishing this step, then saving (Ctrl-C again quits without saving)")


# ----------------------------------------------------------------------------- writing
def atomic_write(path: str, write) -> None:
    """write(tmp) then rename tmp over path: readers see the old file or the new one, never a part."""
    write_together({path: write})


def write_together(writes: dict) -> None:
    """{path: write(tmp)}: every file to a temporary beside it first, then each renamed over its
    path, so a failed write leaves every old file as it was. It raises OSError naming the path,
    and no temporary file is left."""
    tmps = {path: f"{path}.tmp{os.getpid()}" for path in writes}
    try:
        for path, write in writes.items():
            try:
                write(tmps[path])
                with open(tmps[path], "rb") as f:
                    os.fsync(f.fileno())
            except (OSError, RuntimeError) as e:   # RuntimeError: torch.save's words for a failed write
                raise OSError(getattr(e, "errno", None), getattr(e, "strerror", None) or
                              f"could not write it ({str(e).splitlines()[0][:80]})", path) from None
        for path, tmp in tmps.items():
            os.replace(tmp, path)
    finally:
        for tmp in tmps.values():
            if os.path.exists(tmp):
                os.remove(tmp)


def save(obj: dict, path: str) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_lines(lines, path: str) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            f.writelines(lines)
    atomic_write(path, write)


def save_json(obj, path: str) -> None:
    """Standard JSON: a NaN or infinite figure is written as null."""
    save_lines([json.dumps(finite(obj), indent=2, allow_nan=False)], path)


def finite(x):
    """x with every NaN or infinite float replaced by None, in nested dicts and lists."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    return x


def remove_outputs(paths, inputs, why: str) -> None:
    """Remove old outputs (--force), but never a file the command was given as input."""
    given = {os.path.realpath(p) for p in inputs if p}
    for path in paths:
        if os.path.realpath(path) in given:
            raise UsageError(f"{path}: {why} would remove it, but it is an input of this command; "
                             f"copy it elsewhere first")
    for path in paths:
        os.remove(path)


# ----------------------------------------------------------------------------- reading
def input_file(path: str, flag: str, what: str) -> str:
    """path, or UsageError naming the flag when it is not a readable regular file."""
    if not os.path.isfile(path):
        problem = ("a folder" if os.path.isdir(path) else "not a regular file" if os.path.exists(path)
                   else "no such file")
        raise UsageError(f"--{flag}={path}: {problem}; give {what}")
    return path


def read_lines(path: str, flag: str) -> list[str]:
    """The non-empty lines of a UTF-8 text file, or UsageError."""
    input_file(path, flag, "a UTF-8 text file, one sentence per line")
    try:
        with open(path, encoding="utf-8-sig") as f:      # (a byte-order mark is not text)
            lines = [line.strip() for line in f.read().splitlines() if line.strip()]
    except UnicodeDecodeError as e:
        raise UsageError(f"--{flag}={path}: not UTF-8 text (byte {e.start}); convert it to UTF-8") from None
    if not lines:
        raise UsageError(f"--{flag}={path}: the file is empty; give one sentence per line")
    return lines


def load(path: str, kind: str) -> dict:
    """A minippo file of this kind ("reference", "rl", "pretrain", "reward_model"), weights-only:
    pickled code in it is refused, never run."""
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        raise UsageError(f"{path}: not a readable minippo file (truncated, not a torch file, or holding "
                         f"pickled objects); delete it or point to another file") from None
    if not isinstance(obj, dict) or obj.get("kind") != kind:
        raise UsageError(f"{path}: not a minippo {kind} file")
    return obj


def load_model(model, state, path: str, advice: str = "delete it, or start afresh with --force"):
    """model.load_state_dict(state, strict=True) of finite weights, or UsageError (model unchanged)."""
    try:
        model.load_state_dict(state, strict=True)    # the same names and shapes, or it raises
    except (RuntimeError, TypeError, AttributeError, KeyError) as e:
        raise UsageError(f"{path}: its weights do not fit this model ({' '.join(str(e).split())[:150]}); "
                         f"{advice}") from None
    if not all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point()):
        raise UsageError(f"{path}: its weights are not finite (NaN or inf); {advice}")
    return model


def differences(saved, want: dict, skip=()) -> dict:
    """{setting: (saved value, wanted value)} for every setting of `want` that `saved` has otherwise
    (a setting missing from an older file counts as differing)."""
    saved = saved if isinstance(saved, dict) else {}
    return {k: (saved.get(k), v) for k, v in want.items() if k not in skip and saved.get(k, object()) != v}


# ----------------------------------------------------------------------------- random state
def rng_state() -> dict:
    """Every random generator the run uses (python, numpy, torch, cuda)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore rng_state()."""
    name, keys, pos, has_gauss, cached = state["numpy"]
    random.setstate(_tuples(state["python"]))
    torch.set_rng_state(state["torch"])
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples(x):
    """random.setstate needs tuples where a round trip through torch.save may give lists."""
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- one writer per folder
LOCK_NOTE = ".minippo_in_use"             # inside a locked folder: which process holds it


def lock(folder: str, flag: str = "out") -> int:
    """Hold `folder` until unlock() or this process ends, however it ends (the kernel drops the lock):
    a second writer is refused with one line naming the holder. Temporary files a killed
    atomic_write left are removed (nobody else writes here)."""
    try:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY) if fcntl is not None else -1
    except OSError as e:
        raise UsageError(f"--{flag}={folder}: {e.strerror}; give a folder this user can write") from None
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
        raise UsageError(f"{folder} is in use by {holder}; wait for it to end, or use another folder") from None
    note = os.path.join(folder, LOCK_NOTE)
    with open(note, "w") as f:
        f.write(f"process {os.getpid()} ({' '.join(sys.argv)[:200]})\n")
    for name in os.listdir(folder):
        if re.fullmatch(r"[\w.]+\.(pt|json|jsonl)\.tmp\d+", name):
            os.remove(os.path.join(folder, name))
    return fd


def unlock(folder: str, fd) -> None:
    if fd is None:
        return
    try:
        os.remove(os.path.join(folder, LOCK_NOTE))
    except OSError:
        pass
    if fd >= 0:
        os.close(fd)
