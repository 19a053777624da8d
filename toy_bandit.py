"""toy_bandit.py: the log-derivative trick you can see, checked against exact answers.

A K-armed bandit is RL for language models in miniature: the query x is fixed, each arm a is a
"response", pi_theta(a) = softmax(theta)_a the policy, r(a) the reward, pi_ref a reference policy.
Everything has an exact answer, so each sampled quantity is printed beside it:
  1. J(theta) = sum_a pi_theta(a) r(a) and its exact gradient pi * (r - J).
  2. The log-derivative estimator from N samples: error falls like 1/sqrt(N); a baseline keeps
     the mean and lowers the variance.
  3. Gradient ascent with sampled gradients walks the policy from uniform to the best arm.
  4. J - beta KL(pi_theta || pi_ref) has the closed-form optimum pi* ~ pi_ref exp(r / beta);
     sampled ascent lands on it; beta slides it from "best arm only" to "stay at pi_ref".
  5. Sampling temperature T (sample from softmax(theta / T)) keeps more arms in play and escapes
     a poor start: the lecture's tip "moderate beta, raise the temperature to explore".
  6. Where the KL goes: in the reward (above), or in the loss as Schulman's k1, k2 or k3 (GRPO's
     per-token k3). Each placement's expected step, by enumeration, beside its closed form; exact
     ascent finds its fixed point: only k1 in the reward and k2 as a loss reach pi*. GRPO's std
     division turns a KL loss's beta into beta * sigma_pi(r), which shrinks as pi concentrates.
Signpost: in minippo an arm is a whole response y, log pi(y|x) a sum of token log-probs, r a reward
function; the estimator and the KL folded into the reward are the same, only pi is a network.
numpy only, so the math is explicit; tests/test_toy_bandit.py checks it against torch autograd."""
import argparse
import json
import math
import numpy as np

def log_policy(theta, temperature=1.0):
    z = theta / temperature
    z = z - z.max()                                       # shift for stability; softmax unchanged
    return z - np.log(np.exp(z).sum())                    # log pi(a) = z_a - log sum_b exp(z_b)

def policy(theta, temperature=1.0):
    return np.exp(log_policy(theta, temperature))         # pi_theta(a) = softmax(theta / T)_a

def objective(theta, r, beta=0.0, log_ref=None, temperature=1.0):
    """L = J - beta KL(pi_theta || pi_ref) = sum_a pi(a) [r(a) - beta log(pi(a) / pi_ref(a))]."""
    logpi = log_policy(theta, temperature)
    kl = np.exp(logpi) @ (logpi - log_ref) if beta else 0.0  # KL = sum_a pi log(pi / pi_ref)
    return float(np.exp(logpi) @ r - beta * kl)              # J = sum_a pi(a) r(a)

def exact_grad(theta, r, beta=0.0, log_ref=None, temperature=1.0):
    """Exact dL/dtheta, derived in the lecture's order (beta = 0, T = 1 first):
    (1) write the expectation: J = E_{a~pi_theta}[r(a)] = sum_a pi_theta(a) r(a)
    (2) take the gradient:     grad J = sum_a grad pi_theta(a) r(a)  (r does not depend on theta)
    (3) grad pi = pi grad log pi, the log-derivative trick:
                               grad J = sum_a pi_theta(a) r(a) grad log pi_theta(a)
    (4) that is an expectation again, so samples estimate it:
                               grad J = E_{a~pi_theta}[r(a) grad log pi_theta(a)]
    Softmax: grad log pi(a) = e_a - pi, so grad J = sum_a pi(a) r(a) (e_a - pi) = pi * (r - J).
    KL: L = sum_a pi(a) r~(a) with r~(a) = r(a) - beta log(pi(a) / pi_ref(a)); the extra term
    sum_a pi(a) grad r~(a) = -beta sum_a grad pi(a) = -beta grad 1 = 0, so grad L = pi * (r~ - L):
    the same formula with the KL folded into the reward. Temperature T divides everything by T."""
    logpi = log_policy(theta, temperature)
    pi = np.exp(logpi)
    shaped = r - beta * (logpi - log_ref) if beta else r  # r~ = r - beta log(pi / pi_ref), per arm
    return pi * (shaped - pi @ shaped) / temperature      # grad L = pi * (r~ - L) / T

