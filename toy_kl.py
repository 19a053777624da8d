"""toy_kl.py: where the KL goes, part 6 of the toy bandit (toy_bandit.py) in a file of its own.

The lecture's objective is J - beta KL(pi_theta || pi_ref), and its optimum is known in closed form:
pi* proportional to pi_ref exp(r / beta) (toy_bandit.py, part 4). Code that trains a policy must
still decide where the term goes. PPO-style RLHF subtracts beta k1 = beta log(pi / pi_ref) from each
sample's reward; GRPO instead adds beta times Schulman's k3 to each sampled token's loss; k1 or k2
can be loss terms too. All of them estimate the same KL, but a loss term acts through its gradient,
and the gradients differ in expectation. Which placements make the policy settle at pi*?
On the same K-armed bandit everything is exact, so for each placement this prints:
  - its expected step E_(a~pi)[step], enumerated over the arms, beside its closed form;
  - where exact ascent along that step settles, beside the fixed point in closed form: only k1 in
    the reward and k2 as a loss reach pi*; k1 as a loss drops the KL altogether, k3 as a loss
    optimises the forward KL(pi_ref || pi), and k3 with its ratio inverted chi2(pi || pi_ref) / 2;
  - GRPO's division of each advantage by its group's std: with the KL as a loss, beta becomes
    beta_eff = beta * sigma_pi(r), which shrinks as pi concentrates.
numpy only, like toy_bandit.py, whose pieces it imports; tests/test_toy_kl.py checks it against
torch autograd."""
import json
import math
import numpy as np

from toy_bandit import (FLAGS, closed_form, exact_grad, finite, fmt, grad_log_pi, log_policy,
                        parse_args, policy, reference_policy, row, tv)

# ---- 6. where the KL goes: in the reward, or in the loss as k1, k2 or k3 (GRPO) ---------------
PLACEMENTS = ("k1 in reward", "k1 as loss", "k2 as loss", "k3 as loss", "k3 inverted")

def kl_weight(placement, d):
    """A loss term beta k(d(a)) on a sample a ~ pi_old = pi, d = log pi(a) - log pi_ref(a), has the
    gradient beta k'(d) grad log pi(a): the sample and pi_ref are not differentiated. This is k'(d)
    for Schulman's estimators of KL(pi || pi_ref), rho = pi_ref(a) / pi(a) = exp(-d):"""
    if placement == "k1 as loss":
        return np.ones_like(d)           # k1 = d = -log rho                       k1' = 1
    if placement == "k2 as loss":
        return d                         # k2 = d^2 / 2                            k2' = d
    if placement == "k3 as loss":
        return 1 - np.exp(-d)            # k3 = rho - 1 - log rho (GRPO)           k3' = 1 - rho
    return np.exp(d) - 1                 # inverted: w - 1 - log w, w = 1 / rho    k'  = w - 1

def group_std(pi, r):
    return math.sqrt(pi @ (r - pi @ r) ** 2)  # sigma_pi(r): GRPO's group std of r as G -> inf

def sample_steps(theta, r, beta, log_ref, placement, std=False):
    """The ascent step of each arm a as the sample, one row per arm: A(a) grad log pi(a) minus the
    KL loss term's gradient. A = r - E_pi r (GRPO's group mean, G large), divided by sigma_pi(r)
    with std; KL in the reward: A = r~ - E_pi r~, r~ = r - beta d, taken as data (as exact_grad)."""
    logpi = log_policy(theta)
    pi, d = np.exp(logpi), logpi - log_ref
    sigma = (group_std(pi, r) or 1.0) if std else 1.0     # sigma = 0: A = 0 wherever pi > 0
    if placement == "k1 in reward":
        shaped = r - beta * d                                       # r~ = r - beta d
        coef = (shaped - pi @ shaped) / sigma                       # A = (r~ - E_pi r~) / sigma
    else:
        coef = (r - pi @ r) / sigma - beta * kl_weight(placement, d)  # A(a) - beta k'(d(a))
    return coef[:, None] * grad_log_pi(pi, np.arange(len(r)))  # row a: step if a is sampled

def kl_direction(theta, r, beta, log_ref, placement, std=False):
    """E_{a~pi}[step] in closed form, from sum_a pi(a) f(a) (e_a - pi) = pi * (f - E_pi f), any f:
      k1 in reward  pi * (r~ - E r~)                   = exact_grad, grad of J - beta KL(pi||pi_ref)
      k1 as loss    pi * (r - J) - beta pi * (1 - 1)   = grad J: E[grad log pi] = 0, the KL is gone
      k2 as loss    pi * (r - J) - beta pi * (d - E d) = exact_grad again, on-policy
      k3 as loss    pi * (r - J) - beta (pi - pi_ref)  ; pi - pi_ref = grad KL(pi_ref||pi): forward
      k3 inverted   pi * (r - J) - beta pi * (w - E w) ; = grad chi2(pi||pi_ref) / 2, w = pi/pi_ref
    std divides the advantage part by sigma_pi(r): with the KL in the reward, all of it."""
    logpi = log_policy(theta)
    pi, d = np.exp(logpi), logpi - log_ref
    sigma = (group_std(pi, r) or 1.0) if std else 1.0
    if placement == "k1 in reward":
        return exact_grad(theta, r, beta, log_ref) / sigma            # pi * (r~ - E r~) / sigma
    if placement == "k1 as loss":
        penalty = np.zeros_like(pi)                                   # sum_a pi(a) (e_a - pi) = 0
    elif placement == "k2 as loss":
        penalty = pi * (d - pi @ d)                                   # pi * (d - E_pi d)
    elif placement == "k3 as loss":
        penalty = pi - np.exp(log_ref)                                # pi - pi_ref
    else:
        penalty = pi * (np.exp(d) - pi @ np.exp(d))                   # pi * (w - E_pi w)
    return pi * (r - pi @ r) / sigma - beta * penalty       # grad J / sigma - beta E[grad k]

