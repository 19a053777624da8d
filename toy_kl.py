"""toy_kl.py: where the KL goes, part 6 of the toy bandit (toy_bandit.py) in a file of its own, and
part 7: what a token does to the KL of the tokens after it.

The lecture's objective is J - beta KL(pi_theta || pi_ref), and its optimum is known in closed form:
pi* proportional to pi_ref exp(r / beta) (toy_bandit.py, part 4). Code that trains a policy must
still decide where the term goes. PPO-style RLHF subtracts beta k1 = beta log(pi / pi_ref) from each
sample's reward; GRPO instead adds beta times Schulman's k3 to each sampled token's loss; libraries
multiply k3 by the ratio pi / pi_old (TRL), keep k3's value with k2's gradient (verl's k3+), put k3
in the reward, or weigh log pi(y_t) by the KL still to come (Tang & Munos 2025). All of them estimate
the same KL, but a loss term acts through its gradient, and the gradients differ in expectation.
Which placements make the policy settle at pi*?
6) On the same K-armed bandit, one token, everything is exact; for each placement this prints:
  - its expected step E_(a~pi)[step], enumerated over the arms, beside its closed form;
  - where exact ascent along that step settles, beside the fixed point in closed form: k1 in the
    reward, k2 as a loss and the four with k2's gradient reach pi*; k1 as a loss drops the KL
    altogether, k3 as a loss optimises the forward KL(pi_ref || pi), k3 with its ratio inverted
    chi2(pi || pi_ref) / 2, and k3 in the reward starves every arm but one, not always the best;
  - GRPO's division of each advantage by its group's std: with the KL as a loss, beta becomes
    beta_eff = beta * sigma_pi(r), which shrinks as pi concentrates.
7) Two tokens, y = (a, b), where a sets the KL that b will cost: each placement applied per token as
   the loop applies it, its expected step enumerated over the 9 responses beside its closed form,
   exact ascent, J - beta KL and the gap there. Only the placements in the reward and the KL to come
   carry b's KL back to a, and of those k3 in the reward keeps its own bias; every per-token loss
   stops short of pi*, however exact on one token. (GRPO's std is part 6's alone.)
numpy only, like toy_bandit.py, whose pieces it imports; tests/test_toy_kl.py checks it against
torch autograd."""
import json
import math
import numpy as np

from toy_bandit import (FLAGS, closed_form, exact_grad, finite, fmt, grad_log_pi, log_policy,
                        parse_args, policy, reference_policy, row, tv)

# ---- 6. where the KL goes: in the reward, or in the loss as k1, k2 or k3 (GRPO) ---------------
PLACEMENTS = ("k1 in reward", "k1 as loss", "k2 as loss", "k3 as loss", "k3 inverted",
              "k3 in reward", "k3 x ratio", "k3 st", "ratio x k1", "KL to come")
FLAG = {"k1 in reward": "reward", "k1 as loss": "k1", "k2 as loss": "k2", "k3 as loss": "k3",
        "k3 inverted": "k3_inverted", "k3 in reward": "k3_reward", "k3 x ratio": "k3_ratio",
        "k3 st": "k3_st", "ratio x k1": "ratio_k1", "KL to come": "seq"}  # train.py --kl-penalty
IN_REWARD = {"k1 in reward": lambda d: d,                  # r~ = r - beta k1 = r - beta d
             "k3 in reward": lambda d: np.expm1(-d) + d}   # r~ = r - beta k3, k3 = rho - 1 - log rho
SEQUENCE = ("k1 in reward", "k3 in reward", "KL to come")  # see the tokens after t (part 7)

def kl_weight(placement, d):
    """A loss term beta k on a sample a ~ pi_old = pi, d = log pi(a) - log pi_ref(a), has the gradient
    beta k'(d) grad log pi(a): the sample and pi_ref are not differentiated, and the ratio
    pi / pi_old is 1 with the gradient grad log pi. This is the weight k'(d), rho = exp(-d):"""
    return {"k1 as loss": lambda: np.ones_like(d),  # k1 = d = -log rho                  k1' = 1
            "k2 as loss": lambda: d,                # k2 = d^2 / 2                       k2' = d
            "k3 as loss": lambda: 1 - np.exp(-d),   # k3 = rho - 1 - log rho (GRPO)      k3' = 1 - rho
            "k3 inverted": lambda: np.exp(d) - 1,   # w - 1 - log w, w = 1 / rho         k'  = w - 1
            "k3 x ratio": lambda: d,                # ratio k3 (TRL): k3 + k3' = d, at ratio 1
            "k3 st": lambda: d,                     # k3's value, k2's gradient (verl k3+)
            "ratio x k1": lambda: d + 1,            # ratio d (open-instruct): d + 1
            "KL to come": lambda: d,                # the KL still to come: on one token, d
            }[placement]()

