"""Data parallelism is the same algorithm: 2 CPU processes (gloo) against one.

The processes are forked with multiprocessing, given the environment torchrun would give them
(RANK, WORLD_SIZE, MASTER_ADDR/PORT), and run the very code train.py runs. Forking skips a second
torch import per process, which keeps these tests to a few seconds.
"""
import multiprocessing as mp
import os
import pickle
import math
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
from minippo.rl import gae, per_token_rewards, whiten
from minippo.rollout import response_logprobs

WORLD, B, T = 2, 16, 1.0


def _entry(fn, rank, port, queue, args):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank))
    try:
        out = fn(rank, *args)
    except BaseException as e:               # report it to the test instead of hanging
        out = RuntimeError(f"rank {rank}: {type(e).__name__}: {e}")
    finally:
        dist.close()
    queue.put((rank, pickle.dumps(out)))    # by value: tensors would otherwise go by shared memory


def in_two_processes(fn, *args):
    """fn(rank, *args) in WORLD forked processes; their results in rank order."""
    ctx = mp.get_context("fork")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    queue = ctx.Queue()
    procs = [ctx.Process(target=_entry, args=(fn, rank, port, queue, args)) for rank in range(WORLD)]
    for p in procs:
        p.start()
    results = {rank: pickle.loads(out) for rank, out in (queue.get(timeout=240) for _ in procs)}
    for p in procs:
        p.join(timeout=60)
    for out in results.values():
        if isinstance(out, Exception):
            raise out
    return [results[r] for r in range(WORLD)]


