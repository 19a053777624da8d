"""Ctrl-C saves everything; --resume continues so exactly that metrics.jsonl matches an
uninterrupted run (timing fields aside)."""
import signal
import subprocess
import sys
import threading
import time

from conftest import ROOT, TINY, metrics, run, with_reference


def interrupt_when(args, ready, timeout=120):
    """Start train.py, send SIGINT (Ctrl-C) once ready(stderr so far) is true; return the process."""
    p = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err = []
    threading.Thread(target=lambda: err.extend(iter(lambda: p.stderr.read(64), "")), daemon=True).start()
    start = time.time()
    while p.poll() is None and not ready("".join(err)) and time.time() - start < timeout:
        time.sleep(0.02)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=timeout)
    time.sleep(0.1)
    p.stderr_text = "".join(err)
    return p


def test_ctrl_c_during_rl_then_resume_is_bit_exact(reference, tmp_path):
    out = with_reference(reference, tmp_path, "part")
    args = [*TINY, "--iters", "8", "--ckpt-every", "100"]
    p = interrupt_when(["--out", str(out), *args],
                       lambda _: (out / "metrics.jsonl").exists() and
                       len((out / "metrics.jsonl").read_text().splitlines()) >= 3)
    assert p.returncode == 130, p.stderr_text[-2000:]
    assert "--resume" in p.stderr_text
    done = len(metrics(out))
    assert 3 <= done < 8
    run(*args, "--resume", str(out))
    assert metrics(out) == metrics(reference)[:8]


def test_ctrl_c_during_pretraining_then_resume_is_bit_exact(reference, tmp_path):
    out = tmp_path / "pre"
    args = [*TINY, "--iters", "3"]
    p = interrupt_when(["--out", str(out), *args], lambda err: "pretrain:  " in err and "/250" in err
                       and not err.rstrip().endswith("0/250"))
    assert p.returncode == 130, p.stderr_text[-2000:]
    assert (out / "pretrain_state.pt").exists() and not (out / "reference.pt").exists()
    run(*args, "--resume", str(out))
    assert not (out / "pretrain_state.pt").exists()
    assert metrics(out) == metrics(reference)[:3]          # pi_ref came out bit for bit the same
