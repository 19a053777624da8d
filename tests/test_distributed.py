"""Data parallelism is the same algorithm: 2 CPU processes (gloo) against one.

The processes are forked with multiprocessing, given the environment torchrun would give them
(RANK, WORLD_SIZE, MASTER_ADDR/PORT), and run the very code train.py runs. Forking skips a second
torch import per process, which keeps these tests to a few seconds."""
import multiprocessing as mp
import os
import pickle
import socket
import time

import pytest
import torch

from conftest import TINY, metrics, with_reference
from minippo.config import Config
from minippo.extras import dist
from minippo.extras.launch import main as train_main
from minippo.extras.runs import global_steps
from minippo.model import ModelConfig, Policy, sample
from minippo.ppo import update
from minippo.rl import whiten
from test_exact_gradient import update_batch

WORLD, B, T = 2, 16, 1.0
HALVES = [slice(0, B // 2), slice(B // 2, B)]          # rows of process 0 and of process 1


def _entry(fn, rank, port, queue, args):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD))
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank))
    try:
        out = fn(rank, *args)
    except BaseException as e:               # report it to the test instead of hanging
        out = RuntimeError(f"rank {rank}: {type(e).__name__}: {e}")
    dist.close()
    queue.put((rank, pickle.dumps(out)))    # by value: tensors would otherwise go by shared memory


def in_two_processes(fn, *args):
    """fn(rank, *args) in WORLD forked processes; their results in rank order."""
    ctx = mp.get_context("fork")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    queue = ctx.Queue()
    procs = [ctx.Process(target=_entry, args=(fn, r, port, queue, args)) for r in range(WORLD)]
    for p in procs:
        p.start()
    in_rank_order = sorted(queue.get(timeout=240) for _ in procs)
    results = [pickle.loads(out) for _, out in in_rank_order]
    for p in procs:
        p.join(timeout=60)
    assert not any(isinstance(out, Exception) for out in results), results
    return results


