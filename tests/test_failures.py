"""A reward that misbehaves, or a loss that becomes NaN, stops the run with one line; the last good
checkpoint and the metrics up to it stay intact."""
import json
import math

import pytest
import torch

from minippo.extras import launch as train_module
from conftest import TINY, with_reference
from minippo.extras import checkpoint as ckpt
from minippo.rewards import NO_EOS_PENALTY
from minippo.extras.launch import RewardError, checked
from minippo.rollout import score


def run_in_process(capsys, *args):
    code = train_module.main(list(args))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("bad,what", [(ValueError("no opinion"), "raised ValueError: no opinion"),
                                      (math.nan, "returned nan")])
def test_misbehaving_reward_stops_cleanly(reference, tmp_path, capsys, monkeypatch, bad, what):
    calls = {"n": 0}

    def flaky(prompt, response):             # fine for the first ~2 iterations of 32, then bad
        calls["n"] += 1
        if calls["n"] <= 70:
            return 0.0
        if isinstance(bad, Exception):
            raise bad
        return bad
    monkeypatch.setitem(train_module.REWARDS, "flaky", flaky)
    out = with_reference(reference, tmp_path, "flaky")
    code, err = run_in_process(capsys, "--out", str(out), *TINY, "--iters", "6", "--ckpt-every", "2",
                               "--reward", "flaky")
    lines = [line for line in err.splitlines() if line.startswith("error")]
    assert code == 1 and len(lines) == 1, err
    assert "reward 'flaky' on prompt '" in lines[0] and "and response '" in lines[0] and what in lines[0]
    done = [json.loads(line)["iter"] for line in open(out / "metrics.jsonl")]
    assert len(done) >= 2 and done == list(range(1, len(done) + 1))   # every finished iteration
    state = ckpt.load(str(out / "checkpoint.pt"), "rl")          # the last good checkpoint
    assert state["iter"] == len(done) - len(done) % 2


def test_non_finite_loss_stops_cleanly(reference, tmp_path, capsys):
    out = with_reference(reference, tmp_path, "explode")
    code, err = run_in_process(capsys, "--out", str(out), *TINY, "--iters", "3", "--lr", "1e30")
    assert code == 1 and ("non-finite" in err or "became" in err), err
    assert not (out / "checkpoint.pt").exists()                 # nothing garbage was saved
    assert torch.load(out / "reference.pt", weights_only=True)["kind"] == "reference"


@pytest.mark.parametrize("bad,what", [(math.inf, "returned inf"), ("great", "returned 'great'"),
                                      (None, "returned None"), (True, "returned True"),
                                      (KeyError("x"), "raised KeyError")])
def test_score_names_the_reward_prompt_and_response(bad, what):
    def odd(prompt, response):
        if isinstance(bad, Exception):
            raise bad
        return bad
    with pytest.raises(RewardError) as e:
        score(checked(odd), ["the food"], [" is good."], [True], "cpu")
    assert str(e.value).startswith("reward 'odd' on prompt 'the food' and response ' is good.'")
    assert what in str(e.value)
    assert score(checked(odd), ["the food"], [" is goo"], [False], "cpu").tolist() == [NO_EOS_PENALTY]


@pytest.mark.parametrize("algo", ["ppo", "reinforce"])
def test_a_nan_never_reaches_the_weights(algo):
    """The command guards the optimizer (runs.refuse_non_finite_gradients, installed by Run.start):
    a step whose gradients are not finite raises before it changes any weight."""
    from minippo.config import Config
    from minippo.extras.runs import refuse_non_finite_gradients
    from minippo.ppo import update
    from test_distributed import B, fixed_batch
    policy, batch = fixed_batch()
    which = "advantages" if algo == "ppo" else "scores"     # an advantage, or a score r(x, y)
    batch[which] = batch[which].clone()
    batch[which][0, ...] = math.nan
    before = [p.detach().clone() for p in policy.parameters()]
    cfg = Config(algo=algo, batch=B, minibatch=B, epochs=1)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=0.1)
    optimizer.register_step_pre_hook(refuse_non_finite_gradients)
    with pytest.raises(FloatingPointError, match="gradient became non-finite"):
        update(policy, optimizer, batch, cfg, 0.1)
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))
