import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# the tests' own pi_ref cache (every command they start inherits it), never the user's; with
# `pytest -n 2` (pytest-xdist) the workers share one, and each uses one thread of the two cores
WORKERS = os.environ.get("PYTEST_XDIST_TESTRUNUID")
CACHE = Path(tempfile.gettempdir()) / f"minippo-test-cache-{WORKERS}" if WORKERS else None
os.environ["MINIPPO_CACHE"] = str(CACHE or tempfile.mkdtemp(prefix="minippo-test-cache-"))
if WORKERS:
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
# the lesson's math: `python -m pytest tests -m lesson` runs these files alone, in seconds
LESSON = """test_rl test_model test_exact_gradient test_estimators test_data test_loop
test_evaluate test_pretrain test_toy_bandit test_toy_kl""".split()


def pytest_configure(config):
    config.addinivalue_line("markers", "lesson: the lesson's math, without the command around it")


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.stem in LESSON:
            item.add_marker(pytest.mark.lesson)


def needs_matplotlib(reason="plots need matplotlib (pip install matplotlib)"):
    """Skip without matplotlib, except in CI (CI=true), which installs it: there a missing
    matplotlib must fail, so that no test of a shipped feature is silently skipped."""
    if os.environ.get("CI") == "true":
        import matplotlib  # noqa: F401
    else:
        pytest.importorskip("matplotlib", reason=reason)


# ----------------------------------------------------------------------------- train.py helpers
TINY = """--pretrain-steps 250 --corpus-lines 4000 --batch 32 --minibatch 16 --eval-samples 16
--sample-every 100 --lr 1e-3 --no-anneal-lr --device cpu""".split()
# (a constant learning rate makes the first k iterations of any run the same: tests can run fewer;
# the CPU, even where a GPU is present, because bit-exact reruns and resumes are a CPU promise)


def run(*args, check=True):
    """train.py as a user types it, in a process of its own."""
    line = [sys.executable, str(ROOT / "train.py"), *map(str, args)]
    p = subprocess.run(line, capture_output=True, text=True, cwd=ROOT)
    if check:
        assert p.returncode == 0, p.stderr[-2000:]
    return p


def toy_commands(script, *lines):
    """`script --json --steps 20 ARGS` for every ARGS at once, each a real subprocess:
    {ARGS: (stdout, stderr, exit code)}."""
    cmd = [sys.executable, script, "--json", "--steps", "20"]
    pipes = dict(text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    procs = {args: subprocess.Popen(cmd + args.split(), cwd=ROOT, **pipes) for args in lines}
    return {args: (*p.communicate(timeout=60), p.returncode) for args, p in procs.items()}


def one_clear_line_or_finite_numbers(result, args, refused):
    """A toy's flags: refused, exit 2 and one line naming the flag; else exit 0, all finite."""
    stdout, stderr, returncode = result
    if refused:
        lines = stderr.strip().splitlines()
        assert returncode == 2 and stdout == "" and len(lines) == 1
        assert args.split()[0].split("=")[0] in lines[0]  # names the flag
    else:  # --json writes NaN and inf as null; no warnings
        assert returncode == 0 and stderr == "" and json.loads(stdout) and "null" not in stdout


def call(main, capsys, *args):
    """A command's main() in this process: (exit code, its standard error)."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    return code, capsys.readouterr().err


def one_line(code, err, *words, expected=2):
    """The promise of every command: a refusal is one line naming what was wrong, and its exit code."""
    progress = ("rl:", "pretrain:")  # the progress lines, not the refusal
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(progress)]
    assert code == expected and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    for w in words:
        assert w in lines[0], (w, lines[0])


def snapshot(folder):
    """Every file in a folder and its bytes: what a refused command must leave unchanged."""
    return {f.name: f.read_bytes() for f in Path(folder).iterdir() if f.is_file()}


def metrics(out, drop=("seconds",)):
    rows = [json.loads(line) for line in open(Path(out) / "metrics.jsonl")]
    return [{k: v for k, v in row.items() if k not in drop} for row in rows]


def with_reference(reference, tmp_path, name):
    out = tmp_path / name
    out.mkdir()
    shutil.copy(reference / "reference.pt", out / "reference.pt")
    return out


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """One tiny pretraining + 12 PPO iterations, shared by the tests (they reuse reference.pt);
    made once, by the first worker that needs it when pytest-xdist runs several."""
    root = tmp_path_factory.getbasetemp()
    root = root.parent if WORKERS else root                 # (the workers' common folder)
    out = root / "ref0"
    with open(root / "ref0.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)                    # the others wait for it
        if not (root / "ref0.done").exists():
            shutil.rmtree(out, ignore_errors=True)
            run("--out", str(out), *TINY, "--iters", "12")
            (root / "ref0.done").touch()
    return out
