"""The RL math against naive loops, closed forms and invariants."""
import math

import pytest
import torch

from minippo.rl import explained_variance, gae, group_advantages, kl_penalty_terms, masked_mean
from minippo.rl import KL_PENALTIES, per_token_rewards, ppo_losses, response_mean, seq_mean, update_beta, whiten


def batch(B=5, L=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, L + 1, (B,), generator=g)
    mask = (torch.arange(L)[None] < lengths[:, None]).float()
    return torch.randn(B, L, generator=g) * mask, torch.randn(B, L, generator=g) * mask, mask


def naive_gae(rewards, values, mask, gamma, lam):
    B, L = rewards.shape
    adv = torch.zeros(B, L)
    for b in range(B):
        n = int(mask[b].sum())
        for t in range(n):
            total = 0.0
            for k in range(t, n):                       # A_t = sum_k (gamma lam)^(k-t) delta_k
                v_next = values[b, k + 1] if k + 1 < n else 0.0
                delta = rewards[b, k] + gamma * v_next - values[b, k]
                total += (gamma * lam) ** (k - t) * delta
            adv[b, t] = total
    return adv


GAMMA_LAMBDA = [(1.0, 0.0), (1.0, 0.5), (1.0, 0.95), (1.0, 1.0), (0.9, 0.5), (0.99, 0.0)]


@pytest.mark.parametrize("gamma, lam", GAMMA_LAMBDA)
def test_gae_equals_naive_double_loop_and_ignores_values_after_the_response_ended(gamma, lam):
    """Whatever V says after a response ended, also at lambda < 1: a model's V head outputs something
    on padding too (the naive loop never reads it)."""
    g = torch.Generator().manual_seed(4)
    lengths = torch.tensor([2, 5, 7, 1])
    mask = (torch.arange(7)[None] < lengths[:, None]).float()
    rewards = torch.randn(4, 7, generator=g) * mask
    values = torch.randn(4, 7, generator=g)  # V is *not* zero on padding
    assert (values * (1 - mask)).abs().sum() > 1
    adv, ret = gae(rewards, values, mask, gamma, lam)
    assert torch.allclose(adv, naive_gae(rewards, values, mask, gamma, lam), atol=1e-5)
    assert torch.allclose(ret, (adv + values) * mask)
    assert (adv[mask == 0] == 0).all() and (ret[mask == 0] == 0).all()


def test_gae_lambda_one_is_return_minus_value_and_lambda_zero_is_td_error():
    rewards, values, mask = batch(seed=1)
    adv, _ = gae(rewards, values, mask, 1.0, 1.0)
    reward_to_go = rewards.flip(1).cumsum(1).flip(1) * mask
    assert torch.allclose(adv, (reward_to_go - values) * mask, atol=1e-5)
    adv, _ = gae(rewards, values, mask, 1.0, 0.0)
    next_values = torch.cat([values[:, 1:], torch.zeros(len(values), 1)], 1) * mask
    assert torch.allclose(adv, (rewards + next_values - values) * mask, atol=1e-6)


def test_masked_whitening():
    x, _, mask = batch(seed=2)
    w = whiten(x * 3 + 5, mask)
    assert abs(masked_mean(w, mask).item()) < 1e-6
    assert abs(masked_mean(w ** 2, mask).item() - 1) < 1e-4
    assert (w[mask == 0] == 0).all()
    const = whiten(torch.full((3, 4), 2.0), torch.ones(3, 4))
    assert torch.isfinite(const).all() and (const == 0).all()


def test_kl_of_pi_with_itself_is_zero_and_rewards_sum_to_the_objective():
    logprobs, ref_logprobs, mask = batch(seed=3)
    logprobs, ref_logprobs = logprobs - 2, ref_logprobs - 2
    scores = torch.tensor([1.0, -1.0, 0.0, 0.5, 1.0])
    kl = kl_penalty_terms("reward", logprobs, logprobs, logprobs.clone(), mask)
    assert (kl == 0).all()
    assert torch.allclose(per_token_rewards(scores, kl, mask, beta=0.3).sum(1), scores)
    kl = kl_penalty_terms("reward", logprobs, logprobs, ref_logprobs, mask)
    rewards = per_token_rewards(scores, kl, mask, beta=0.3)
    expect = scores - 0.3 * ((logprobs - ref_logprobs) * mask).sum(1)   # r(x,y) - beta log pi/pi_ref
    assert torch.allclose(rewards.sum(1), expect, atol=1e-6)
    last = mask.sum(1).long() - 1
    assert torch.allclose(rewards[torch.arange(5), last] + 0.3 * kl[torch.arange(5), last], scores)


def test_clipped_objective_at_ratio_one_is_the_vanilla_policy_gradient():
    logits, advantages, mask = batch(seed=4)
    logprobs = (logits - 3).requires_grad_()
    z = torch.zeros_like(logits)  # V, V_old and the returns
    pg_loss, _, stats = ppo_losses(logprobs, logprobs.detach(), advantages, z, z, z, mask, clip=0.2)
    (grad,) = torch.autograd.grad(pg_loss, logprobs)
    vanilla = -seq_mean(advantages * logprobs, mask)                    # -1/B sum A_t log pi
    (expect,) = torch.autograd.grad(vanilla, logprobs)
    assert torch.allclose(grad, expect)
    assert stats["clipfrac"] == 0 and stats["approx_kl"] == 0


