"""Checkpoints: round trip of policy, value head and optimizer; clear errors for bad files."""
import copy
import os

import pytest
import torch

from minippo.extras import checkpoint as ckpt
from minippo.extras.cli import UsageError
from minippo.extras.runs import load_optimizer
from minippo.model import ModelConfig, Policy


class Custom:   # a pickled custom object must never be loaded
    pass


def make():
    torch.manual_seed(0)
    model = Policy(ModelConfig(vocab_size=9, block_size=16, n_layer=1, n_head=2, d_model=16))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    tokens = torch.randint(0, 9, (2, 8))
    logits, values = model(tokens)
    (logits.logsumexp(-1).mean() + values.pow(2).mean() + values.mean()).backward()
    opt.step()
    return model, opt


def test_round_trip(tmp_path):
    model, opt = make()
    path = str(tmp_path / "c.pt")
    ckpt.save({"kind": "rl", "model": model.state_dict(), "optimizer": opt.state_dict(),
               "rng": ckpt.rng_state(), "iter": 7}, path)
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]        # no temporary file left
    state = ckpt.load(path, "rl")
    model2, opt2 = make()
    model2.value_head.weight.data.fill_(3.0)
    model2.load_state_dict(state["model"])
    load_optimizer(opt2, state, path)
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(model2.value_head.weight, model.value_head.weight)
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert s1.keys() == s2.keys() and len(s1) == len(list(model.parameters()))
    for i in s1:
        assert float(s1[i]["step"]) == float(s2[i]["step"]) == 1
        assert torch.equal(s1[i]["exp_avg"], s2[i]["exp_avg"])
        assert torch.equal(s1[i]["exp_avg_sq"], s2[i]["exp_avg_sq"])
    assert state["iter"] == 7


def test_rng_state_round_trip(tmp_path):
    import random
    import numpy as np
    ckpt.seed_everything(5)
    path = str(tmp_path / "r.pt")
    ckpt.save({"kind": "x", "rng": ckpt.rng_state()}, path)
    expect = (random.random(), np.random.rand(), torch.rand(1).item())
    ckpt.seed_everything(99)
    ckpt.set_rng_state(ckpt.load(path, "x")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expect


def test_bad_files_give_one_clear_line(tmp_path):
    model, opt = make()
    good = str(tmp_path / "good.pt")
    ckpt.save({"kind": "rl", "model": model.state_dict()}, good)
    with pytest.raises(UsageError, match="no such checkpoint"):
        ckpt.load(str(tmp_path / "missing.pt"), "rl")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(open(good, "rb").read()[:200])
    foreign = tmp_path / "foreign.pt"
    foreign.write_text("hello, I am a text file")
    pickled = tmp_path / "pickled.pt"
    torch.save({"kind": "rl", "evil": Custom()}, str(pickled))
    for path in (truncated, foreign, pickled):
        with pytest.raises(UsageError, match="not a readable minippo checkpoint") as e:
            ckpt.load(str(path), "rl")
        assert "\n" not in str(e.value)
    with pytest.raises(UsageError, match="not a minippo reference checkpoint"):
        ckpt.load(good, "reference")


def test_incompatible_checkpoint_is_named_not_a_shape_error():
    with pytest.raises(UsageError, match="vocab"):
        ckpt.check_compatible({"vocab": "abc"}, {"vocab": "abd"}, "x.pt")


def test_failed_write_keeps_the_old_file(tmp_path):
    path = str(tmp_path / "keep.pt")
    ckpt.save({"kind": "rl", "n": 1}, path)

    def broken(tmp):
        open(tmp, "wb").write(b"partial")
        raise RuntimeError("disk full")
    with pytest.raises(OSError, match="could not write .*disk full"):   # torch.save's RuntimeError, as
        ckpt.atomic_write(path, broken)                                 # the OSError it is
    assert ckpt.load(path, "rl")["n"] == 1
    assert os.listdir(tmp_path) == ["keep.pt"]


def corrupt(change):
    state = make()[1].state_dict()
    change(state)
    return state


def set_first(key, value):
    return lambda s: s["state"][0].__setitem__(key, value(s["state"][0][key]))


@pytest.mark.parametrize("change", [
    lambda s: s.clear(), lambda s: s.__setitem__("param_groups", []),
    lambda s: s["param_groups"][0].__setitem__("lr", float("nan")),
    lambda s: s["param_groups"][0].__setitem__("lr", "1"),
    set_first("step", lambda t: t - 5), set_first("step", lambda t: t * float("nan")),
    set_first("exp_avg", lambda t: t[:1]), set_first("exp_avg", lambda t: t.double()),
    set_first("exp_avg", lambda t: t + float("inf")), set_first("exp_avg_sq", lambda t: t - 1),
    lambda s: s["state"].__setitem__(99, s["state"][0])],
    ids=["empty", "no-groups", "lr-nan", "lr-str", "step<0", "step-nan", "shape", "float64", "inf",
         "v<0", "extra-parameter"])
def test_an_optimizer_state_that_does_not_fit_is_one_line_and_changes_nothing(change):
    model, opt = make()
    before = copy.deepcopy(opt.state_dict())
    with pytest.raises(UsageError, match="optimizer state does not fit") as e:
        load_optimizer(opt, {"optimizer": corrupt(change)}, "checkpoint.pt")
    assert "\n" not in str(e.value)
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    assert all(torch.equal(after["state"][i]["exp_avg"], before["state"][i]["exp_avg"]) for i in before["state"])
