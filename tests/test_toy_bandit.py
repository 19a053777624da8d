"""Tests for toy_bandit.py: every formula against an independent reference answer
(torch autograd, finite differences, exact enumeration over arms, the closed-form optimum)."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import toy_bandit as tb
from conftest import ROOT

R = np.array([0.2, 1.0, 0.5, 0.8, 0.0])            # best arm is 1, not 0: no lucky index
THETA = np.array([0.3, -0.5, 1.2, 0.0, -1.0])       # a non-uniform policy: no symmetry to hide errors
LOG_REF = tb.reference_policy(5)


@pytest.mark.parametrize("beta,temperature", [(0.0, 1.0), (0.0, 2.5), (0.1, 1.0), (0.5, 1.0), (2.0, 1.7)])
def test_objective_and_exact_grad_match_autograd_and_finite_differences(beta, temperature):
    th = torch.tensor(THETA, requires_grad=True)
    logpi = torch.log_softmax(th / temperature, dim=0)
    loss = (logpi.exp() * (torch.tensor(R) - beta * (logpi - torch.tensor(LOG_REF)))).sum()
    loss.backward()
    log_ref = LOG_REF if beta else None                 # beta = 0 is called without pi_ref (part 1)
    f = lambda theta: tb.objective(theta, R, beta, log_ref, temperature)  # noqa: E731
    assert f(THETA) == pytest.approx(loss.item(), abs=1e-12)
    ours = tb.exact_grad(THETA, R, beta, log_ref, temperature)
    np.testing.assert_allclose(ours, th.grad.numpy(), atol=1e-12)
    fd = [(f(THETA + d) - f(THETA - d)) / 2e-6 for d in np.eye(5) * 1e-6]  # central differences
    np.testing.assert_allclose(ours, fd, atol=1e-8)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_grad_log_pi_matches_autograd_and_sums_to_the_exact_grad(temperature):
    """Step (3) of the derivation enumerated over arms: grad J = sum_a pi(a) r(a) grad log pi(a) = pi (r - J) / T."""
    pi, log_pi = tb.policy(THETA, temperature), lambda th: torch.log_softmax(th / temperature, dim=0)
    rows = tb.grad_log_pi(pi, np.arange(5), temperature)                   # row a: grad log pi(a)
    np.testing.assert_allclose(rows, torch.autograd.functional.jacobian(log_pi, torch.tensor(THETA)), atol=1e-12)
    exact = tb.exact_grad(THETA, R, temperature=temperature)
    np.testing.assert_allclose(exact, sum(pi[a] * R[a] * rows[a] for a in range(5)), atol=1e-12)
    np.testing.assert_allclose(exact, pi * (R - pi @ R) / temperature, atol=1e-15)


@pytest.mark.parametrize("n,baseline,beta,temperature,noise,scale", [
    (8, baseline, *case, 1.0) for baseline in (False, True)
    for case in [(0.0, 1.0, 0.0), (0.0, 1.0, 0.5), (0.3, 2.0, 0.0)]] + [(2, True, 0.0, 1.0, 0.0, 0.5)])
def test_estimator_is_unbiased_and_the_check_can_fail(n, baseline, beta, temperature, noise, scale):
    """Mean of 20000 estimates within 4 standard errors of the exact gradient. The last case (a batch-mean baseline
    including r_i: (N - 1) / N times leave-one-out, N = 2) is visibly biased: the check can fail."""
    est = scale * tb.sample_grad(THETA, R, n, np.random.default_rng(1), beta, LOG_REF, temperature,
                                 noise, baseline, repeats=20000)
    exact = tb.exact_grad(THETA, R, beta, LOG_REF, temperature)
    close = np.all(np.abs(est.mean(0) - exact) < 4 * est.std(0) / np.sqrt(20000) + 1e-12)
    assert close == (scale == 1.0)


def test_baseline_lowers_variance_and_error_falls_like_one_over_sqrt_n():
    pi, g, rng = tb.policy(THETA), tb.exact_grad(THETA, R), np.random.default_rng(3)
    var1 = sum(pi[a] * np.sum((R[a] * tb.grad_log_pi(pi, np.array([a]))[0] - g) ** 2)
               for a in range(5))               # E|r(a)(e_a - pi) - grad J|^2, enumerated over arms
    for n in (1, 10, 100):
        s = tb.estimator_stats(THETA, R, n, rng, repeats=3000)
        assert s["none"]["variance"] == pytest.approx(var1 / n, rel=0.12)       # i.i.d. mean: var / N
        assert s["none"]["rms_error"] == pytest.approx(np.sqrt(var1 / n), rel=0.06)
        assert s["none"]["bias_in_se"] < 4 and s["baseline"]["bias_in_se"] < 4    # mean unchanged
        assert n == 1 or s["baseline"]["variance"] < 0.7 * s["none"]["variance"]  # N = 1: no baseline


def test_closed_form_is_the_optimum():
    for beta in (0.05, 0.3, 2.0):
        pi_star, j_star = tb.closed_form(R, beta, LOG_REF)
        theta_star = np.log(pi_star)
        assert tb.objective(theta_star, R, beta, LOG_REF) == pytest.approx(j_star, abs=1e-12)
        np.testing.assert_allclose(tb.exact_grad(theta_star, R, beta, LOG_REF), 0, atol=1e-12)
        for seed in range(5):                       # any other policy scores lower
            other = theta_star + np.random.default_rng(seed).normal(0, 0.3, 5)
            assert tb.objective(other, R, beta, LOG_REF) < j_star
    assert tb.tv(tb.closed_form(R, 1e3, LOG_REF)[0], np.exp(LOG_REF)) < 0.01     # beta large: pi_ref


@pytest.mark.parametrize("beta", [0.0, 5e-324, 1e-310, 1e-3])
@pytest.mark.parametrize("r", [R, np.where(R == 0.8, 1.0, R)], ids=["one best arm", "arms 1, 3 tie"])
def test_closed_form_as_beta_goes_to_zero(beta, r):
    """pi* -> pi_ref on the best arm(s), J* -> max r: exact and finite down to 5e-324 (r / beta overflows) and 0."""
    top = np.exp(LOG_REF) * (r == r.max())
    pi_star, j_star = tb.closed_form(r, beta, LOG_REF)
    np.testing.assert_allclose(pi_star, top / top.sum(), rtol=0, atol=1e-15)
    assert j_star == pytest.approx(r.max() + beta * np.log(top.sum()), abs=1e-15)


@pytest.mark.parametrize("beta", [0.0, 0.01, 0.1, 1.0])
def test_ascent_lands_on_closed_form(beta):
    """beta = 0: plain steps from uniform reach the best arm; beta > 0: Polyak-averaged ascent from pi_ref."""
    theta, _ = tb.ascend(LOG_REF if beta else np.zeros(5), R, np.random.default_rng(5), steps=2000, n=16,
                         lr=2.0, beta=beta, log_ref=LOG_REF, average=beta > 0)
    assert tb.tv(tb.policy(theta), tb.closed_form(R, beta, LOG_REF)[0]) < 0.01


def test_polyak_average_is_the_mean_of_the_second_half_iterates():
    """average=True returns the mean of theta_t over t in (steps/2, steps]: with lr = 0 exactly the start (8 iterates,
    exact in floating point), and otherwise the mean of the very iterates the run logged, no other."""
    still, _ = tb.ascend(THETA, R, np.random.default_rng(0), steps=16, n=4, lr=0.0, average=True)
    np.testing.assert_array_equal(still, THETA)
    theta, hist = tb.ascend(THETA, R, np.random.default_rng(0), steps=16, n=4, lr=0.5, average=True,
                            log_every=range(17))
    np.testing.assert_allclose(theta, np.mean([th for t, th in hist if t > 8], 0), rtol=1e-14)


# `toy_bandit.py --json --steps 20 ARGS`: REFUSED exit 2, one line naming the flag; ACCEPTED exit 0, all finite
REFUSED = ["--rewards=", "--rewards 1,a", "--rewards 1", "--rewards 1,inf", "--beta -1", "--beta nan",
           "--temperature 0", "--lr 0", "--steps 0", "--samples 0", "--noise -1", "--steps x",
           "--temperature 5e-324"]
ACCEPTED = ["--beta 5e-324", "--beta 1e-310 --rewards=-1000,1000", "--lr 5e-324", "--noise 5e-324",
            "--lr 1000 --temperature 1e-3 --noise 1000"]
SUMMARY = "--steps 300 --beta 1 --rewards 0.2,1.0,0.5,0.8,0.0"


@pytest.fixture(scope="module")
def runs():
    """Every command line at once, each a real subprocess."""
    procs = {args: subprocess.Popen([sys.executable, "toy_bandit.py", "--json", "--steps", "20", *args.split()],
                                    cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for args in [SUMMARY, *REFUSED, *ACCEPTED]}
    return {args: (*p.communicate(timeout=60), p.returncode) for args, p in procs.items()}


@pytest.mark.parametrize("args", REFUSED + ACCEPTED)
def test_flags_give_one_clear_line_or_finite_numbers(runs, args):
    stdout, stderr, returncode = runs[args]
    if args in REFUSED:
        lines = stderr.strip().splitlines()
        assert returncode == 2 and stdout == "" and len(lines) == 1 and args.split()[0].split("=")[0] in lines[0]
    else:                                       # --json writes NaN and inf as null; no warnings
        assert returncode == 0 and stderr == "" and json.loads(stdout) and "null" not in stdout


def test_json_summary_has_the_promised_keys_and_exact_values(runs):
    stdout, stderr, returncode = runs[SUMMARY]
    assert returncode == 0, stderr
    out = json.loads(stdout)
    assert {"exact_grad", "estimates", "final_policy", "closed_form_optimum", "tv_distance"} <= set(out)
    np.testing.assert_allclose(out["exact_grad"], tb.exact_grad(np.zeros(5), R), atol=1e-12)
    np.testing.assert_allclose(out["closed_form_optimum"], tb.closed_form(R, 1.0, LOG_REF)[0], atol=1e-12)
    assert [e["N"] for e in out["estimates"]] == [1, 10, 100, 1000, 10000]
    assert out["tv_distance"] < 0.01 and out["final_policy"][1] > 0.98


def test_same_seed_same_output(capsys):
    runs = [tb.main(["--json", "--steps", "20", "--seed", seed]) or capsys.readouterr().out for seed in "778"]
    assert runs[0] == runs[1] != runs[2]


# ---- 6. where the KL goes: in the reward, or in the loss as k1, k2, k3 ------------------------------------------
REF = torch.tensor(np.exp(LOG_REF))
DIVERGENCE = {                    # E_{a~pi}[grad of the KL term] = beta grad D(pi): D by placement, written in torch
    "k1 in reward": lambda pi: (pi * (pi / REF).log()).sum(),      # KL(pi || pi_ref): the lecture's objective
    "k1 as loss": lambda pi: 0 * pi.sum(),                         # nothing: the penalty vanishes in expectation
    "k2 as loss": lambda pi: (pi * (pi / REF).log()).sum(),        # KL(pi || pi_ref) again, on-policy
    "k3 as loss": lambda pi: (REF * (REF / pi).log()).sum(),       # the forward KL(pi_ref || pi)
    "k3 inverted": lambda pi: ((pi ** 2 / REF).sum() - 1) / 2}     # chi2(pi || pi_ref) / 2


def autograd_steps(theta, r, beta, placement, std=False):
    """Row a: minus the autograd gradient of sample a's loss -A(a) log pi(a) + beta k(a), A taken as data (r - E_pi r,
    or r~ - E_pi r~ with the KL in the reward; / the std of r under pi with std), k written with rho or w as printed."""
    rows = []
    for a in range(len(r)):
        th = torch.tensor(theta, requires_grad=True)
        logpi = torch.log_softmax(th, 0)
        pi, rho, rt = logpi.exp().detach(), REF / logpi.exp(), torch.tensor(r)
        shaped = rt - beta * (logpi.detach() - REF.log()) if placement == "k1 in reward" else rt
        adv = (shaped - pi @ shaped) / (torch.sqrt(pi @ (rt - pi @ rt) ** 2) if std else 1)
        k = {"k1 in reward": 0 * rho, "k1 as loss": -rho.log(), "k2 as loss": rho.log() ** 2 / 2,
             "k3 as loss": rho - 1 - rho.log(), "k3 inverted": 1 / rho - 1 - (1 / rho).log()}[placement]
        rows.append(-torch.autograd.grad(-adv[a] * logpi[a] + beta * k[a], th)[0].numpy())
    return np.array(rows)


@pytest.mark.parametrize("std", [False, True])
@pytest.mark.parametrize("placement", tb.PLACEMENTS)
def test_sample_steps_match_autograd_and_average_to_the_closed_form(placement, std):
    """Each arm's step as the sample is autograd of its per-sample loss; their pi-weighted sum is kl_direction."""
    rows = tb.sample_steps(THETA, R, 0.7, LOG_REF, placement, std)
    np.testing.assert_allclose(rows, autograd_steps(THETA, R, 0.7, placement, std), atol=1e-12)
    np.testing.assert_allclose(tb.policy(THETA) @ rows, tb.kl_direction(THETA, R, 0.7, LOG_REF, placement, std),
                               atol=1e-12)


