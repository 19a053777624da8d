"""The KL-penalised policy gradient, as small pure functions of tensors (no model inside).

The objective (the lecture's):  J(theta) = E_x E_{y ~ pi_theta(.|x)}[ r(x, y) ] - beta KL(pi_theta || pi_ref)

Design choices, all of Ziegler et al. 2019 / InstructGPT style PPO (GRPO's, Shao et al. 2024, differ: below):
- KL in the reward, per token: r_t = -beta (log pi_old - log pi_ref)_t, and the score r(x, y) added
  at the last token (the EOS). Summed over t: r(x, y) - beta log(pi(y|x) / pi_ref(y|x)), exactly
  the sampled integrand of J(theta).
- Advantages by GAE with gamma = 1 (a response is a finite episode) and lambda (default 1: the
  unbiased Monte Carlo "reward-to-go minus V"; below 1 the learned V trades bias for variance),
  optionally whitened (off by default: once the reward saturates it magnifies noise).
- Losses are summed over a response's tokens and averaged over responses: J is an expectation
  over responses, and that sum is its unbiased gradient whatever the lengths.
- GRPO instead: its group's mean (and std) of R as the baseline, no V; each response's tokens
  averaged (a length bias Dr. GRPO removes); the KL as a loss term per token (k3), not in the reward.
Shapes: B responses, L response tokens; `mask` (B, L) is 1 where the token is part of the response
(up to and including EOS) and counts in the loss, 0 for padding after it.
"""
import torch


def seq_mean(x, mask):
    """Sum over each response's tokens, mean over responses: (B, L) -> scalar."""
    return (x * mask).sum() / mask.shape[0]


def masked_mean(x, mask):
    """Mean over response tokens only: (B, L) -> scalar."""
    return (x * mask).sum() / mask.sum().clamp(min=1)


def whiten(x, mask, eps: float = 1e-8):
    """(x - mean) / std over the masked entries of the batch; finite on constant input."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return (x - mean) * torch.rsqrt(var + eps) * mask


def per_token_rewards(scores, k, mask, beta: float):
    """r_t = -beta k_t (k1 = log pi_old - log pi_ref: the KL in the reward), plus r(x, y) at the
    last response token. scores (B,), k/mask (B, L) -> rewards (B, L)"""
    rewards = -beta * k
    last = mask.sum(1).long() - 1                             # index of EOS (or of the last token)
    rewards[torch.arange(len(scores)), last] += scores        # r(x, y) arrives at the end
    return rewards


def gae(rewards, values, mask, gamma: float, lam: float):
    """Generalised advantage estimation, computed backwards over the response.
    delta_t = r_t + gamma V(s_{t+1}) - V(s_t)     (V = 0 after the last token)
    A_t     = delta_t + gamma lam A_{t+1}          returns_t = A_t + V(s_t)      (B, L) each"""
    values = values * mask
    advantages = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(rewards[:, 0])
    next_value = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_adv = delta + gamma * lam * next_adv
        advantages[:, t] = next_adv
        next_value = values[:, t]
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def clipped_surrogate(logprobs, old_logprobs, advantages, mask, clip: float):
    """PPO's clipped surrogate per token, (B, L), and statistics of the ratio pi_theta / pi_old."""
    log_ratio = (logprobs - old_logprobs) * mask
    ratio = torch.exp(log_ratio)                              # pi_theta / pi_old, 1 at the start
    pg_losses = torch.maximum(-advantages * ratio,            # pessimistic of the two surrogates
                              -advantages * ratio.clamp(1 - clip, 1 + clip))
    stats = {"approx_kl": masked_mean(-log_ratio, mask),                      # k1
             "approx_kl_k3": masked_mean(ratio - 1 - log_ratio, mask),        # k3 >= 0
             "clipfrac": masked_mean(((ratio - 1).abs() > clip).float(), mask)}
    return pg_losses, stats


def ppo_losses(logprobs, old_logprobs, advantages, values, old_values, returns, mask, clip: float):
    """PPO's clipped surrogate and clipped value loss for one minibatch; (B, L) tensors in."""
    pg_losses, stats = clipped_surrogate(logprobs, old_logprobs, advantages, mask, clip)
    pg_loss = seq_mean(pg_losses, mask)
    values_clipped = old_values + (values - old_values).clamp(-clip, clip)
    vf_loss = 0.5 * seq_mean(torch.maximum((values - returns) ** 2, (values_clipped - returns) ** 2), mask)
    return pg_loss, vf_loss, stats


def group_advantages(R, group: int, std: bool = True, eps: float = 1e-4):
    """GRPO: A_i = (R_i - mean R) / std R over the G responses to one query, adjacent in R: (B,) -> (B,).
    A group of equal rewards gets 0 (0 / eps), never 0 / 0. Dr. GRPO leaves out the std (std=False)."""
    R = R.view(-1, group)                                     # (B / G, G)
    A = R - R.mean(1, keepdim=True)
    return (A / (R.std(1, keepdim=True) + eps) if std else A).flatten()