def group_std(pi, r):
    return math.sqrt(pi @ (r - pi @ r) ** 2)  # sigma_pi(r): GRPO's group std of r as G -> inf

def sample_steps(theta, r, beta, log_ref, placement, std=False):
    """The ascent step of each arm a as the sample, one row per arm: A(a) grad log pi(a) minus the
    KL loss term's gradient. A = r - E_pi r (GRPO's group mean, G large), divided by sigma_pi(r)
    with std; KL in the reward: A = r~ - E_pi r~, r~ = r - beta k(d), taken as data (as exact_grad)."""
    logpi = log_policy(theta)
    pi, d = np.exp(logpi), logpi - log_ref
    sigma = (group_std(pi, r) or 1.0) if std else 1.0     # sigma = 0: A = 0 wherever pi > 0
    if placement in IN_REWARD:
        shaped = r - beta * IN_REWARD[placement](d)                 # r~ = r - beta k(d)
        coef = (shaped - pi @ shaped) / sigma                       # A = (r~ - E_pi r~) / sigma
    else:
        coef = (r - pi @ r) / sigma - beta * kl_weight(placement, d)  # A(a) - beta k'(d(a))
    return coef[:, None] * grad_log_pi(pi, np.arange(len(r)))  # row a: step if a is sampled

def kl_direction(theta, r, beta, log_ref, placement, std=False):
    """E_{a~pi}[step] in closed form, from sum_a pi(a) f(a) (e_a - pi) = pi * (f - E_pi f), any f:
      k1 in reward  pi * (r~ - E r~)                   = exact_grad, grad of J - beta KL(pi||pi_ref)
      k1 as loss    pi * (r - J) - beta pi * (1 - 1)   = grad J: E[grad log pi] = 0, the KL is gone
      k2 as loss    pi * (r - J) - beta pi * (d - E d) = exact_grad again, on-policy; and so are
                    k3 x ratio, k3 st, ratio x k1 (pi * (1 - 1) = 0) and the KL to come, on one token
      k3 as loss    pi * (r - J) - beta (pi - pi_ref)  ; pi - pi_ref = grad KL(pi_ref||pi): forward
      k3 inverted   pi * (r - J) - beta pi * (w - E w) ; = grad chi2(pi||pi_ref) / 2, w = pi/pi_ref
      k3 in reward  pi * (r - J) - beta (pi * (d - E d) - (pi - pi_ref)), as E_pi[rho] = 1
                    = grad of J - beta (KL(pi||pi_ref) - KL(pi_ref||pi)): starving an arm pays
    std divides the advantage part by sigma_pi(r): with the KL in the reward, all of it."""
    logpi = log_policy(theta)
    pi, d = np.exp(logpi), logpi - log_ref
    sigma = (group_std(pi, r) or 1.0) if std else 1.0
    if placement == "k1 in reward":
        return exact_grad(theta, r, beta, log_ref) / sigma            # pi * (r~ - E r~) / sigma
    kl_part = pi * (d - pi @ d)                                       # grad KL(pi || pi_ref)
    penalty = {"k1 as loss": lambda: np.zeros_like(pi),               # sum_a pi(a) (e_a - pi) = 0
               "k3 as loss": lambda: pi - np.exp(log_ref),            # pi - pi_ref
               "k3 inverted": lambda: pi * (np.exp(d) - pi @ np.exp(d)),  # pi * (w - E_pi w)
               "k3 in reward": lambda: kl_part - (pi - np.exp(log_ref)),
               }.get(placement, lambda: kl_part)()                    # k2 and the three like it
    if placement == "k3 in reward":
        return (pi * (r - pi @ r) - beta * penalty) / sigma           # all of r~ is divided
    return pi * (r - pi @ r) / sigma - beta * penalty       # grad J / sigma - beta E[grad k]