def bisect(f, lo, hi):
    """The root of f in [lo, hi] by halving, where f > 0 left of the root and f <= 0 right of it."""
    while lo < (mid := (lo + hi) / 2) < hi:
        lo, hi = (mid, hi) if f(mid) > 0 else (lo, mid)
    return mid

def kl_fixed_point(r, beta, log_ref, placement):
    """Where kl_direction = 0 (pi > 0, or its limit 0 on arms the ascent starves), in closed form:
      k1 in reward, k2 as loss: pi* = pi_ref exp(r/beta) / Z, the argmax of J - beta KL(pi||pi_ref)
      k1 as loss:  beta = 0's answer, pi_ref on the best arm(s): ascent only tends to it
      k3 as loss:  r(a) + beta pi_ref(a) / pi(a) = c, so pi = beta pi_ref / (c - r) with c > max r,
                   sum = 1: the argmax of J - beta KL(pi_ref || pi), the FORWARD KL
      k3 inverted: r(a) - beta pi(a)/pi_ref(a) = lam on pi > 0: pi = pi_ref max(0, r - lam) / beta,
                   sum = 1 (water-filling): the argmax of J - beta chi2(pi || pi_ref) / 2
    c and lam by bisection on u = (c - max r) / beta in (0, 1] and v = (max r - lam) / beta."""
    if placement in ("k1 in reward", "k2 as loss"):
        return closed_form(r, beta, log_ref)[0]
    if placement == "k1 as loss":
        return closed_form(r, 0.0, log_ref)[0]
    ref = np.exp(log_ref)
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


KL_FLAGS = {"rewards": FLAGS["rewards"], "beta": (0.1, "KL penalty coefficient (>= 0)"),
            "steps": (2000, "exact ascent steps per placement (>= 1)")}  # checked as in toy_bandit

def main(argv=None):
    args = parse_args(argv, KL_FLAGS, "Where the KL goes: in the reward, or in the loss as k1, k2 "
                      "or k3 (GRPO); which placements reach pi* ~ pi_ref exp(r / beta).")
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
        "               | E_(a~pi)[grad k]                      | max |diff|")
    terms = {"k1 in reward": ("r~ = r - beta d", "none; KL in r~: pi*(r~ - E r~) in all"),
             "k1 as loss": ("k = d", "0, as E_pi[grad log pi] = 0"),
             "k2 as loss": ("k = d^2 / 2", "pi*(d-E d): the same as k1 in reward"),
             "k3 as loss": ("k = rho - 1 - log rho", "pi - pi_ref = grad KL(pi_ref||pi)"),
             "k3 inverted": ("k = w - 1 - log w", "pi*(w-E w) = grad chi2(pi||pi_ref)/2")}
    out["kl_placements"] = []
    for name in PLACEMENTS:
        enum = policy(probe) @ sample_steps(probe, r, beta, log_ref, name)  # sum_a pi(a) step(a)
        diff = float(np.abs(enum - kl_direction(probe, r, beta, log_ref, name)).max())
        out["kl_placements"].append({"enumeration_vs_closed_form": diff})
        say(f"     {name:<14} | {terms[name][0]:<21} | {terms[name][1]:<37} | {diff:.0e}")
    say(f"   Exact ascent along E[step] from pi_ref, {args.steps} steps of lr {lr6:.3g}: top row "
        "where it settles, bottom row\n   the closed-form fixed point. J-b*KL = J - beta KL(pi || "
        f"pi_ref) (J* = {j_star:.3f}, J(pi_ref) = {j_ref:.3f}),\n   gap = (J* - J-b*KL)/(J* - "
        f"J(pi_ref)): 0 at pi*, 1 at pi_ref\n     placement      |{arms} | bar          |   TV   "
        "| J-b*KL    gap")
    labels = {"k1 in reward": "pi*", "k1 as loss": "best arm", "k2 as loss": "pi*",
              "k3 as loss": "b ref/(c-r)", "k3 inverted": "water-fill"}
    for run, name in zip(out["kl_placements"], PLACEMENTS):
        pi_fix = kl_fixed_point(r, beta, log_ref, name)
        run.update(pair(name, labels[name], settle(name)[0], pi_fix))
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
    if args.json:
        print(json.dumps(finite(out), indent=1, allow_nan=False))

if __name__ == "__main__":
    main()