@pytest.mark.parametrize("placement", tb.PLACEMENTS)
def test_expected_step_is_the_gradient_of_reward_minus_beta_divergence(placement):
    """E_{a~pi}[step], enumerated with autograd per sample, = grad (J - beta D): k1 as a loss 0 (D = 0), k2 as a loss
    the KL(pi || pi_ref) of k1 in the reward (= exact_grad), k3 the forward KL(pi_ref || pi) (beta (pi - pi_ref)),
    inverted k3 chi2 / 2; numpy's closed form agrees, and so does its penalty part alone (r = 0)."""
    th = torch.tensor(THETA, requires_grad=True)
    pi = torch.softmax(th, 0)
    (pi @ torch.tensor(R) - 0.7 * DIVERGENCE[placement](pi)).backward()
    enumerated = tb.policy(THETA) @ autograd_steps(THETA, R, 0.7, placement)
    np.testing.assert_allclose(enumerated, th.grad.numpy(), atol=1e-12)
    np.testing.assert_allclose(tb.kl_direction(THETA, R, 0.7, LOG_REF, placement), th.grad.numpy(), atol=1e-12)
    penalty = -tb.kl_direction(THETA, 0 * R, 0.7, LOG_REF, placement) / 0.7    # E[grad k]
    pi = tb.policy(THETA)
    want = {"k1 in reward": pi * (np.log(pi) - LOG_REF - pi @ (np.log(pi) - LOG_REF)), "k1 as loss": 0 * pi,
            "k3 inverted": pi * (pi / REF.numpy() - pi @ (pi / REF.numpy())), "k3 as loss": pi - REF.numpy()}
    np.testing.assert_allclose(penalty, want.get(placement, want["k1 in reward"]), atol=1e-12)