def bisect(f, lo, hi):
    """The root of f in [lo, hi] by halving, where f > 0 left of the root and f <= 0 right of it."""
    while lo < (mid := (lo + hi) / 2) < hi:
        lo, hi = (mid, hi) if f(mid) > 0 else (lo, mid)
    return mid

def kl_fixed_point(r, beta, log_ref, placement, ended=None):
    """Where kl_direction = 0 (pi > 0, or its limit 0 on arms the ascent starves), in closed form:
      k1 in reward, k2 as loss and the four like it: pi* = pi_ref exp(r/beta) / Z, the argmax of
                   J - beta KL(pi||pi_ref)
      k1 as loss:  beta = 0's answer, pi_ref on the best arm(s): ascent only tends to it
      k3 as loss:  r(a) + beta pi_ref(a) / pi(a) = c, so pi = beta pi_ref / (c - r) with c > max r,
                   sum = 1: the argmax of J - beta KL(pi_ref || pi), the FORWARD KL
      k3 inverted: r(a) - beta pi(a)/pi_ref(a) = lam on pi > 0: pi = pi_ref max(0, r - lam) / beta,
                   sum = 1 (water-filling): the argmax of J - beta chi2(pi || pi_ref) / 2
      k3 in reward: one arm. An arm pi starves pays beta pi_ref(a) / pi(a) each time it is drawn,
                   so it starves further, for ever: that steady push (beta pi_ref(a) on its logit)
                   moves mass to the larger of the arms left, until one holds all of pi (or
                   arms tied in r and pi_ref share it). Which one is the path's choice: the arm
                   where the ascent `ended` (a policy) is largest
    c, lam by bisection on u = (c - max r) / beta in (0, 1] and v = (max r - lam) / beta."""
    if placement in ("k1 in reward", "k2 as loss", "k3 x ratio", "k3 st", "ratio x k1", "KL to come"):
        return closed_form(r, beta, log_ref)[0]
    if placement == "k1 as loss":
        return closed_form(r, 0.0, log_ref)[0]
    ref = np.exp(log_ref)
    if placement == "k3 in reward":                     # all of pi on one arm: the path's
        top = np.argmax(r if ended is None else ended)  # (shared by arms tied in r and pi_ref)
        tied = (r == r[top]) & (log_ref == log_ref[top])
        return tied / tied.sum()
    with np.errstate(over="ignore"):                    # (max r - r) / tiny beta = inf: pi(a) = 0
        steep = (r.max() - r) / beta if beta else np.where(r < r.max(), np.inf, 0.0)
    if placement == "k3 as loss":                       # pi = pi_ref / (u + (max r - r) / beta)
        u = bisect(lambda u: (ref / (u + steep)).sum() - 1, 0.0, 1.0)
        return ref / (u + steep)
    v = bisect(lambda v: 1 - (ref * np.maximum(0, v - steep)).sum(), 0.0, 1 / ref[steep == 0].sum())
    return ref * np.maximum(0, v - steep)               # pi = pi_ref max(0, v - (max r - r) / beta)

def std_fixed_point(r, beta, log_ref):
    """k3 as a loss with the std: pi * (r - J) / sigma = beta (pi - pi_ref) is k3's fixed point at
    beta_eff = beta sigma, sigma = sigma_pi(r) at that very point: b = beta sigma(k3 point at b) by
    bisection. (b = 0, all on the best arm, solves it too, but sigma ~ sqrt(b) >> b pushes away.)"""
    at = lambda b: kl_fixed_point(r, b, log_ref, "k3 as loss")
    b = bisect(lambda b: beta * group_std(at(b), r) - b, 0.0, beta * (r.max() - r.min()) / 2)
    return at(b), b

def exact_ascent(theta, direction, steps, lr, log_every=()):
    """theta <- theta + lr * direction(theta), the exact expected step: no noise, deterministic."""
    history = []
    for t in range(steps + 1):
        if t in log_every:
            history.append((t, theta))
        if t < steps:
            theta = theta + lr * direction(theta)
    return theta, history

def score(pi, r, beta, log_ref):
    """J - beta KL(pi || pi_ref) of probabilities pi, with 0 log 0 = 0 (closed forms have zeros)."""
    on = pi > 0
    return float(pi @ r - beta * pi[on] @ (np.log(pi[on]) - log_ref[on]))


