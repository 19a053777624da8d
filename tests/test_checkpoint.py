"""Checkpoints: round trip of policy, value head and optimizer; clear errors for bad files."""
import os

import pytest
import torch

from minippo.adamw import AdamW
from minippo import checkpoint as ckpt
from minippo.config import UsageError
from minippo.model import ModelConfig, Policy


class Custom:   # a pickled custom object must never be loaded
    pass


def make():
    torch.manual_seed(0)
    model = Policy(ModelConfig(vocab_size=9, block_size=16, n_layer=1, n_head=2, d_model=16))
    opt = AdamW(model.parameters(), lr=1e-3)
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
    opt2.load_state_dict(state["optimizer"])
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(model2.value_head.weight, model.value_head.weight)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["t"] == s2["t"] == 1 and torch.equal(s1["m"], s2["m"]) and torch.equal(s1["v"], s2["v"])
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
    with pytest.raises(RuntimeError):
        ckpt.atomic_write(path, broken)
    assert ckpt.load(path, "rl")["n"] == 1
    assert os.listdir(tmp_path) == ["keep.pt"]