def fixed_batch():
    """One global batch of rollouts from a small random policy: what minippo.ppo.update takes."""
    torch.manual_seed(0)
    policy = Policy(ModelConfig(vocab_size=5, block_size=12, n_layer=1, n_head=2, d_model=16))
    ref = Policy(ModelConfig(vocab_size=5, block_size=12, n_layer=1, n_head=2, d_model=16))
    with torch.no_grad():                                     # peaked, so per-token figures vary
        policy.lm_head.weight.normal_(0, 1.0)
        policy.tok_emb.weight.normal_(0, 1.0)
    x = torch.zeros(B, 2, dtype=torch.long)
    x[: B // 2, 0] = 5                                        # half the prompts left-padded
    tokens, _ = sample(policy, x, 8, T, eos_id=4)
    tokens = tokens.clone()
    mask = (tokens != 5).float()
    scores = torch.linspace(-1, 1, B)
    with torch.no_grad():
        old_logprobs, old_values, _ = response_logprobs(policy, x, tokens, T)
        old_values = old_values + torch.linspace(0, 1, tokens.shape[1])   # V != 0, as later in training
        ref_logprobs, _, _ = response_logprobs(ref, x, tokens, T)
        rewards, kl = per_token_rewards(scores, old_logprobs, ref_logprobs, mask, 0.1)
        advantages, returns = gae(rewards, old_values, mask, 1.0, 0.95)
    return policy, {"prompt_ids": x, "tokens": tokens, "mask": mask, "scores": scores, "kl": kl,
                    "old_logprobs": old_logprobs, "old_values": old_values,
                    "advantages": advantages, "returns": returns}


HALVES = [slice(0, B // 2), slice(B // 2, B)]          # rows of process 0 and of process 1


def one_update(rank, algo, whitened=False, part=slice(None)):
    """One minippo.ppo.update with SGD on `part` of the fixed batch; with a rank, in a process
    group, on that process's half, averaging the gradients as train.py does (run.average_gradients)."""
    if rank is not None:
        dist.setup("cpu")                  # first: one thread per process (a forked thread pool hangs)
    policy, batch = fixed_batch()
    if rank is not None:
        part = HALVES[rank]
    batch = {k: v[part] for k, v in batch.items()}
    if whitened:                                              # over this process's share only
        batch["advantages"] = whiten(batch["advantages"], batch["mask"])
    n = len(batch["tokens"])
    cfg = Config(algo=algo, batch=n, minibatch=n, epochs=1, lr=0.5, max_grad_norm=1e9)
    # SGD: the step is the averaged gradient itself (Adam's g / |g| would magnify float rounding
    # of gradients that are ~0, like the key bias's, which softmax ignores)
    optimizer = torch.optim.SGD(policy.parameters(), lr=cfg.lr)
    steps = global_steps(update(policy, optimizer, batch, cfg, 0.1, dist.average_gradients))
    return {k: v.detach().clone() for k, v in policy.state_dict().items()}, steps


def assert_same_weights(a, b):
    for name, value in a.items():
        assert torch.allclose(b[name], value, rtol=1e-5, atol=1e-6), name


@pytest.mark.parametrize("algo, whitened", [("ppo", False), ("ppo", True), ("reinforce", False)])
def test_two_processes_step_with_the_mean_gradient_of_their_shares(algo, whitened):
    """The promise under torchrun: each process computes the loss of its own share (whitening and
    the REINFORCE baseline use that share's statistics) and all take the step of the mean gradient.
    With SGD that step is the mean of the steps each share alone would take."""
    shares = [one_update(None, algo, whitened, part)[0] for part in HALVES]
    expect = {k: (shares[0][k] + shares[1][k]) / 2 for k in shares[0]}
    for params, _ in in_two_processes(one_update, algo, whitened):   # every process: the same weights
        assert_same_weights(expect, params)


def test_two_process_ppo_update_equals_one_process_on_the_whole_batch():
    """Without whitening PPO's loss is a sum over responses / B, so halves add up to the whole:
    two processes take exactly the step of one process on the whole batch, and the figures they
    log (per-token ones weighted by tokens) are the whole batch's."""
    alone, alone_log = one_update(None, "ppo")
    for params, log in in_two_processes(one_update, "ppo"):
        assert_same_weights(alone, params)
        for key in alone_log[0]:
            assert log[0][key] == pytest.approx(alone_log[0][key], rel=1e-5, abs=1e-6), key


def two_process_run(rank, out):
    torch.set_num_threads(1)
    code = train_main(["--out", out, "--force", *TINY, "--iters", "6", "--eval-samples", "4"])
    return code


def test_two_process_run_learns_and_is_deterministic(reference, tmp_path):
    runs = []
    for name in ("a", "b"):
        out = with_reference(reference, tmp_path, name)
        assert in_two_processes(two_process_run, str(out)) == [0, 0]
        runs.append(metrics(out))
    a, b = runs
    assert [m["iter"] for m in a] == list(range(1, 7))        # one line per iteration, rank 0 only
    assert a == b                                             # same seed, same numbers
    assert sum(m["reward"] for m in a[-2:]) / 2 > a[0]["reward"] + 0.2, [m["reward"] for m in a]
    assert (tmp_path / "a" / "summary.json").exists()


@pytest.mark.parametrize("args", [["--batch", "9", "--minibatch", "9"],
                                  ["--algo", "reinforce", "--batch", "2", "--minibatch", "2"]],
                         ids=["uneven", "reinforce-share-of-one"])
def test_batch_must_split_evenly_and_reinforce_needs_two_per_process(args):
    def bad(rank):
        return train_main(["--out", "unused", *args])
    assert in_two_processes(bad) == [2, 2]


def test_a_refusal_on_rank_0_ends_every_process_with_one_line(reference, tmp_path, capfd):
    """Rank 0 alone checks the run folder: a folder that already holds a run must stop rank 1 too
    (not leave it waiting for a peer that quit), with exit code 2 and the error said once."""
    out = with_reference(reference, tmp_path, "taken")
    (out / "config.json").write_text((reference / "config.json").read_text())

    def start(rank):
        return train_main(["--out", str(out), *TINY, "--iters", "2"])
    assert in_two_processes(start) == [2, 2]
    err = [line for line in capfd.readouterr().err.splitlines() if line.startswith("error")]
    assert len(err) == 1 and "already holds a run" in err[0], err


def test_a_bad_flag_under_torchrun_is_said_once(capfd):
    def start(rank):
        try:
            return train_main(["--out", "unused", "--lr", "0"])
        except SystemExit as e:          # a flag error exits from the parser, code 2
            return e.code
    assert in_two_processes(start) == [2, 2]
    err = [line for line in capfd.readouterr().err.splitlines() if line.startswith("error")]
    assert len(err) == 1 and "--lr" in err[0], err


@pytest.mark.parametrize("algo", ["ppo", "reinforce"])
def test_a_nan_never_reaches_the_weights(algo):
    """update() stops at a non-finite gradient before the optimizer step changes any weight."""
    policy, batch = fixed_batch()
    which = "advantages" if algo == "ppo" else "scores"     # an advantage, or a score r(x, y)
    batch[which] = batch[which].clone()
    batch[which][0, ...] = math.nan
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
            time.sleep(5)                                # stuck, never joins the all-reduce
            return "slept"
        t = time.time()
        try:
            dist.any_process(False)
        except Exception:
            return time.time() - t
        return "no error"
    waited, _ = in_two_processes(stuck)
    assert isinstance(waited, float) and waited < 4, waited     # the peer sleeps 5 s: not its exit