def grad_log_pi(pi, a, temperature=1.0):
    """grad_theta log pi_theta(a) of each sampled arm a: (e_a - pi) / T, one row per sample."""
    return (np.eye(len(pi))[a] - pi) / temperature  # d log pi(a)/d theta_b = (1[a = b] - pi_b)/T

def sample_grad(theta, r, n, rng, beta=0.0, log_ref=None, temperature=1.0, noise=0.0,
                baseline=True, repeats=None):
    """Log-derivative estimate of grad L from n samples a_i ~ pi_theta: shape (K,), or
    (repeats, K) for that many independent estimates. Unbiased with or without the baseline."""
    logpi = log_policy(theta, temperature)
    pi, cdf = np.exp(logpi), np.cumsum(np.exp(logpi))
    u = rng.random((repeats or 1, n)) * cdf[-1]           # a_i ~ pi_theta by inverse CDF: the
    a = cdf.searchsorted(u, side="right")                 # first arm whose cdf exceeds u_i; (R, N)
    rew = r[a]                                            # r(a_i)
    if noise:
        rew = rew + noise * rng.standard_normal(a.shape)  # noisy, like a learned reward model
    if beta:
        rew = rew - beta * (logpi[a] - log_ref[a])        # r - beta log(pi / pi_ref): KL in reward
    # b_i = mean reward of the OTHER samples: independent of a_i, so E[b_i grad log pi(a_i)] =
    # b_i sum_a grad pi(a) = b_i grad 1 = 0 and the mean is unchanged. A batch mean that includes
    # r_i itself would shrink the expected gradient by (N - 1) / N. (This is RLOO; GRPO uses the
    # group mean, PPO in minippo a learned value function: all are baselines for the same reason.)
    b = (rew.sum(1, keepdims=True) - rew) / (n - 1) if baseline and n > 1 else 0.0  # N = 1: none
    g = (rew - b)[..., None] * grad_log_pi(pi, a, temperature)  # (r_i - b_i) grad log pi(a_i)
    return g.mean(1) if repeats else g.mean(1)[0]   # 1/N sum_i of (R, N, K): (R, K) or (K,)

def closed_form(r, beta, log_ref):
    """argmax_pi J - beta KL(pi || pi_ref) = pi_ref exp(r / beta) / Z, Z = E_{pi_ref}[exp(r/beta)],
    with value J* = beta log Z. At pi* each arm's shaped reward r(a) - beta log(pi*(a) / pi_ref(a))
    is J*, so (noise-free) even the sampled gradient with a baseline is exactly zero there. r / beta
    can overflow to inf; r - max r <= 0 cannot, and gives the same pi* and J* for every beta > 0."""
    gap = r - r.max()                                     # 0 on the best arm(s), < 0 elsewhere
    with np.errstate(over="ignore"):                      # gap / tiny beta = -inf: exp(-inf) = 0
        z = log_ref + (gap / beta if beta else np.where(gap < 0, -np.inf, 0.0))  # beta = 0: limit
    log_z = z.max() + np.log(np.exp(z - z.max()).sum())  # log E_{pi_ref}[exp((r - max r) / beta)]
    return np.exp(z - log_z), float(r.max() + beta * log_z)  # pi*, J* = max r + beta log_z

def ascend(theta, r, rng, steps, n, lr, beta=0.0, log_ref=None, temperature=1.0, noise=0.0,
           average=False, log_every=()):
    """Gradient ascent with sampled gradients; returns final theta and [(t, theta_t) for t in
    log_every]. average=True: step lr / sqrt(1 + t/100) and theta averaged over the second half
    (Polyak averaging), so the sampling noise averages out and the run really lands."""
    history, mean_theta, half = [], np.zeros_like(theta), steps // 2
    for t in range(steps + 1):
        history.append((t, theta))
        if t > half:
            mean_theta += theta / (steps - half)  # Polyak: mean of theta over the second half
        if t < steps:
            g = sample_grad(theta, r, n, rng, beta, log_ref, temperature, noise)
            step = lr / math.sqrt(1 + t / 100) if average else lr
            theta = theta + step * g              # theta <- theta + lr * g: ascent, we maximise
    return (mean_theta if average else theta), [h for h in history if h[0] in log_every]