@pytest.mark.parametrize("placement", tb.PLACEMENTS)
def test_fixed_point_maximises_reward_minus_beta_divergence_and_exact_ascent_reaches_it(placement):
    """The closed-form fixed point beats every nearby policy on J - beta D (so it is D's optimum: pi* for k1 in the
    reward and k2, the best arm for k1 as a loss, forward KL's beta pi_ref / (c - r), chi2's water-filling with zeros),
    and exact ascent along kl_direction from pi_ref lands on it."""
    fix = tb.kl_fixed_point(R, 0.3, LOG_REF, placement)
    value = lambda p: float(p @ R - 0.3 * DIVERGENCE[placement](torch.tensor(p)))  # noqa: E731
    assert fix.sum() == pytest.approx(1, abs=1e-12) and fix.min() >= 0
    for q in np.random.default_rng(0).dirichlet(np.ones(5), 10):
        assert all(value((1 - eps) * fix + eps * q) < value(fix) for eps in (1e-3, 0.3))
    theta, _ = tb.exact_ascent(LOG_REF, lambda th: tb.kl_direction(th, R, 0.3, LOG_REF, placement), 2000, 3.0)
    assert tb.tv(tb.policy(theta), fix) < 2e-3              # zeros (water-filling, best arm) come like 1/t


