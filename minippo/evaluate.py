"""How close did RL get to the best possible policy? Monte Carlo estimates of J against J*.

For a query x the KL-regularised objective has a closed-form maximiser,
    pi*(y|x) = pi_ref(y|x) exp(r(x,y) / beta) / Z(x),
whose value is J*(x) = beta log Z(x) = beta log E_{y ~ pi_ref(.|x)}[ exp(r(x,y) / beta) ].
(Proof sketch: J(pi) = J*(x) - beta KL(pi || pi*), so J <= J* with equality at pi = pi*.)
We estimate J* from samples of pi_ref (and pi_theta), J(theta) = E[r] - beta KL from pi_theta's,
and report optimality_gap = (J* - J(theta)) / (J* - J(pi_ref)): 1 = no progress, 0 = optimal.
Everything is at the sampling temperature T: the policy being optimised is pi_theta at T.
"""
import math

import torch

from minippo.model import sample
from minippo.rollout import decode_responses, encode_prompts, response_logprobs, score

# J* is trusted where pi*'s weights spread over this many samples of each prompt (the effective
# sample size k): beta log Z is then biased low by about beta / 2k, its error about beta / sqrt(k)
MIN_ESS = 10


@torch.no_grad()
def draw(model, ref, vocab, prompts, reward_fn, cfg, device, chunk: int = 512, rows: int = 128):
    """Sample one response per prompt in `prompts` from `model`; return scores, log model(y|x) -
    log ref(y|x) (0 when ref is None) and texts. Log-probs go `rows` at a time: the
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


def optimal_value(r, beta: float, log_q=0.0):
    """From samples y_i of q, log_q = log q/pi_ref (0: pi_ref's own) and w = exp(r / beta) pi_ref / q,
    Z = E_ref[exp(r / beta)] = E_q[w]: J* = beta log Z, its standard error (delta method), E_pi*[r],
    KL(pi* || pi_ref), the effective sample size (sum w)^2 / sum w^2. beta = 0: pi* = the best."""
    m = r.max()
    u = torch.where(r == m, 0.0, (r - m) / beta)   # log pi*/pi_ref + const, shifted for safety
    w = torch.exp(u - log_q)                # (log q / pi_ref >= -log 2 in evaluate(): no overflow)
    log_mean = torch.log(w.mean())                  # log Z - max r / beta
    value = (m + beta * log_mean).item()                            # J* = beta log Z
    se = beta * (w.std() / (w.mean() * math.sqrt(len(w)))).item()
    s = w / w.sum()                                                 # pi*'s weight on each sample
    r_star = (s @ r).item()                                         # E_pi*[r]
    kl_star = (s[s > 0] @ u[s > 0] - log_mean).item()               # E_pi*[log pi* / pi_ref]
    return value, se, r_star, kl_star, 1 / (s @ s).item()


def evaluate(policy, ref, vocab, prompts, reward_fn, cfg, device, beta: float):
    """Per-prompt estimates with cfg.eval_samples samples each, averaged over the prompts, of the
    objective with penalty coefficient `beta` (the final one, when --target-kl adapts it), and the
    texts of pi_ref's and pi_theta's samples. J* from pi_ref's n samples misses a reward they rarely
    earn: it is kept where pi*'s weights spread over MIN_ESS of them and agree with all 2n samples,
    drawn from q = (pi_ref + pi_theta) / 2, nearer pi* (pi_ref / q <= 2 bounds the weights). Else
    those give J*; if either's weights rest on fewer samples, J* is not trusted: the gap is NaN."""
    n = cfg.eval_samples
    xs = [x for x in prompts for _ in range(n)]
    r_ref, kl_ref, ref_texts = draw(ref, policy, vocab, xs, reward_fn, cfg, device)
    r_pol, kl_pol, pol_texts = draw(policy, ref, vocab, xs, reward_fn, cfg, device)
    log_q = torch.logaddexp(torch.zeros(1), torch.stack([-kl_ref, kl_pol])) - math.log(2)
    figures, mixed, ess = [], 0, math.inf   # log q / pi_ref = log (1 + pi_theta / pi_ref) / 2
    for k in range(len(prompts)):
        at = slice(k * n, (k + 1) * n)
        alone = optimal_value(r_ref[at], beta)
        both = optimal_value(torch.cat([r_ref[at], r_pol[at]]), beta, log_q[:, at].flatten())
        agree = abs(alone[0] - both[0]) <= 3 * math.hypot(alone[1], both[1])
        figures.append(alone if alone[4] >= MIN_ESS and agree else both)
        mixed += figures[-1] is both
        ess = min(ess, figures[-1][4], both[4])     # J* is trusted when ess >= MIN_ESS
    j_star, r_star, kl_star = (sum(f[i] for f in figures) / len(prompts) for i in (0, 2, 3))
    se = math.sqrt(sum(f[1] ** 2 for f in figures)) / len(prompts)
    j_pol = (r_pol - beta * kl_pol).mean().item()               # J(theta) = E[r - beta KL]
    j_ref = r_ref.mean().item()                                     # KL(pi_ref || pi_ref) = 0
    gap = (j_star - j_pol) / (j_star - j_ref) if j_star > j_ref and ess >= MIN_ESS else math.nan
    out = {"objective_optimal": j_star, "objective_optimal_se": se,
           "objective_optimal_trusted": ess >= MIN_ESS, "objective_optimal_mixture_prompts": mixed,
           "objective_optimal_ess": ess,
           "objective_policy": j_pol,
           "objective_policy_se": (r_pol - beta * kl_pol).std().item() / math.sqrt(len(xs)),
           "objective_reference": j_ref,
           "optimality_gap": gap,
           "reward_policy": r_pol.mean().item(), "reward_reference": j_ref,
           "kl_policy": kl_pol.mean().item(),
           "reward_optimal": r_star,            # J* = E_pi*[r] - beta KL(pi* || pi_ref)
           "kl_optimal": kl_star,               # J* - J(theta) = beta KL(pi_theta || pi*):
           "kl_to_optimum": (j_star - j_pol) / beta if beta and ess >= MIN_ESS else math.nan,
           "beta": beta, "eval_prompts": len(prompts), "eval_samples_per_prompt": n}
    return out, ref_texts, pol_texts
