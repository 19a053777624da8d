"""The estimators at the sizes where their small biases would show: exact answers, no sampling.

- REINFORCE's leave-one-out baseline at B = 2: averaged over every pair of responses of a tiny
  policy (27 x 27 pairs, weighted by their exact probabilities), the gradient of the loss is exactly
  -grad J. A baseline that included the sample itself would give half of it.
- PPO's clipped value loss takes the larger (pessimistic) of the clipped and unclipped errors, and
  its clipped surrogate the pessimistic term (whose gradient is 0 when clipped).
(That GAE ignores whatever V says after a response ended, also at lambda < 1: tests/test_rl.py.)
"""
import itertools

import pytest
import torch

from minippo.rl import ppo_losses, reinforce_loss
from minippo.rollout import response_logprobs
from test_exact_gradient import BETA, EVERY, QUERY, R, T, exact_gradient, tiny, trunk


def test_leave_one_out_baseline_is_unbiased_at_two_samples():
    policy, ref = tiny(0), tiny(1).requires_grad_(False)
    logprobs = response_logprobs(policy, QUERY, EVERY, T)[0]  # (27, 3)
    with torch.no_grad():
        kl = logprobs - response_logprobs(ref, QUERY, EVERY, T)[0]  # per token, as the loop has it
        p = logprobs.sum(1).exp()  # pi(y), exact
    returns, mask = R - BETA * kl.sum(1), torch.ones(2, 3)
    pair_loss = lambda i, j: p[i] * p[j] * reinforce_loss(logprobs[[i, j]], returns[[i, j]], mask)
    loss = sum(pair_loss(i, j) for i, j in itertools.product(range(27), repeat=2))  # E, at B = 2
    grad = torch.cat([g.flatten() for g in torch.autograd.grad(loss, trunk(policy))])
    assert torch.allclose(-grad, exact_gradient(policy, ref, R), atol=1e-6, rtol=1e-4)


# V_old = 0, R = 2, eps = 0.2: the loss counts V_clip = 0.2 at V = 1 (the clipped error is larger),
# V itself at V = -1 (the unclipped error is larger: V_clip = -0.2) and inside the clip
@pytest.mark.parametrize("value, counted", [(1.0, 0.2), (-1.0, -1.0), (0.1, 0.1)])
def test_the_value_loss_takes_the_pessimistic_of_clipped_and_unclipped(value, counted):
    """V_clip = V_old + clip(V - V_old, -eps, eps); loss = 0.5 max((V - R)^2, (V_clip - R)^2)."""
    one, z = torch.ones(1, 1), torch.zeros(1, 1)
    _, vf_loss, _ = ppo_losses(z, z, one, one * value, z, one * 2.0, one, clip=0.2)
    assert vf_loss.item() == pytest.approx(0.5 * (counted - 2.0) ** 2)


SURROGATE = [  # (ratio, A, the loss, whether it is the clipped term's, whose gradient is 0)
    (1.3, 1.0, -1.2, True),  # A > 0, ratio above 1 + eps: the clipped term, -A (1 + eps), is larger
    (1.1, 1.0, -1.1, False),  # inside the trust region: the plain surrogate
    (0.7, 1.0, -0.7, False),  # A > 0, ratio below 1 - eps: the plain term is larger, no clipping
    (0.7, -1.0, 0.8, True),  # A < 0, ratio below 1 - eps: clipped, -A (1 - eps)
    (1.3, -1.0, 1.3, False),  # A < 0, ratio above 1 + eps: the plain term is the larger loss
]


@pytest.mark.parametrize("ratio, advantage, expected, clipped", SURROGATE)
def test_the_clipped_surrogate_takes_the_pessimistic_term(ratio, advantage, expected, clipped):
    """L = max(-A rho, -A clip(rho, 1 - eps, 1 + eps)) with eps = 0.2, at one token; its gradient
    with respect to log pi is -A rho, or 0 where the clipped term is taken (past the trust region,
    the way A pushes)."""
    one, z = torch.ones(1, 1), torch.zeros(1, 1)
    logprobs = (one * torch.log(torch.tensor(ratio))).requires_grad_()
    pg_loss, _, stats = ppo_losses(logprobs, z, one * advantage, z, z, z, one, clip=0.2)
    assert pg_loss.item() == pytest.approx(expected, rel=1e-6)
    assert stats["clipfrac"].item() == (abs(ratio - 1) > 0.2)
    (grad,) = torch.autograd.grad(pg_loss, logprobs)
    assert grad.item() == (0 if clipped else pytest.approx(-advantage * ratio))