def test_approx_kl_is_k1_of_kl_pi_old_to_pi_theta_per_response_token():
    """approx_kl = mean over response tokens of log pi_old - log pi_theta (k1 of KL(pi_old || pi_theta), samples of
    pi_old), its k3 companion mean(rho - 1 - log rho); a padding entry (mask 0) counts in neither."""
    logprobs = torch.tensor([[-1.0, -2.0, 9.0]])
    old = torch.tensor([[-1.5, -1.0, 0.0]])  # log rho = 0.5, -1
    z = torch.zeros(1, 3)
    _, _, stats = ppo_losses(logprobs, old, z, z, z, z, torch.tensor([[1.0, 1.0, 0.0]]), clip=0.2)
    assert stats["approx_kl"].item() == pytest.approx((-0.5 + 1.0) / 2)
    assert stats["approx_kl_k3"].item() == pytest.approx((math.exp(0.5) - 1.5 + math.exp(-1)) / 2)


def test_adaptive_beta_moves_the_right_way_by_at_most_20_percent_of_n_over_horizon():
    n, horizon = 64, 1000
    most = 0.2 * n / horizon  # the largest step
    assert update_beta(0.1, kl=10.0, target=1.0, n=n, horizon=horizon) == 0.1 * (1 + most)
    assert update_beta(0.1, kl=0.0, target=1.0, n=n, horizon=horizon) == 0.1 * (1 - most)
    assert 0.1 < update_beta(0.1, kl=1.1, target=1.0, n=n, horizon=horizon) < 0.1 * (1 + most)
    assert update_beta(0.1, kl=1.0, target=1.0, n=n, horizon=horizon) == 0.1


def test_explained_variance():
    returns, _, mask = batch(seed=5)
    assert abs(explained_variance(returns, returns, mask) - 1) < 1e-6
    constant = torch.zeros_like(returns) + masked_mean(returns, mask)
    assert abs(explained_variance(constant, returns, mask)) < 1e-5


def test_grpo_advantages_for_a_hand_made_group_and_its_reductions():
    """A = (R - mean) / (std + 1e-4) per group of G (sample std); a group of equal rewards gets 0, not
    NaN; Dr. GRPO drops the std."""
    R = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    sd = math.sqrt(4 * 0.25 / 3)
    a = 0.5 / (sd + 1e-4)
    assert group_advantages(R, 4).tolist() == pytest.approx([a, -a, -a, a] + [0.0] * 4)
    assert group_advantages(R, 4, std=False).tolist() == [0.5, -0.5, -0.5, 0.5, 0.0, 0.0, 0.0, 0.0]
    x = torch.tensor([[1.0, 3.0, 9.0], [4.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert response_mean(x, mask).item() == (2.0 + 4.0) / 2
    assert seq_mean(x, mask).item() == (4.0 + 4.0) / 2


E = math.exp
D, LOG_RATIO = [0.5, -1.0, 2.0], [0.5, 0.0, 0.5]  # d = log pi - log pi_ref and log pi / pi_old
K3 = [E(-d) - 1 + d for d in D]
TO_COME = [2.0 - 1.0 + 0.5, 2.0 - 1.0, 2.0]  # sum_{s >= t} d_s
HAND = {  # placement: (k_t, d k_t / d log pi(y_t)) by hand, log pi = (-1, -2, -0.5)
    "k1": (D, [1.0] * 3),
    "k2": ([d * d / 2 for d in D], D),
    "k3": (K3, [1 - E(-d) for d in D]),
    "k3_ratio": ([E(q) * k for q, k in zip(LOG_RATIO, K3)], [E(q) * d for q, d in zip(LOG_RATIO, D)]),
    "k3_st": (K3, D),  # k3's value, k2's gradient
    "ratio_k1": ([E(q) * d for q, d in zip(LOG_RATIO, D)], [E(q) * (d + 1) for q, d in zip(LOG_RATIO, D)]),
    "seq": ([c * lp for c, lp in zip(TO_COME, [-1.0, -2.0, -0.5])], TO_COME),  # the KL to come, as data
    "k3_inverted": ([E(d) - 1 - d for d in D], [E(d) - 1 for d in D]),  # w - 1 - log w, w = pi / pi_ref
}


@pytest.mark.parametrize("name", KL_PENALTIES)
def test_each_kl_placement_s_term_and_its_gradient_by_hand(name):
    """k_t of every placement of rl.KL_PENALTIES for one response, and (loss placements) its gradient
    in log pi; the reward placements are k1 and k3 of log pi_old - log pi_ref, as data. On padding
    (mask 0) every k_t is 0, never inf, even where log pi - log pi_ref is -100."""
    logprobs = torch.tensor([[-1.0, -2.0, -0.5]], requires_grad=True)
    old, ref, ones = torch.tensor([[-1.5, -2.0, -1.0]]), torch.tensor([[-1.5, -1.0, -2.5]]), torch.ones(1, 3)
    where, _ = KL_PENALTIES[name]
    value, grad = HAND[{"reward": "k1", "k3_reward": "k3"}.get(name, name)]
    k = kl_penalty_terms(name, logprobs, old, ref, ones)
    assert k[0].tolist() == pytest.approx(value, abs=1e-6)
    if where == "loss":
        assert torch.autograd.grad(k.sum(), logprobs)[0][0].tolist() == pytest.approx(grad, abs=1e-6)
    pad = torch.tensor([[1.0, 1.0, 0.0]])
    far = kl_penalty_terms(name, torch.tensor([[-1.0, -2.0, -101.0]]), old, ref + 1, pad)
    assert far[0, 2] == 0 and torch.isfinite(far).all()