# ---- 7. two tokens: the KL of the token after t, per token or per sequence --------------------
# y = (a, b) from an alphabet of 3: pi(y) = pi(a) pi(b | a), r on the whole response. After a = 0 the
# rewarded b is rare under pi_ref, after a = 1 common: the first token's choice sets the KL the
# second will cost, and only a placement that carries that KL back to token 1 can weigh it.
REF_A = np.array([0.4, 0.4, 0.2])                                    # pi_ref(a)
REF_B = np.array([[0.2, 0.4, 0.4], [0.8, 0.1, 0.1], [0.3, 0.4, 0.3]])  # pi_ref(b | a), row a
R_AB = np.array([[1.0, 0.0, 0.0], [0.9, 0.0, 0.0], [0.0, 0.5, 0.0]])   # r(a, b)
WHY = {"k1 in reward": "token t's advantage holds beta times the KL of every token after it",
       "k1 as loss": "E[grad k1] = 0: the penalty is gone, per token and per sequence",
       "k2 as loss": "d_t grad log pi(y_t): token t's own KL gradient, blind to the KL after t",
       "k3 as loss": "its gradient is the forward KL(pi_ref || pi)'s, token by token",
       "k3 inverted": "its gradient is chi2(pi || pi_ref) / 2's, token by token",
       "k3 in reward": "E[k3] is the KL, but k3 as data has the gradient of KL minus forward KL",
       "k3 x ratio": "ratio d_t grad log pi(y_t): k2's per token, off-policy too (the ratio)",
       "k3 st": "k2's gradient under k3's value: per token, as k2 (off-policy: no ratio)",
       "ratio x k1": "ratio (d_t + 1) grad log pi(y_t): k3 x ratio's plus a term of mean 0",
       "KL to come": "grad log pi(y_t) weighed by sum_{s >= t} d_s, the KL still to come"}

def two_policy(theta):
    """theta = (theta_a (3,), theta_b (3, 3)) -> pi(a), pi(b | a) (row a), each a softmax."""
    return policy(theta[0]), np.array([policy(t) for t in theta[1]])

def two_log_b(theta):
    return np.array([log_policy(t) for t in theta[1]])   # log pi(b | a), finite where pi underflows

def two_sample_steps(theta, beta, placement):
    """Each response y = (a, b) as the sample: the step on (theta_a, theta_b) that the loop's loss
    takes, sum_t c_t grad log pi(y_t | y_<t) with c_t = A - beta k'(d_t) (loss terms; the KL to come:
    k' = d_t + d_(t+1)), or A from r~ = r - beta sum_t k(d_t) (in the reward), A = R - E_pi R."""
    (pa, pb), k = two_policy(theta), len(REF_A)
    d_a, d_b = log_policy(theta[0]) - np.log(REF_A), two_log_b(theta) - np.log(REF_B)
    pi_y = pa[:, None] * pb                                             # pi(a, b)
    if placement in IN_REWARD:
        cost = IN_REWARD[placement]
        R = R_AB - beta * (cost(d_a)[:, None] + cost(d_b))               # r~(a, b)
    else:
        R = R_AB
    A = R - (pi_y * R).sum()                                            # R - E_pi R
    steps = {}
    for a in range(k):
        for b in range(k):
            c_a = c_b = A[a, b]
            if placement not in IN_REWARD:
                c_b -= beta * kl_weight(placement, d_b[a, b])
                c_a -= beta * (d_a[a] + d_b[a, b] if placement == "KL to come"
                               else kl_weight(placement, d_a[a]))
            step_b = np.zeros((k, k))
            step_b[a] = c_b * grad_log_pi(pb[a], b)                     # only row a moves
            steps[a, b] = (c_a * grad_log_pi(pa, a), step_b)
    return steps