def reference_policy(k):
    """Fixed log pi_ref that prefers middle arms, like a pretrained model fond of safe answers."""
    return log_policy(-0.7 * np.abs(np.arange(k) - (k - 1) / 2))

def tv(p, q):
    return 0.5 * float(np.abs(p - q).sum())              # total variation: 1/2 sum_a |p(a) - q(a)|

def fmt(v, f="{:6.3f}"):
    return " ".join(f.format(x) for x in np.round(v, 6) + 0.0)   # + 0.0 turns -0.0 into 0.0

def row(p, width=12):
    """p as numbers, then the whole distribution in one bar: arm a's share drawn with its digit."""
    edges = np.round(np.cumsum(p) / np.sum(p) * width).astype(int)
    bar = "".join(str(a % 10) * (e - s) for a, (s, e) in enumerate(zip([0, *edges], edges)))
    return f"{fmt(p)} | {bar}"

def estimator_stats(theta, r, n, rng, repeats, noise=0.0):
    """`repeats` estimates without and with baseline, same samples, against the exact grad."""
    g, seed, out = exact_grad(theta, r), int(rng.integers(2**31)), {"N": n}
    for name, baseline in (("none", False), ("baseline", True)):
        est = sample_grad(theta, r, n, np.random.default_rng(seed), noise=noise,
                          baseline=baseline, repeats=repeats)             # (R, K)
        var = float(((est - est.mean(0)) ** 2).sum(1).mean())  # E|g - E g|^2, summed over arms
        se = max(math.sqrt(var / repeats), 1e-300)             # std. error of the mean of est
        rms = float(np.sqrt(((est - g) ** 2).sum(1).mean()))   # sqrt E|g - grad J|^2
        out[name] = {"rms_error": rms, "variance": var,
                     "bias_in_se": float(np.linalg.norm(est.mean(0) - g) / se)}
    return out

def finite(x):
    """JSON has no NaN or Infinity: such a figure is written as null."""
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x

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


def parse_args(argv=None):
    p = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="K-armed bandit: the log-derivative trick checked against exact answers.")
    p.error = lambda message: p.exit(2, f"error: {message}\n")  # one stderr line, no usage dump
    arg = p.add_argument
    arg("--rewards", default="1.0,0.8,0.5,0.2,0.0",
        help="reward r(a) per arm, comma-separated, >= 2 arms (negative first: --rewards=-1,0,1)")
    arg("--beta", type=float, default=0.1,
        help="KL penalty coefficient (>= 0); part 4 also runs beta/10 and beta*10; part 6 uses it")
    arg("--samples", type=int, default=16, help="samples N per gradient step (>= 1)")
    arg("--steps", type=int, default=2000, help="gradient steps per ascent run (>= 1)")
    arg("--lr", type=float, default=2.0, help="learning rate of the gradient ascent (> 0)")
    arg("--temperature", type=float, default=2.0,
        help="hot sampling temperature T (> 0) that part 5 compares with 0.5, 1 and 2T")
    arg("--seed", type=int, default=0, help="random seed; same seed, same output")
    arg("--noise", type=float, default=0.0, help="std of Gaussian noise on each reward (>= 0)")
    arg("--json", action="store_true", help="print a machine-readable summary, not tables")
    a = p.parse_args(argv)
    try:
        a.r = np.array([float(x) for x in a.rewards.split(",")])
    except ValueError:
        p.error(f"--rewards={a.rewards!r}: must be comma-separated numbers, e.g. 1.0,0.8,0.2")
    rules = [("rewards", len(a.r) >= 2, "needs at least 2 arms"),
             ("rewards", np.isfinite(a.r).all(), "must be finite (no nan, inf)"),
             *[(f, math.isfinite(getattr(a, f)), "must be a finite number")
               for f in ("beta", "lr", "temperature", "noise")],
             ("beta", a.beta >= 0, "must be >= 0"), ("noise", a.noise >= 0, "must be >= 0"),
             ("lr", a.lr > 0, "must be > 0"), ("temperature", a.temperature > 0, "must be > 0"),
             ("steps", a.steps >= 1, "must be >= 1"), ("samples", a.samples >= 1, "must be >= 1"),
             ("seed", a.seed >= 0, "must be >= 0"),
             # beyond these the exact answers overflow (exp(r / beta)) or the run takes hours
             ("rewards", len(a.r) <= 1000 and np.abs(a.r).max() <= 1e3, "at most 1000 arms, each |r| <= 1000"),
             ("steps", a.steps <= 10 ** 6, "must be <= 1000000"), ("samples", a.samples <= 10 ** 5, "must be <= 100000"),
             ("seed", a.seed < 2 ** 63, "must be < 2^63"), ("noise", a.noise <= 1e3, "must be <= 1000"),
             ("lr", a.lr <= 1e3, "must be <= 1000"), ("beta", a.beta <= 1e3, "must be <= 1000"),
             ("temperature", 1e-3 <= a.temperature <= 1e3, "must be in [0.001, 1000]")]
    for name, ok, allowed in rules:             # the first broken rule wins: one line, exit code 2
        if not ok:
            p.error(f"--{name}={getattr(a, name)}: {allowed}")
    return a

