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
import contextlib
import json
import math
import os
import pathlib
import re
import signal
import sys

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
    handler = stop.request if stop else signal.default_int_handler     # (raises KeyboardInterrupt)
    handlers = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return command(*args) or 0
    except UsageError as e:
        say(f"error: {e}")
        return 2
    except (OSError, Failure, FloatingPointError) as e:    # OSError: full, read-only, a size limit...
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        say(f"error: {where}{getattr(e, 'strerror', None) or e}; {after_stop()}")
        return 1
    except (MemoryError, RuntimeError) as e:   # a CPU's "can't allocate memory" is a RuntimeError
        if isinstance(e, RuntimeError) and not re.search("allocate|out of memory", str(e)):
            raise
        say(f"error: out of memory; use a smaller model or batch; {after_stop()}")
        return 1
    except KeyboardInterrupt:
        say(f"\nstopped; {after_stop()}")
        return 130
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)


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
            except (OSError, RuntimeError) as e:   # RuntimeError: torch.save's failed write
                words = " ".join(str(e).split())[:80]
                why = getattr(e, "strerror", None) or f"could not write it ({words})"
                raise OSError(getattr(e, "errno", None), why, path) from None
        for path, tmp in tmps.items():
            os.replace(tmp, path)
    finally:
        for tmp in tmps.values():
            if os.path.exists(tmp):
                os.remove(tmp)


def save(obj: dict, path: str) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def save_lines(lines, path: str) -> None:
    atomic_write(path, lambda tmp: pathlib.Path(tmp).write_text("".join(lines)))


def save_json(obj, path: str) -> None:
    """Standard JSON: a NaN or infinite figure is written as null."""
    save_lines([json.dumps(finite(obj), indent=2, allow_nan=False)], path)


def finite(x):
    """x with every NaN or infinite float replaced by None, in nested dicts and lists."""
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x


def remove_outputs(paths, inputs, why: str) -> None:
    """Remove old outputs (--force), but never a file the command was given as input."""
    given = {os.path.realpath(p) for p in inputs if p}
    for path in paths:
        if os.path.realpath(path) in given:
            raise UsageError(f"{path}: {why} would remove this input of the command; copy it first")
    for path in paths:
        os.remove(path)


# ----------------------------------------------------------------------------- reading
def input_file(path: str, flag: str, what: str) -> str:
    """path, or UsageError naming the flag when it is not a readable regular file."""
    if not os.path.isfile(path):
        problem = "not a regular file" if os.path.exists(path) else "no such file"
        problem = "a folder" if os.path.isdir(path) else problem
        raise UsageError(f"--{flag}={path}: {problem}; give {what}")
    return path


def read_lines(path: str, flag: str) -> list[str]:
    """The non-empty lines of a UTF-8 text file, or UsageError."""
    input_file(path, flag, "a UTF-8 text file, one sentence per line")
    try:
        with open(path, encoding="utf-8-sig") as f:      # (a byte-order mark is not text)
            lines = [line.strip() for line in f.read().splitlines() if line.strip()]
    except UnicodeDecodeError as e:
        raise UsageError(f"--{flag}={path}: not UTF-8 text (byte {e.start}); convert it") from None
    if not lines:
        raise UsageError(f"--{flag}={path}: the file is empty; give one sentence per line")
    return lines


def load(path: str, kind: str) -> dict:
    """A minippo file of this kind ("reference", "rl", "pretrain", "reward_model"), weights-only:
    pickled code in it is refused, never run."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        raise UsageError(f"{path}: missing, or not a readable minippo file; give another") from None
    if not isinstance(obj, dict) or obj.get("kind") != kind:
        raise UsageError(f"{path}: not a minippo {kind} file")
    return obj


def load_model(model, state, path: str, advice: str = "delete it, or start afresh with --force"):
    """model.load_state_dict(state, strict=True) of finite weights, or UsageError (model unchanged)."""
    try:
        model.load_state_dict(state, strict=True)    # the same names and shapes, or it raises
    except (RuntimeError, TypeError, AttributeError, KeyError) as e:
        why = " ".join(str(e).split())[:150]
        raise UsageError(f"{path}: its weights do not fit this model ({why}); {advice}") from None
    if not all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point()):
        raise UsageError(f"{path}: its weights are not finite (NaN or inf); {advice}")
    return model


def differences(saved, want: dict, skip=()) -> dict:
    """{setting: (saved value, wanted value)} for every setting of `want` that `saved` has otherwise
    (a setting missing from an older file counts as differing)."""
    saved = saved if isinstance(saved, dict) else {}
    want = {k: v for k, v in want.items() if k not in skip}
    return {k: (saved.get(k), v) for k, v in want.items() if k not in saved or saved[k] != v}


def seed_everything(seed: int) -> None:
    """The run draws from torch alone (and CUDA, which torch.manual_seed seeds too)."""
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- one writer per folder
LOCK_NOTE = ".minippo_in_use"             # inside a locked folder: which process holds it


def lock(folder: str, flag: str = "out") -> int:
    """Hold `folder` until unlock() or this process ends, however it ends (the kernel drops the lock):
    a second writer is refused with one line naming the holder. Temporary files a killed
    atomic_write left are removed (nobody else writes here)."""
    note, fd = os.path.join(folder, LOCK_NOTE), -1
    try:
        os.makedirs(folder, exist_ok=True)
        if fcntl is not None:
            fd = os.open(folder, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with open(note, "w") as f:
            f.write(f"process {os.getpid()} ({' '.join(sys.argv)[:200]})\n")
    except OSError as e:
        if fd >= 0:
            os.close(fd)
        if not isinstance(e, BlockingIOError):
            why = f"{e.strerror}; give a folder this user can write"
            raise UsageError(f"--{flag}={folder}: {why}") from None
        holder = "another process"
        with contextlib.suppress(OSError), open(note) as f:
            holder = f.read().strip() or holder
        raise UsageError(f"{folder} is in use by {holder}; wait, or use another folder") from None
    for name in os.listdir(folder):
        if re.fullmatch(r"[\w.]+\.(pt|json|jsonl)\.tmp\d+", name):
            os.remove(os.path.join(folder, name))
    return fd


def unlock(folder: str, fd) -> None:
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.remove(os.path.join(folder, LOCK_NOTE))
    if fd >= 0:
        os.close(fd)