def two_direction(theta, beta, placement):
    """E_{y~pi}[step] in closed form: part 6's one-token step, twice. Token b given a: the bandit of
    r(a, .) under pi_ref(. | a), weighed by pi(a). Token a: the bandit of r~(a) = E_b r(a, b), less
    beta KL(pi(.|a) || pi_ref(.|a)) for the placements that carry the KL after t (SEQUENCE)."""
    (pa, pb), log_b = two_policy(theta), np.log(REF_B)
    step_b = np.array([pa[a] * kl_direction(theta[1][a], R_AB[a], beta, log_b[a], placement)
                       for a in range(len(REF_A))])
    kl_b = (pb * (two_log_b(theta) - log_b)).sum(1)                    # KL(pi(.|a) || pi_ref(.|a))
    r_a = (pb * R_AB).sum(1) - beta * kl_b * (placement in SEQUENCE)
    return kl_direction(theta[0], r_a, beta, np.log(REF_A), placement), step_b

def two_fixed_point(beta, placement, ended=None):
    """Where two_direction = 0, in closed form: token b's part 6 fixed point given each a, then token
    a's for r~(a) at those. ended: (pi(a), pi(b | a)) where the ascent ended, for k3 in reward."""
    ended = ended or (None, [None] * len(REF_A))
    pb = np.array([kl_fixed_point(R_AB[a], beta, np.log(REF_B[a]), placement, ended[1][a])
                   for a in range(len(REF_A))])
    kl_b = np.array([kl(pb[a], REF_B[a]) for a in range(len(REF_A))])
    r_a = (pb * R_AB).sum(1) - beta * kl_b * (placement in SEQUENCE)
    return kl_fixed_point(r_a, beta, np.log(REF_A), placement, ended[0]), pb

def kl(p, q):
    """KL(p || q) of two tables, with 0 log 0 = 0 (closed forms have zeros)."""
    return float(p[p > 0] @ (np.log(p[p > 0]) - np.log(q[p > 0])))

def two_score(pa, pb, beta):
    """J - beta KL(pi || pi_ref) of the whole response: E[r] - beta (KL of a + E_a KL of b | a)."""
    kl_b = np.array([kl(pb[a], REF_B[a]) for a in range(len(REF_A))])
    return float(pa @ (pb * R_AB).sum(1) - beta * (kl(pa, REF_A) + pa @ kl_b))

def two_optimum(beta):
    """pi*(b | a) = pi_ref exp(r / beta) / Z(a); pi*(a) = pi_ref(a) exp(V(a) / beta) / Z, V(a) =
    beta log Z(a) = J* of token b's bandit; J* = beta log E_{y~pi_ref}[exp(r(y) / beta)]."""
    rows = [closed_form(R_AB[a], beta, np.log(REF_B[a])) for a in range(len(REF_A))]
    pa, j_star = closed_form(np.array([v for _, v in rows]), beta, np.log(REF_A))
    return pa, np.array([p for p, _ in rows]), j_star


KL_FLAGS = {"rewards": FLAGS["rewards"], "beta": (0.1, "KL penalty coefficient (>= 0)"),
            "steps": (2000, "exact ascent steps per placement (>= 1)")}  # checked as in toy_bandit