def fixed_batch(algo="ppo"):
    """One global batch of rollouts from a small random policy: what minippo.ppo.update takes
    (REINFORCE: R = r(x, y) - beta KL per response as its returns), with V != 0 as in training."""
    torch.manual_seed(0)
    shape = ModelConfig(vocab_size=5, block_size=12, n_layer=1, n_head=2, d_model=16)
    policy, ref = Policy(shape), Policy(shape)
    x = torch.tensor([[5, 0]] * (B // 2) + [[0, 0]] * (B // 2))   # half the prompts left-padded
    scores = torch.linspace(-1, 1, B)
    with torch.no_grad():
        policy.lm_head.weight.normal_(0, 1.0)                 # peaked, so per-token figures vary
        policy.tok_emb.weight.normal_(0, 1.0)
        tokens = sample(policy, x, 8, T, eos_id=4)[0].clone()
    mask, v_shift = (tokens != 5).float(), torch.linspace(0, 1, tokens.shape[1])
    return policy, update_batch(policy, ref, x, tokens, mask, scores, 0.1, 0.95, algo, v_shift)


def one_update(rank, algo, whitened=False, part=slice(None), epochs=1):
    """minippo.ppo.update with SGD on `part` of the fixed batch (`epochs` steps); with a rank, in a process
    group, on that process's half, averaging the gradients as train.py does (run.average_gradients)."""
    if rank is not None:
        dist.setup("cpu")                  # first: one thread per process (a forked thread pool hangs)
        part = HALVES[rank]
    policy, batch = fixed_batch(algo)
    batch = {k: v[part] for k, v in batch.items() if v is not None}
    if whitened:                                              # over this process's share only
        batch["advantages"] = whiten(batch["advantages"], batch["mask"])
    n = len(batch["tokens"])
    cfg = Config(algo=algo, batch=n, minibatch=n, epochs=epochs, lr=0.5, max_grad_norm=1e9)
    # not Adam: g / |g| magnifies ~0 gradients' rounding
    optimizer = torch.optim.SGD(policy.parameters(), lr=cfg.lr)
    steps = global_steps(update(policy, optimizer, batch, cfg, 0.1, dist.average_gradients))
    return {k: v.detach().clone() for k, v in policy.state_dict().items()}, steps


@pytest.mark.parametrize("algo, whitened", [("ppo", False), ("ppo", True), ("reinforce", False)])
def test_two_processes_step_with_the_mean_gradient_of_their_shares(algo, whitened):
    """The promise under torchrun: each process computes the loss of its own share (whitening and the REINFORCE
    baseline use that share's statistics) and all take the step of the mean gradient. With SGD that step is the
    mean of the steps each share alone would take. Without whitening PPO's loss is a sum over responses / B, so
    halves add up to the whole: two processes take exactly the step of one process on the whole batch, and the
    figures they log (per-token ones weighted by tokens) are the whole batch's, at the second step too, where
    the ratio is off 1 (approx_kl and k3 > 0) and the halves, of 59 and 52 tokens, weigh unequally."""
    exact = algo == "ppo" and not whitened
    alone, alone_log = one_update(None, algo, whitened, epochs=1 + exact)
    shares = [one_update(None, algo, whitened, part)[0] for part in HALVES]
    expect = alone if exact else {k: (shares[0][k] + shares[1][k]) / 2 for k in shares[0]}
    # each process ends with the same weights, the expected ones
    for params, log in in_two_processes(one_update, algo, whitened, slice(None), 1 + exact):
        for name in params:
            assert torch.allclose(params[name], expect[name], rtol=1e-5, atol=1e-6), name
        assert not exact or log == [pytest.approx(d, rel=1e-5, abs=1e-6) for d in alone_log]


def train(rank, *argv):
    torch.set_num_threads(1)
    try:
        return train_main([str(a) for a in argv])
    except SystemExit as e:                 # a flag error exits from the parser, code 2
        return e.code


def test_two_process_run_learns_and_is_deterministic(reference, tmp_path):
    outs = [with_reference(reference, tmp_path, name) for name in ("a", "b")]
    short = [*TINY, "--iters", "6", "--eval-samples", "4"]
    for out in outs:
        assert in_two_processes(train, "--out", out, "--force", *short) == [0, 0]
    a, b = (metrics(out) for out in outs)
    assert [m["iter"] for m in a] == list(range(1, 7))        # one line per iteration, rank 0 only
    assert a == b                                             # same seed, same numbers
    # each process its own seed: with one seed both would draw the same responses (distinct <= 1/2)
    assert min(m["distinct"] for m in a) > 1 / 2, [m["distinct"] for m in a]   # seed 0: 0.84 to 1
    assert sum(m["reward"] for m in a[-2:]) / 2 > a[0]["reward"] + 0.2, [m["reward"] for m in a]
    assert (tmp_path / "a" / "summary.json").exists()


REFUSALS = {  # the flags, a word of the line
    "uneven": (["--batch", "9", "--minibatch", "9"], "split evenly"),
    "reinforce-share-of-one": (["--algo", "reinforce", "--batch", "2"], "at least 2"),
    "bad-flag": (["--lr", "0"], "--lr"),
    "taken-folder": ([*TINY, "--iters", "2"], "already holds a run"),
}


@pytest.mark.parametrize("args, word", REFUSALS.values(), ids=REFUSALS)
def test_a_refusal_ends_every_process_with_one_line(args, word, reference, tmp_path, capfd):
    """The batch must split evenly and REINFORCE needs two responses per process. Rank 0 alone checks
    the run folder: a folder that already holds a run must stop rank 1 too (not leave it waiting for a
    peer that quit). Every refusal: exit code 2 on every process and the error said once."""
    out = with_reference(reference, tmp_path, "taken")
    (out / "config.json").write_text((reference / "config.json").read_text())
    assert in_two_processes(train, "--out", out, *args) == [2, 2]
    err = [line for line in capfd.readouterr().err.splitlines() if line.startswith("error")]
    assert len(err) == 1 and word in err[0], err


@pytest.mark.parametrize("algo, which", [("ppo", "advantages"), ("reinforce", "returns")])
def test_a_nan_never_reaches_the_weights(algo, which):
    """update() stops at a non-finite gradient (from a NaN in A, or in REINFORCE's R) before the
    optimizer step changes any weight."""
    policy, batch = fixed_batch(algo)
    batch[which][0] = float("nan")
    before = [p.detach().clone() for p in policy.parameters()]
    optimizer = torch.optim.AdamW(policy.parameters(), lr=0.1)
    with pytest.raises(FloatingPointError, match="gradient became non-finite"):
        update(policy, optimizer, batch, Config(algo=algo, batch=B, minibatch=B, epochs=1), 0.1)
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))


def test_a_stuck_peer_is_noticed_within_the_timeout(monkeypatch):
    """A process that stops answering (alive but stuck) ends the others after PEER_TIMEOUT_MINUTES,
    not an hour; here the timeout is shortened to 1.2 seconds."""
    monkeypatch.setattr(dist, "PEER_TIMEOUT_MINUTES", 0.02)
    def stuck(rank):
        dist.setup("cpu")
        if rank == 1:
            return time.sleep(3)                         # stuck, never joins the all-reduce
        t = time.time()
        with pytest.raises(Exception):
            dist.any_process(False)
        return time.time() - t
    waited, _ = in_two_processes(stuck)
    assert isinstance(waited, float) and waited < 2.5, waited   # the peer sleeps 3 s: not its exit