def main(argv=None):
    args = parse_args(argv)
    r, k, rng = args.r, len(args.r), np.random.default_rng(args.seed)
    log_ref, best, theta = reference_policy(k), int(np.argmax(r)), np.zeros(k)
    say = (lambda *a: None) if args.json else print
    out = {"rewards": r.tolist(), "pi_ref": np.exp(log_ref).tolist(), "best_arm": best,
           "estimates": [], "kl_runs": [], "temperature_runs": []}
    arms = "".join(f"{f'a={a}':>7}" for a in range(k))              # column heads, one per arm
    climb = lambda th, **kw: ascend(th, r, rng, n=args.samples, lr=args.lr, noise=args.noise, **kw)
    # ---- 1. the objective and its exact gradient at the uniform policy ------------------------
    out["J"], out["exact_grad"] = objective(theta, r), exact_grad(theta, r).tolist()
    say(f"toy bandit: K = {k} arms, r = {fmt(r, '{:.2f}')}, reward noise std {args.noise}, seed "
        f"{args.seed}\n\n1) theta = 0 (uniform pi): J = sum_a pi(a) r(a) = {out['J']:.3f}\n"
        f"   exact grad J = pi * (r - J) = {fmt(exact_grad(theta, r), '{:+.3f}')}")
    # ---- 2. the log-derivative estimator: error ~ 1/sqrt(N); a baseline lowers the variance --
    repeats, cell, kinds = 100, " {:>7}{:>10}", ("none", "baseline")
    cols = [("RMS error of g", "rms_error", 0, ".4f"), ("error x sqrt(N)", "rms_error", .5, ".3f"),
            ("variance of g", "variance", 0, ".1e"), ("bias / std.err", "bias_in_se", 0, ".2f")]
    say(f"\n2) estimate g = 1/N sum_i (r(a_i) - b_i)(e_(a_i) - pi), a_i ~ pi, {repeats} repeats "
        "per N;\n   b_i = 0 (none) or the mean reward of the other N - 1 samples (baseline; N = 1 "
        "has none)\n        N |" + " |".join(f"{head:>18}" for head, *_ in cols)
        + "\n          |" + " |".join([cell.format(*kinds)] * 4))
    for n in (1, 10, 100, 1000, 10000):
        out["estimates"].append(s := estimator_stats(theta, r, n, rng, repeats, args.noise))
        pairs = [[f"{s[m][key] * n**p:{f}}" for m in kinds] for _, key, p, f in cols]
        say(f"{n:>9} |" + " |".join(cell.format(*pair) for pair in pairs))
    # ---- 3. gradient ascent with sampled gradients: uniform -> best arm -----------------------
    marks = [t for t in (0, 10, 30, 100, 300, 1000, 3000, 10000) if t < args.steps] + [args.steps]
    theta, hist = climb(np.zeros(k), steps=args.steps, log_every=marks)
    out["final_policy"] = policy(theta).tolist()
    say(f"\n3) sampled gradient ascent on J (beta = 0) from uniform, N = {args.samples} per step, "
        f"lr = {args.lr}\n     step      J |{arms} | pi as a bar: arm a's share in a's digit")
    for t, pi in ((t, policy(th)) for t, th in hist):
        say(f"{t:>9}  {pi @ r:5.3f} | {row(pi, 30)}")
    # ---- 4. KL penalty: maximise J - beta KL(pi || pi_ref); closed form pi* ~ pi_ref exp(r/beta)
    say(f"\n4) maximise J - beta KL(pi_theta || pi_ref): sampled ascent from pi_ref, {args.steps} "
        "steps of lr/sqrt(1+t/100),\n   theta averaged over the 2nd half. Top row: learned "
        f"pi_theta; bottom row: pi* = pi_ref exp(r/beta)/Z\n   pi_ref | {row(np.exp(log_ref))}\n"
        f"     beta |{arms} | bar          |   TV   |   J     KL   J-b*KL (J* below)")
    for beta in sorted({args.beta / 10, args.beta, args.beta * 10}):
        theta, _ = climb(log_ref, steps=args.steps, beta=beta, log_ref=log_ref, average=True)
        pi, (pi_star, j_star) = policy(theta), closed_form(r, beta, log_ref)
        kl = float(pi @ (log_policy(theta) - log_ref))               # KL = sum_a pi log(pi/pi_ref)
        out["kl_runs"].append(run := {
            "beta": beta, "policy": pi.tolist(), "closed_form": pi_star.tolist(),
            "J": float(pi @ r), "KL": kl, "objective": objective(theta, r, beta, log_ref),
            "J_star": j_star, "tv": tv(pi, pi_star)})
        say(f"{beta:>9.3g} | {row(pi)} | {run['tv']:.4f} | {pi @ r:.3f}  {kl:.3f}  "
            f"{run['objective']:.3f}\n          | {row(pi_star)} |        |{' ' * 15}{j_star:.3f}")
        if beta == args.beta:
            out["closed_form_optimum"], out["tv_distance"] = run["closed_form"], run["tv"]
    # ---- 5. sampling temperature: explore from a poor start -----------------------------------
    poor, steps5, seeds = int(np.argsort(r)[-2]), min(args.steps, 400), 8
    marks5 = [steps5 // 10, steps5 // 4, steps5 // 2, steps5]
    start = np.where(np.arange(k) == poor, 4.0, 0.0)                 # pi(poor arm) ~ 0.93 at T = 1
    say("\n5) temperature: sample a_i ~ softmax(theta / T) and ascend that policy's log-derivative"
        f" gradient\n   (beta = 0) from a poor start, pi(a={poor}) = {policy(start)[poor]:.2f}"
        f" with r = {r[poor]:.2f}; mean of {seeds} seeds\n        T | arms in play | pi(best arm)"
        " at T = 1 after step | greedy is | mean r\n          | exp(H) t = 0 |"
        + "".join(f"{t:>8}" for t in marks5) + "  | best arm  | sampled")
    for temp in sorted({0.5, 1.0, args.temperature, 2 * args.temperature}):
        p_best, greedy, mean_r = np.zeros(len(marks5)), 0.0, 0.0
        for _ in range(seeds):
            _, hist = climb(start, steps=steps5, temperature=temp, log_every=range(steps5 + 1))
            p_best += [policy(hist[t][1])[best] / seeds for t in marks5]  # as deployed, at T = 1
            greedy += (r[np.argmax(hist[-1][1])] == r.max()) / seeds  # argmax theta: any T agrees
            mean_r += np.mean([policy(th, temp) @ r for _, th in hist]) / seeds  # exploring's cost
        in_play = math.exp(-policy(start, temp) @ log_policy(start, temp))  # exp(H): 1 = one arm
        out["temperature_runs"].append(dict(T=temp, arms_in_play=in_play, p_best=p_best.tolist(),
                                            greedy_best=greedy, mean_sampled_reward=mean_r))
        say(f"{temp:>9.3g} | {in_play:8.2f}     |" + "".join(f"{p:8.3f}" for p in p_best)
            + f"  | {greedy:6.0%}    | {mean_r:.3f}")
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
