"""How close did RL get to the best possible policy? Monte Carlo estimates of J against J*.

For a query x the KL-regularised objective has a closed-form maximiser,
    pi*(y|x) = pi_ref(y|x) exp(r(x,y) / beta) / Z(x),
whose value is J*(x) = beta log Z(x) = beta log E_{y ~ pi_ref(.|x)}[ exp(r(x,y) / beta) ].
(Proof sketch: J(pi) = J*(x) - beta KL(pi || pi*), so J <= J* with equality at pi = pi*.)
We estimate J* from samples of pi_ref, J(theta) = E[r] - beta KL from fresh samples of pi_theta,
and report optimality_gap = (J* - J(theta)) / (J* - J(pi_ref)): 1 = no progress, 0 = optimal.
Everything is at the sampling temperature T: the policy being optimised is pi_theta at T.
"""
import math

import torch

from minippo.model import sample
from minippo.rollout import decode_responses, encode_prompts, response_logprobs, score


@torch.no_grad()
def draw(model, ref, vocab, prompts, reward_fn, cfg, device, chunk: int = 512, rows: int = 128):
    """Sample one response per prompt in `prompts` from `model`; return scores, KL to `ref`
    (0 when ref is None: pi_ref's own samples) and texts. Log-probs go `rows` at a time: the
    same numbers as all at once, a quarter of the peak memory."""
    scores, kls, texts = [], [], []
    for i in range(0, len(prompts), chunk):
        xs = prompts[i:i + chunk]
        ids = encode_prompts(vocab, xs, device)
        tokens, _ = sample(model, ids, cfg.max_new_tokens, cfg.temperature, vocab.eos_id)
        mask = (tokens != vocab.pad_id).float()
        ys, finished = decode_responses(vocab, tokens)
        scores.append(score(reward_fn, xs, ys, finished, device))
        texts += [x + y if done else x + y + " <no EOS>" for x, y, done in zip(xs, ys, finished)]
        if ref is None:
            kls.append(torch.zeros(len(xs), device=device))
            continue
        log_ratio = []                                  # log pi - log pi_ref per token, (B, L)
        for j in range(0, len(ids), rows):
            part = ids[j:j + rows], tokens[j:j + rows], cfg.temperature
            log_ratio.append(response_logprobs(model, *part)[0] - response_logprobs(ref, *part)[0])
        kls.append((torch.cat(log_ratio) * mask).sum(1))  # log pi(y|x) - log pi_ref(y|x), (B,)
    return torch.cat(scores).cpu().double(), torch.cat(kls).cpu().double(), texts


def optimal_value(r, beta: float):
    """J* = beta log mean exp(r / beta) over samples of pi_ref, and its standard error (delta
    method). beta = 0 is the limit: the best reward pi_ref can produce."""
    if beta == 0:
        return r.max().item(), 0.0
    w = torch.exp((r - r.max()) / beta)                       # shifted for numerical safety
    value = r.max().item() + beta * math.log(w.mean().item())
    se = beta * (w.std() / (w.mean() * math.sqrt(len(w)))).item()
    return value, se


def evaluate(policy, ref, vocab, prompts, reward_fn, cfg, device, beta: float):
    """Per-prompt estimates with cfg.eval_samples samples each, averaged over the prompts, of the
    objective with penalty coefficient `beta` (the final one, when --target-kl adapts it).
    Returns the figures and the texts of pi_ref's and pi_theta's samples."""
    n = cfg.eval_samples
    xs = [x for x in prompts for _ in range(n)]
    r_ref, _, ref_texts = draw(ref, None, vocab, xs, reward_fn, cfg, device)
    r_pol, kl_pol, pol_texts = draw(policy, ref, vocab, xs, reward_fn, cfg, device)
    j_star, r_star, kl_star, se2 = [], [], [], 0.0
    for k in range(len(prompts)):
        r = r_ref[k * n:(k + 1) * n]
        value, se = optimal_value(r, beta)
        j_star.append(value)
        se2 += se ** 2
        # pi*'s weights on pi_ref's samples: w = exp(r / beta) / sum exp(r / beta) (beta = 0: the best ones)
        best = (r == r.max()).double()
        w = torch.softmax((r - r.max()) / beta, 0) if beta else best / best.sum()
        r_star.append((w @ r).item())                                  # E_pi*[r]
        kl_star.append(torch.xlogy(w, w * n).sum().item())             # KL(pi* || pi_ref) = E_pi*[log(n w)]
    j_star, r_star, kl_star = (sum(v) / len(prompts) for v in (j_star, r_star, kl_star))
    j_pol = (r_pol - beta * kl_pol).mean().item()               # J(theta) = E[r - beta KL]
    j_ref = r_ref.mean().item()                                     # KL(pi_ref || pi_ref) = 0
    out = {"objective_optimal": j_star,
           "objective_optimal_se": math.sqrt(se2) / len(prompts),
           "objective_policy": j_pol,
           "objective_policy_se": (r_pol - beta * kl_pol).std().item() / math.sqrt(len(xs)),
           "objective_reference": j_ref,
           "optimality_gap": (j_star - j_pol) / (j_star - j_ref) if j_star > j_ref else float("nan"),
           "reward_policy": r_pol.mean().item(), "reward_reference": j_ref,
           "kl_policy": kl_pol.mean().item(),
           "reward_optimal": r_star,            # J* = E_pi*[r] - beta KL(pi* || pi_ref)
           "kl_optimal": kl_star,               # J* - J(theta) = beta KL(pi_theta || pi*):
           "kl_to_optimum": (j_star - j_pol) / beta if beta else math.nan,
           "beta": beta, "eval_prompts": len(prompts), "eval_samples_per_prompt": n}
    return out, ref_texts, pol_texts
