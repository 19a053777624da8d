"""The estimators at the sizes where their small biases would show: exact answers, no sampling.

- REINFORCE's leave-one-out baseline at B = 2: averaged over every pair of responses of a tiny
  policy (27 x 27 pairs, weighted by their exact probabilities), the gradient of the loss is exactly
  -grad J. A baseline that included the sample itself would give half of it.
- PPO's clipped value loss takes the larger (pessimistic) of the clipped and unclipped errors.
- GAE ignores whatever V says after a response ended, also at lambda < 1.
"""
import itertools

import pytest
import torch

from minippo.rl import gae, ppo_losses, reinforce_loss
from minippo.rollout import response_logprobs
from test_exact_gradient import BETA, T, exact_gradient, tiny, trunk
from test_rl import naive_gae


def test_leave_one_out_baseline_is_unbiased_at_two_samples():
    policy, ref = tiny(0), tiny(1).requires_grad_(False)
    r = torch.linspace(-1, 1, 27)[torch.randperm(27, generator=torch.Generator().manual_seed(2))]
    ys = torch.tensor(list(itertools.product(range(3), repeat=3)))       # (27, 3) every response
    x = torch.zeros(27, 1, dtype=torch.long)
    logprobs = response_logprobs(policy, x, ys, T)[0]                      # (27, 3)
    with torch.no_grad():
        kl = logprobs - response_logprobs(ref, x, ys, T)[0]                # per token, as the loop has it
        p = logprobs.sum(1).exp()                                          # pi(y), exact
    mask = torch.ones(2, 3)
    expected_loss = sum(p[i] * p[j] * reinforce_loss(logprobs[[i, j]], (r - BETA * kl.sum(1))[[i, j]], mask)
                        for i in range(27) for j in range(27))             # E over pairs of the B = 2 loss
    grad = torch.autograd.grad(expected_loss, trunk(policy))
    grad = torch.cat([g.flatten() for g in grad])
    assert torch.allclose(-grad, exact_gradient(policy, ref, r), atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("value, expected", [(1.0, 0.5 * (0.2 - 2.0) ** 2),    # clipped error larger
                                             (-1.0, 0.5 * (-1.0 - 2.0) ** 2),  # unclipped error larger
                                             (0.1, 0.5 * (0.1 - 2.0) ** 2)])   # inside the clip
def test_the_value_loss_takes_the_pessimistic_of_clipped_and_unclipped(value, expected):
    """V_clip = V_old + clip(V - V_old, -eps, eps); loss = 0.5 max((V - R)^2, (V_clip - R)^2)."""
    one = torch.ones(1, 1)
    _, vf_loss, _ = ppo_losses(one * 0, one * 0, one, one * value, one * 0.0, one * 2.0, one, clip=0.2)
    assert vf_loss.item() == pytest.approx(expected)


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_gae_ignores_values_after_the_response_ended(lam):
    g = torch.Generator().manual_seed(4)
    lengths = torch.tensor([2, 5, 7, 1])
    mask = (torch.arange(7)[None] < lengths[:, None]).float()
    rewards = torch.randn(4, 7, generator=g) * mask
    values = torch.randn(4, 7, generator=g)                  # V is *not* zero on padding: a model's V
    assert (values * (1 - mask)).abs().sum() > 1               # head outputs something there too
    adv, ret = gae(rewards, values, mask, 1.0, lam)
    assert torch.allclose(adv, naive_gae(rewards, values * mask, mask, 1.0, lam), atol=1e-5)
    assert (adv[mask == 0] == 0).all() and (ret[mask == 0] == 0).all()


@pytest.mark.parametrize("ratio, advantage, expected", [
    (1.3, 1.0, -1.2),     # A > 0, ratio above 1 + eps: the clipped term, -A (1 + eps), is the larger loss
    (1.1, 1.0, -1.1),     # inside the trust region: the plain surrogate
    (0.7, 1.0, -0.7),     # A > 0, ratio below 1 - eps: the plain term is the larger loss, no clipping
    (0.7, -1.0, 0.8),     # A < 0, ratio below 1 - eps: clipped, -A (1 - eps)
    (1.3, -1.0, 1.3)])    # A < 0, ratio above 1 + eps: the plain term is the larger loss
def test_the_clipped_surrogate_takes_the_pessimistic_term(ratio, advantage, expected):
    """L = max(-A rho, -A clip(rho, 1 - eps, 1 + eps)) with eps = 0.2, at one token."""
    one = torch.ones(1, 1)
    logprobs = one * torch.log(torch.tensor(ratio))
    pg_loss, _, stats = ppo_losses(logprobs, one * 0, one * advantage, one * 0, one * 0, one * 0, one, clip=0.2)
    assert pg_loss.item() == pytest.approx(expected, rel=1e-6)
    assert stats["clipfrac"].item() == (abs(ratio - 1) > 0.2)
