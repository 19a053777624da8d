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
Part 6, where the KL goes (in the reward, or in the loss as Schulman's k1, k2, k3), is toy_kl.py.
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

# the command line, --json aside: flag: (default, help). toy_kl.py offers three, checked the same
FLAGS = {
    "rewards": ("1.0,0.8,0.5,0.2,0.0", "reward r(a) per arm, comma-separated, >= 2 arms "
                "(negative first: --rewards=-1,0,1)"),
    "beta": (0.1, "KL penalty coefficient (>= 0); part 4 also runs beta/10 and beta*10"),
    "samples": (16, "samples N per gradient step (>= 1)"),
    "steps": (2000, "gradient steps per ascent run (>= 1)"),
    "lr": (2.0, "learning rate of the gradient ascent (> 0)"),
    "temperature": (2.0,
                    "hot sampling temperature T (> 0) that part 5 compares with 0.5, 1 and 2T"),
    "seed": (0, "random seed; same seed, same output"),
    "noise": (0.0, "std of Gaussian noise on each reward (>= 0)")}

def parse_args(argv=None, flags=FLAGS, description="K-armed bandit: the log-derivative trick "
               "checked against exact answers."):
    """The flags offered (all of FLAGS, or toy_kl.py's few), every value checked; one not offered
    keeps its default from FLAGS."""
    p = argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                description=description)
    p.error = lambda message: p.exit(2, f"error: {message}\n")  # one stderr line, no usage dump
    p.set_defaults(**{name: default for name, (default, _) in FLAGS.items()})
    for name, (default, help) in flags.items():
        p.add_argument(f"--{name}", type=type(default), default=default, help=help)
    p.add_argument("--json", action="store_true",
                   help="print a machine-readable summary, not tables")
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
    if args.json:
        print(json.dumps(finite(out), indent=1, allow_nan=False))

if __name__ == "__main__":
    main()
