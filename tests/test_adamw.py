"""The hand-written AdamW against torch.optim.AdamW, bit for bit, and its state round trip."""
import pytest
import torch

from minippo.adamw import AdamW
from minippo.model import ModelConfig, Policy


def two_models():
    torch.manual_seed(0)
    a = Policy(ModelConfig(vocab_size=9, block_size=16, n_layer=2, n_head=2, d_model=16))
    b = Policy(ModelConfig(vocab_size=9, block_size=16, n_layer=2, n_head=2, d_model=16))
    b.load_state_dict(a.state_dict())
    return a, b


def same_gradients(a, b):
    for pa, pb in zip(a.parameters(), b.parameters()):
        g = torch.randn_like(pa)
        pa.grad, pb.grad = g.clone(), g.clone()


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_equals_torch_adamw_bit_for_bit(weight_decay):
    a, b = two_models()
    mine = AdamW(a.parameters(), lr=1e-2, betas=(0.9, 0.99), weight_decay=weight_decay)
    ref = torch.optim.AdamW(b.parameters(), lr=1e-2, betas=(0.9, 0.99), weight_decay=weight_decay,
                            foreach=False)
    for step in range(6):
        lr = 1e-2 * (1 - step / 6)                   # a schedule, as pretraining and RL use
        mine.lr = lr
        ref.param_groups[0]["lr"] = lr
        same_gradients(a, b)
        mine.step()
        ref.step()
        assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    mine.zero_grad()
    assert all(p.grad is None for p in a.parameters())


def test_state_round_trip_continues_identically():
    a, b = two_models()
    oa, ob = AdamW(a.parameters(), lr=1e-2), AdamW(b.parameters(), lr=1e-2)
    for _ in range(3):
        same_gradients(a, b)
        oa.step()
        ob.step()
    saved = oa.state_dict()
    fresh = AdamW(b.parameters(), lr=5.0)
    fresh.load_state_dict(saved)                     # takes t, lr and both moments
    for _ in range(2):
        same_gradients(a, b)
        oa.step()
        fresh.step()
    assert fresh.t == 5 and all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_a_parameter_without_gradient_stays_put():
    a, _ = two_models()
    opt = AdamW(a.parameters(), lr=1e-1, weight_decay=0.0)
    head, emb = a.value_head.weight.detach().clone(), a.tok_emb.weight.detach().clone()
    for p in a.parameters():
        p.grad = None if p is a.value_head.weight else torch.ones_like(p)
    opt.step()
    assert torch.equal(a.value_head.weight, head) and not torch.equal(a.tok_emb.weight, emb)


def good_state():
    a, _ = two_models()
    return AdamW(a.parameters(), lr=1e-2).state_dict()


@pytest.mark.parametrize("bad", [None, {}, {"t": 1, "lr": 0.1, "m": torch.zeros(3), "v": torch.zeros(3)},
                                 {"state": {}, "param_groups": []},
                                 {**good_state(), "t": -1}, {**good_state(), "t": True},
                                 {**good_state(), "lr": float("nan")}, {**good_state(), "lr": "1"},
                                 {**good_state(), "v": -torch.ones_like(good_state()["v"])},
                                 {**good_state(), "m": torch.full_like(good_state()["m"], float("inf"))},
                                 {**good_state(), "m": good_state()["m"].double()}],
                         ids=["none", "empty", "shape", "torch-layout", "t<0", "t-bool", "lr-nan",
                              "lr-str", "v<0", "m-inf", "m-float64"])
def test_load_refuses_a_state_that_does_not_fit(bad):
    a, _ = two_models()
    opt = AdamW(a.parameters(), lr=1e-2)
    with pytest.raises(ValueError, match="does not fit"):
        opt.load_state_dict(bad)
    assert opt.t == 0 and opt.lr == 1e-2 and not opt.m.any()