def main(argv=None):
    args = parse_args(argv, KL_FLAGS, "Where the KL goes: in the reward, or in the loss as k1, k2 "
                      "or k3 (GRPO) and others, on one token and on two; which placements reach pi* "
                      "~ pi_ref exp(r / beta).")
    r, k = args.r, len(args.r)
    log_ref = reference_policy(k)
    say = (lambda *a: None) if args.json else print
    out = {"rewards": r.tolist(), "pi_ref": np.exp(log_ref).tolist(), "beta": args.beta}
    arms = "".join(f"{f'a={a}':>7}" for a in range(k))              # column heads, one per arm
    say(f"toy KL, part 6 of the toy bandit: K = {k} arms, r = {fmt(r, '{:.2f}')}\n"
        f"   pi_ref | {row(np.exp(log_ref))}")
    # ---- 6. where the KL goes: in the reward, or in the loss as k1, k2, k3 (GRPO) --------------
    beta, (pi_star, j_star) = args.beta, closed_form(r, args.beta, log_ref)
    j_ref, probe = float(np.exp(log_ref) @ r), np.linspace(0, 1, k)  # a test theta, not uniform
    gap = lambda j: (j_star - j) / (j_star - j_ref) if j_star > j_ref else 0.0  # pi* 0, pi_ref 1
    marks6 = [t for t in (0, 1, 2, 5, 10, 100) if t < args.steps] + [args.steps]
    lr6 = 1 / max(0.2 * (r.max() - r.min()), beta, 1e-3)  # 5 for r in [0, 1]; less if it'd diverge
    def settle(name, std=False):                            # exact ascent along E[step] from pi_ref
        step = lambda th: kl_direction(th, r, beta, log_ref, name, std)
        return exact_ascent(log_ref, step, args.steps, lr6, log_every=marks6)
    def pair(name, label, theta, pi_fix):                   # ascent row over closed-form row
        pi = policy(theta)
        j, j_fix = score(pi, r, beta, log_ref), score(pi_fix, r, beta, log_ref)
        say(f"     {name:<14} | {row(pi)} | {tv(pi, pi_fix):.4f} | {fmt([j, gap(j)])}\n"
            f"       {label:<12} | {row(pi_fix)} |        | {fmt([j_fix, gap(j_fix)])}")
        return {"placement": name, "policy": pi.tolist(), "closed_form": pi_fix.tolist(),
                "tv": tv(pi, pi_fix), "objective": j, "gap": gap(j),
                "closed_form_objective": j_fix, "closed_form_gap": gap(j_fix)}
    say(f"\n6) where the KL goes, beta = {beta:g}: in the reward, or in the loss (GRPO: Schulman's"
        " k3 per token).\n   d = log pi(a) - log pi_ref(a), rho = pi_ref(a)/pi(a) = exp(-d), w ="
        " 1/rho; a loss term beta k(a)\n   on a sample a ~ pi steps (r(a) - J) grad log pi(a) - "
        "beta grad k(a), so on average (enumerated at\n   theta_a = a/(K-1), beside the closed "
        "form) E_(a~pi)[step] = pi*(r - J) - beta E[grad k]:\n     placement      | KL term"
        "                 | E_(a~pi)[grad k]                         | max |diff|")
    terms = {"k1 in reward": ("r~ = r - beta d", "none; KL in r~: pi*(r~ - E r~) in all"),
             "k1 as loss": ("k = d", "0, as E_pi[grad log pi] = 0"),
             "k2 as loss": ("k = d^2 / 2", "pi*(d-E d): the same as k1 in reward"),
             "k3 as loss": ("k = rho - 1 - log rho", "pi - pi_ref = grad KL(pi_ref||pi)"),
             "k3 inverted": ("k = w - 1 - log w", "pi*(w-E w) = grad chi2(pi||pi_ref)/2"),
             "k3 in reward": ("r~ = r - beta k3", "pi*(d-E d) - (pi - pi_ref): KL - fwd KL"),
             "k3 x ratio": ("k = ratio k3", "pi*(d-E d) at ratio 1, as k2"),
             "k3 st": ("k3, with k2's gradient", "pi*(d-E d), as k2"),
             "ratio x k1": ("k = ratio d", "pi*(d+1-E(d+1)) = pi*(d-E d), as k2"),
             "KL to come": ("k = (KL to come) log pi", "pi*(d-E d): on one token, k2's")}
    out["kl_placements"] = []
    for name in PLACEMENTS:
        enum = policy(probe) @ sample_steps(probe, r, beta, log_ref, name)  # sum_a pi(a) step(a)
        diff = float(np.abs(enum - kl_direction(probe, r, beta, log_ref, name)).max())
        out["kl_placements"].append({"enumeration_vs_closed_form": diff})
        say(f"     {name:<14} | {terms[name][0]:<23} | {terms[name][1]:<40} | {diff:.0e}")
    say(f"   Exact ascent along E[step] from pi_ref, {args.steps} steps of lr {lr6:.3g}: top row "
        "where it settles, bottom row\n   the closed-form fixed point. J-b*KL = J - beta KL(pi || "
        f"pi_ref) (J* = {j_star:.3f}, J(pi_ref) = {j_ref:.3f}),\n   gap = (J* - J-b*KL)/(J* - "
        f"J(pi_ref)): 0 at pi*, 1 at pi_ref\n     placement      |{arms} | bar          |   TV   "
        "| J-b*KL    gap")
    labels = {"k1 as loss": "best arm", "k3 as loss": "b ref/(c-r)", "k3 inverted": "water-fill",
              "k3 in reward": "its arm"}
    for run, name in zip(out["kl_placements"], PLACEMENTS):
        theta = settle(name)[0]
        pi_fix = kl_fixed_point(r, beta, log_ref, name, ended=policy(theta))
        run.update(pair(name, labels.get(name, "pi*"), theta, pi_fix))
    # ---- 6b. the group's std: GRPO divides A by sigma_pi(r), but not a KL loss term -------------
    theta, hist = settle("k3 as loss", std=True)
    pi_fix, b_eff = std_fixed_point(r, beta, log_ref)
    theta_star = np.log(np.maximum(pi_star, 1e-300))       # floored: pi*(a) can underflow to 0
    at_star = float(np.abs(kl_direction(theta_star, r, beta, log_ref, "k1 in reward", True)).max())
    say("   GRPO divides each advantage by the group's std, sigma = std of r under pi (G large). KL"
        " in the\n   reward: the whole step is divided, so it is still 0 at pi* (max |step| there "
        f"{at_star:.0e}). KL as a\n   loss: only A is, so the step is that of beta_eff = beta "
        "sigma, and sigma shrinks as pi\n   concentrates. Exact ascent of k3 as a loss with the "
        f"std:\n         step |{arms} | bar          |  sigma  beta_eff | J-b*KL    gap")
    path = [(t, policy(th), group_std(policy(th), r)) for t, th in hist]
    for t, pi, sigma in path:
        j = score(pi, r, beta, log_ref)
        say(f"    {t:>9} | {row(pi)} | {sigma:6.3f}  {beta * sigma:8.5f} | {fmt([j, gap(j)])}")
    k3 = out["kl_placements"][PLACEMENTS.index("k3 as loss")]
    say(f"   Its fixed point (without the std, k3 as a loss had gap {k3['gap']:.3f}). Closed form: "
        f"k3's fixed\n   point at beta_eff = beta sigma, sigma taken at that point: {b_eff:.5f}\n"
        f"     placement      |{arms} | bar          |   TV   | J-b*KL    gap")
    out["grpo_std"] = {
        "path": [{"step": t, "sigma": sigma, "beta_eff": beta * sigma,
                  "gap": gap(score(pi, r, beta, log_ref))} for t, pi, sigma in path],
        "beta_eff": b_eff, "k3_as_loss": k3, "k1_in_reward_step_at_pi_star": at_star,
        "k3_as_loss_std": pair("k3 loss, std", "at beta_eff", theta, pi_fix)}
    with_std = {name: gap(score(policy(settle(name, std=True)[0]), r, beta, log_ref)) for name in PLACEMENTS}
    out["grpo_std"]["gaps"] = with_std
    say(f"   Every placement with the std, exact ascent ({args.steps} steps): the gap (without: above)\n"
        + "\n".join(f"     {name:<14} {g:6.3f}" for name, g in with_std.items())
        + "\n   A loss term's beta becomes beta sigma, and sigma falls faster than the KL of "
        "concentrating rises:\n   every loss but k3 drifts to the best arm. k1 in the reward is "
        "divided with the rest: pi* stays.")
    # ---- 7. two tokens: per token or per sequence --------------------------------------------
    pa_star, pb_star, j2_star = two_optimum(beta)
    j2_ref = two_score(REF_A, REF_B, beta)
    gap2 = lambda j: (j2_star - j) / (j2_star - j2_ref) if j2_star > j2_ref else 0.0
    say(f"\n7) Two tokens, y = (a, b): pi(y) = pi(a) pi(b | a), r(a, b) on the whole response, beta ="
        f" {beta:g}.\n   The first token sets the KL the second will cost: after a = 0 the rewarded b"
        " is rare under pi_ref.\n     a | pi_ref(a) | pi_ref(b | a)     | r(a, b)           | "
        "KL(pi*(.|a) || pi_ref(.|a)) | pi*(a)")
    for a in range(len(REF_A)):
        say(f"     {a} |   {REF_A[a]:.3f}   | {fmt(REF_B[a], '{:.2f}')}    | "
            f"{fmt(R_AB[a], '{:.2f}')}    | {kl(pb_star[a], REF_B[a]):27.3f} | {pa_star[a]:.3f}")
    lr7 = 4 / max(0.2 * np.ptp(R_AB), beta, 1e-3)         # 20 for r in [0, 1]; less if it'd diverge
    steps7 = max(1, args.steps // 4)                       # part 6's lr x steps, 4 times faster
    say(f"   J* = {j2_star:.4f}, J(pi_ref) = {j2_ref:.4f}. The loop's loss weighs grad log pi(y_t) "
        "by A - beta k'(d_t), d_t\n   token t's own log pi / pi_ref. E[step] is enumerated over the"
        " 9 responses beside its closed form:\n   part 6's step for b given a, weighed by pi(a), and"
        " for a with the reward E_b r(a, b), less\n   beta KL(pi(.|a) || pi_ref(.|a)) if the "
        f"placement carries the KL after t. Exact ascent from pi_ref,\n   {steps7} steps of lr "
        f"{lr7:.3g}, beside the closed-form fixed point (TV over the 9 responses):\n"
        "     placement     --kl-penalty | diff  | pi(a) at the end     |  TV(y)  | reward    KL "
        " J-b*KL    gap | fixed gap")
    probe7 = (np.linspace(0, 1, 3), np.linspace(-1, 1, 9).reshape(3, 3))  # a test theta
    pa_probe, pb_probe = two_policy(probe7)
    out["two_tokens"] = {"pi_ref_a": REF_A.tolist(), "pi_ref_b": REF_B.tolist(), "r": R_AB.tolist(),
                         "pi_star_a": pa_star.tolist(), "objective_optimal": j2_star,
                         "objective_reference": j2_ref, "steps": steps7, "lr": lr7, "placements": []}
    for one, name in zip(out["kl_placements"], PLACEMENTS):
        enum = two_sample_steps(probe7, beta, name)
        closed = two_direction(probe7, beta, name)
        diff = max(float(np.abs(sum(pa_probe[a] * pb_probe[a, b] * enum[a, b][i]
                                    for a, b in enum) - closed[i]).max()) for i in (0, 1))
        theta = (log_ref_a := np.log(REF_A), np.log(REF_B))
        for _ in range(steps7):
            step = two_direction(theta, beta, name)
            theta = (theta[0] + lr7 * step[0], theta[1] + lr7 * step[1])
        pa, pb = two_policy(theta)
        fa, fb = two_fixed_point(beta, name, (pa, pb))
        tv_y = tv((pa[:, None] * pb).ravel(), (fa[:, None] * fb).ravel())
        j, reward = two_score(pa, pb, beta), float(pa @ (pb * R_AB).sum(1))
        kl_y = two_score(pa, pb, 0.0) - two_score(pa, pb, 1.0)    # KL(pi || pi_ref), both tokens
        row7 = {"placement": name, "flag": FLAG[name], "enumeration_vs_closed_form": diff,
                "policy_a": pa.tolist(), "closed_form_a": fa.tolist(), "tv": tv_y,
                "reward": reward, "kl": kl_y, "objective": j, "gap": gap2(j),
                "closed_form_gap": gap2(two_score(fa, fb, beta)),
                "unbiased_per_token": bool(np.abs(fb - pb_star).max() < 1e-9)}  # token b: the last
        row7["unbiased_per_sequence"] = abs(row7["closed_form_gap"]) < 1e-9
        out["two_tokens"]["placements"].append(row7)
        say(f"     {name:<13} {FLAG[name]:<12} | {diff:.0e} | {fmt(pa)}  | {tv_y:7.0e} | "
            f"{fmt([reward, kl_y, j, gap2(j)])} | {fmt([row7['closed_form_gap']])}")
    k1 = out["two_tokens"]["placements"][PLACEMENTS.index("k1 as loss")]
    if k1["tv"] > 0.01:
        say("   k1 as a loss has no fixed point: without the KL it creeps towards beta = 0's best "
            f"response, y = (0, 0)\n   (its gap there {k1['closed_form_gap']:.3f}), and is "
            f"still {k1['tv']:.2f} from it in TV after the ascent.")
    say("   Unbiased per token (token b's fixed point, the last token's, is pi*(b | a)) and per sequence"
        " (the gap 0),\n   and why:")
    for row7 in out["two_tokens"]["placements"]:
        verdict = {(True, True): "per token and per sequence", (True, False): "per token only",
                   (False, True): "per sequence only", (False, False): "neither"}[
            row7["unbiased_per_token"], row7["unbiased_per_sequence"]]
        say(f"     {row7['placement']:<13} {verdict:<27} {WHY[row7['placement']]}")
    if args.json:
        print(json.dumps(finite(out), indent=1, allow_nan=False))

if __name__ == "__main__":
    main()