def response_mean(x, mask):
    """Mean over each response's own tokens, then over responses (GRPO's length normalisation)."""
    return ((x * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()


def k3(d):
    return torch.expm1(-d) + d                                # pi_ref/pi - 1 - log(pi_ref/pi) >= 0


# Where beta KL goes (--kl-penalty): "reward" placements subtract beta k_t from r_t, computed once
# from log pi_old as data; "loss" ones add beta k_t to the loss, differentiated, reduced over tokens
# as the policy loss is. k_t is a function of d = log pi - log pi_ref per token (0 on padding), the
# ratio pi_theta / pi_old (1 on-policy, its gradient grad log pi) and log pi (the Schulman 2020
# estimators of KL(pi || pi_ref) are k1 = d, k2 = d^2 / 2, k3; toy_kl.py says where each settles).
KL_PENALTIES = {  # name: (where, k_t(d, ratio, log pi))
    "reward": ("reward", lambda d, ratio, lp: d),             # k1 in r_t (Ziegler 2019, OpenRLHF)
    "k3_reward": ("reward", lambda d, ratio, lp: k3(d)),      # k3 in r_t (verl use_kl_in_reward)
    "k1": ("loss", lambda d, ratio, lp: d),                   # E[grad] = 0: the penalty vanishes
    "k2": ("loss", lambda d, ratio, lp: d**2 / 2),            # grad d grad log pi: one token's KL's
    "k3": ("loss", lambda d, ratio, lp: k3(d)),               # DeepSeekMath; KL(pi_ref || pi)'s grad
    "k3_ratio": ("loss", lambda d, ratio, lp: ratio * k3(d)),  # TRL, DeepSeek-V3.2: grad ratio d
    "k3_st": ("loss", lambda d, ratio, lp: (k3(d) - d**2 / 2).detach() + d**2 / 2),  # verl k3+
    "ratio_k1": ("loss", lambda d, ratio, lp: ratio * d),     # open-instruct kl4: ratio (d + 1) grad
    "seq": ("loss", lambda d, ratio, lp: d.flip(1).cumsum(1).flip(1).detach() * lp),  # Tang & Munos
    "k3_inverted": ("loss", lambda d, ratio, lp: torch.expm1(d) - d),  # a bug: chi2 / 2's gradient
}


def kl_penalty_terms(name, logprobs, old_logprobs, ref_logprobs, mask):
    """Placement `name`'s k_t of the sampled tokens, (B, L) each -> (B, L); 0 on padding, never inf.
    k3_st: k3's value with k2's gradient; seq: the KL still to come, sum_{s >= t} d_s, as data,
    times log pi(y_t): the whole response's KL gradient, not each token's own."""
    d = (logprobs - ref_logprobs) * mask                      # log pi - log pi_ref
    ratio = torch.exp((logprobs - old_logprobs) * mask)       # pi_theta / pi_old
    return KL_PENALTIES[name][1](d, ratio, logprobs * mask)


def reinforce_loss(logprobs, R, mask):
    """The log-derivative trick at sequence level, with a leave-one-out mean baseline:
    grad J ~ 1/B sum_i (R_i - b_i) grad log pi_theta(y_i|x_i),  R_i = r(x_i, y_i) - beta KL_i.
    b_i is the mean R of the *other* samples, so it does not depend on y_i and the estimate stays
    unbiased (a plain batch mean would shrink the gradient by (B-1)/B). logprobs, mask (B, L), R (B,)."""
    b = (R.sum() - R) / (len(R) - 1)                          # leave-one-out baseline
    seq_logprob = (logprobs * mask).sum(1)                    # log pi_theta(y|x) = sum_t log pi(y_t|.)
    return -((R - b).detach() * seq_logprob).mean()


def entropy(logits, mask, temperature: float):
    """Mean per-token entropy of pi_theta at temperature T over response tokens."""
    logp = torch.log_softmax(logits / temperature, dim=-1)
    return masked_mean(-(logp.exp() * logp).sum(-1), mask)


def explained_variance(values, returns, mask) -> float:
    """1 - Var(returns - V) / Var(returns): 1 = V predicts the return, <= 0 = no better than a constant."""
    var = masked_mean((returns - masked_mean(returns, mask)) ** 2, mask)
    err = returns - values
    var_err = masked_mean((err - masked_mean(err, mask)) ** 2, mask)
    return float(1 - var_err / var) if var > 0 else float("nan")


def update_beta(beta: float, kl: float, target: float, n: int, horizon: int) -> float:
    """Adaptive KL controller (Ziegler et al. 2019): move beta towards the KL target,
    by a proportional error clipped to +-0.2, scaled by n responses / horizon."""
    error = min(max(kl / target - 1, -0.2), 0.2)
    return beta * (1 + error * n / horizon)