def test_only_k1_in_the_reward_and_k2_as_a_loss_reach_pi_star():
    """gap = (J* - (J - beta KL)) / (J* - J(pi_ref)) at each fixed point: 0 for k1 in the reward and k2, > 0 else."""
    beta, ref = 0.3, REF.numpy()
    j_star = tb.closed_form(R, beta, LOG_REF)[1]
    for placement in tb.PLACEMENTS:
        fix = tb.kl_fixed_point(R, beta, LOG_REF, placement)
        j = fix @ R - beta * sum(p * np.log(p / q) for p, q in zip(fix, ref) if p > 0)    # 0 log 0 = 0
        assert tb.score(fix, R, beta, LOG_REF) == pytest.approx(j, abs=1e-12)
        gap = (j_star - j) / (j_star - ref @ R)
        assert gap == pytest.approx(0, abs=1e-12) if placement in ("k1 in reward", "k2 as loss") else gap > 0.05


def test_std_divides_a_kl_loss_into_beta_times_sigma():
    """GRPO's std: with the KL in the reward the whole step is divided by sigma = std of r under pi; with k3 as a loss
    only the advantage is, i.e. k3's step at beta_eff = beta sigma, over sigma. Its fixed point is k3's at beta sigma,
    sigma taken there, far below beta; exact ascent reaches it; its gap exceeds plain k3's."""
    pi, beta = tb.policy(THETA), 0.3
    sigma = np.sqrt(pi @ (R - pi @ R) ** 2)
    np.testing.assert_allclose(tb.kl_direction(THETA, R, beta, LOG_REF, "k1 in reward", True),
                               tb.exact_grad(THETA, R, beta, LOG_REF) / sigma, atol=1e-12)
    np.testing.assert_allclose(tb.kl_direction(THETA, R, beta, LOG_REF, "k3 as loss", True),
                               tb.kl_direction(THETA, R, beta * sigma, LOG_REF, "k3 as loss") / sigma, atol=1e-12)
    fix, b_eff = tb.std_fixed_point(R, beta, LOG_REF)
    assert b_eff == pytest.approx(beta * np.sqrt(fix @ (R - fix @ R) ** 2), rel=1e-12) and b_eff < beta / 5
    np.testing.assert_allclose(fix, tb.kl_fixed_point(R, b_eff, LOG_REF, "k3 as loss"), atol=1e-12)
    theta, _ = tb.exact_ascent(LOG_REF, lambda th: tb.kl_direction(th, R, beta, LOG_REF, "k3 as loss", True), 300, 3.0)
    assert tb.tv(tb.policy(theta), fix) < 1e-9
    score = lambda p: tb.score(p, R, beta, LOG_REF)  # noqa: E731
    assert score(fix) < score(tb.kl_fixed_point(R, beta, LOG_REF, "k3 as loss")) - 0.01


def test_part_6_reports_its_checks(runs):
    """The printed summary: enumeration = closed form, each ascent within TV 0.01 of its fixed point, gaps as above."""
    out = json.loads(runs[SUMMARY][0])
    assert [p["placement"] for p in out["kl_placements"]] == list(tb.PLACEMENTS)
    for p in out["kl_placements"]:
        assert p["enumeration_vs_closed_form"] < 1e-12 and p["tv"] < 0.01
        assert (abs(p["gap"]) < 1e-6) == (p["placement"] in ("k1 in reward", "k2 as loss")) and p["gap"] > -1e-6
    std = out["grpo_std"]
    assert std["k3_as_loss_std"]["tv"] < 1e-6 and std["k1_in_reward_step_at_pi_star"] < 1e-12
    assert std["path"][0]["gap"] == pytest.approx(1, abs=1e-12)            # the ascent starts at pi_ref
    assert std["beta_eff"] == pytest.approx(std["path"][-1]["beta_eff"])
    assert std["beta_eff"] < 0.9 * std["path"][0]["beta_eff"]               # sigma shrinks as pi concentrates
