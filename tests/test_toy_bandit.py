"""Tests for toy_bandit.py: every formula against an independent reference answer
(torch autograd, finite differences, exact enumeration over arms, the closed-form optimum)."""
import json

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

import toy_bandit as tb
from conftest import one_clear_line_or_finite_numbers, toy_commands

R = np.array([0.2, 1.0, 0.5, 0.8, 0.0])            # best arm is 1, not 0: no lucky index
THETA = np.array([0.3, -0.5, 1.2, 0.0, -1.0])       # a non-uniform policy: no symmetry to hide errors
LOG_REF = tb.reference_policy(5)


@pytest.mark.parametrize("beta, temperature", [(0, 1), (0, 2.5), (0.1, 1), (0.5, 1), (2, 1.7)])
def test_objective_and_exact_grad_match_autograd_and_finite_differences(beta, temperature):
    th = torch.tensor(THETA, requires_grad=True)
    logpi = torch.log_softmax(th / temperature, dim=0)
    loss = (logpi.exp() * (torch.tensor(R) - beta * (logpi - torch.tensor(LOG_REF)))).sum()
    loss.backward()
    log_ref = LOG_REF if beta else None                 # beta = 0 is called without pi_ref (part 1)
    f = lambda theta: tb.objective(theta, R, beta, log_ref, temperature)  # noqa: E731
    assert f(THETA) == pytest.approx(loss.item(), abs=1e-12)
    ours = tb.exact_grad(THETA, R, beta, log_ref, temperature)
    assert_allclose(ours, th.grad.numpy(), atol=1e-12)
    fd = [(f(THETA + d) - f(THETA - d)) / 2e-6 for d in np.eye(5) * 1e-6]  # central differences
    assert_allclose(ours, fd, atol=1e-8)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_grad_log_pi_matches_autograd_and_sums_to_the_exact_grad(temperature):
    """Step (3) of the derivation enumerated over arms: grad J = sum_a pi(a) r(a) grad log pi(a) = pi (r - J) / T."""
    pi = tb.policy(THETA, temperature)
    log_pi = lambda th: torch.log_softmax(th / temperature, dim=0)  # noqa: E731
    rows = tb.grad_log_pi(pi, np.arange(5), temperature)  # row a: grad log pi(a)
    jacobian = torch.autograd.functional.jacobian(log_pi, torch.tensor(THETA))
    assert_allclose(rows, jacobian, atol=1e-12)
    exact = tb.exact_grad(THETA, R, temperature=temperature)
    assert_allclose(exact, sum(pi[a] * R[a] * rows[a] for a in range(5)), atol=1e-12)
    assert_allclose(exact, pi * (R - pi @ R) / temperature, atol=1e-15)


SETTINGS = [(0.0, 1.0, 0.0), (0.0, 1.0, 0.5), (0.3, 2.0, 0.0)]  # (beta, temperature, noise)
ESTIMATES = [(8, baseline, *s, 1.0) for baseline in (False, True) for s in SETTINGS]
ESTIMATES += [(2, True, 0.0, 1.0, 0.0, 0.5)]  # (n, baseline, ..., scale): a biased estimate


@pytest.mark.parametrize("n, baseline, beta, temperature, noise, scale", ESTIMATES)
def test_estimator_is_unbiased_and_the_check_can_fail(n, baseline, beta, temperature, noise, scale):
    """Mean of 20000 estimates (seed 1) within 4 standard errors of the exact gradient on every arm (1 in 16,000 misses
    for a normal mean; these reach 2.5). The last case (a batch mean with r_i: half of leave-one-out at N = 2) fails."""
    rng = np.random.default_rng(1)
    setting = (beta, LOG_REF, temperature, noise, baseline)
    est = scale * tb.sample_grad(THETA, R, n, rng, *setting, repeats=20000)
    exact = tb.exact_grad(THETA, R, beta, LOG_REF, temperature)
    close = np.all(np.abs(est.mean(0) - exact) < 4 * est.std(0) / np.sqrt(20000) + 1e-12)
    assert close == (scale == 1.0)  # the biased case: 45-78 standard errors off on four arms


def test_baseline_lowers_variance_and_error_falls_like_one_over_sqrt_n():
    """3000 repeats per N (rng seed 3). Over 300 seeds a variance's relative sd is <= 0.024 (rel=0.12: 5 of them),
    the rms error's <= 0.012 (rel=0.06: 5), bias_in_se ~|N(0, 1)| (max 2.8; 4: 1 in 16,000), baseline/none 0.27-0.29."""
    pi, g, rng = tb.policy(THETA), tb.exact_grad(THETA, R), np.random.default_rng(3)
    # E|r(a)(e_a - pi) - grad J|^2, enumerated over arms
    var1 = sum(pi[a] * np.sum((R[a] * tb.grad_log_pi(pi, [a])[0] - g) ** 2) for a in range(5))
    for n in (1, 10, 100):
        s = tb.estimator_stats(THETA, R, n, rng, repeats=3000)
        assert s["none"]["variance"] == pytest.approx(var1 / n, rel=0.12)       # i.i.d. mean: var / N
        assert s["none"]["rms_error"] == pytest.approx(np.sqrt(var1 / n), rel=0.06)
        assert s["none"]["bias_in_se"] < 4 and s["baseline"]["bias_in_se"] < 4    # mean unchanged
        assert n == 1 or s["baseline"]["variance"] < 0.7 * s["none"]["variance"]  # N = 1: none


def test_closed_form_is_the_optimum():
    for beta in (0.05, 0.3, 2.0):
        pi_star, j_star = tb.closed_form(R, beta, LOG_REF)
        theta_star = np.log(pi_star)
        assert tb.objective(theta_star, R, beta, LOG_REF) == pytest.approx(j_star, abs=1e-12)
        assert_allclose(tb.exact_grad(theta_star, R, beta, LOG_REF), 0, atol=1e-12)
        for seed in range(5):                       # every draw scores lower (by >= 2e-6): pi* is the unique maximum
            other = theta_star + np.random.default_rng(seed).normal(0, 0.3, 5)
            assert tb.objective(other, R, beta, LOG_REF) < j_star
    assert tb.tv(tb.closed_form(R, 1e3, LOG_REF)[0], np.exp(LOG_REF)) < 0.01     # beta large: pi_ref


@pytest.mark.parametrize("beta", [0.0, 5e-324, 1e-310, 1e-3])
@pytest.mark.parametrize("r", [R, np.where(R == 0.8, 1, R)], ids=["one best arm", "arms 1, 3 tie"])
def test_closed_form_as_beta_goes_to_zero(beta, r):
    """pi* -> pi_ref on the best arm(s), J* -> max r: exact and finite down to 5e-324 (r / beta overflows) and 0."""
    top = np.exp(LOG_REF) * (r == r.max())
    pi_star, j_star = tb.closed_form(r, beta, LOG_REF)
    assert_allclose(pi_star, top / top.sum(), rtol=0, atol=1e-15)
    assert j_star == pytest.approx(r.max() + beta * np.log(top.sum()), abs=1e-15)


@pytest.mark.parametrize("beta", [0.0, 0.01, 0.1, 1.0])
def test_ascent_lands_on_closed_form(beta):
    """beta = 0: plain steps from uniform reach the best arm; beta > 0: Polyak-averaged ascent from pi_ref."""
    start, rng = LOG_REF if beta else np.zeros(5), np.random.default_rng(5)
    steps = dict(steps=2000, n=16, lr=2.0, beta=beta, log_ref=LOG_REF, average=beta > 0)
    theta, _ = tb.ascend(start, R, rng, **steps)
    assert tb.tv(tb.policy(theta), tb.closed_form(R, beta, LOG_REF)[0]) < 0.01  # 40 seeds: <= 0.006


def test_polyak_average_is_the_mean_of_the_second_half_iterates():
    """average=True returns the mean of theta_t over t in (steps/2, steps]: with lr = 0 exactly the start (8 iterates,
    exact in floating point), and otherwise the mean of the very iterates the run logged, no other."""
    rng = lambda: np.random.default_rng(0)  # noqa: E731
    run = dict(steps=16, n=4, average=True)
    still, _ = tb.ascend(THETA, R, rng(), lr=0.0, **run)
    np.testing.assert_array_equal(still, THETA)
    theta, hist = tb.ascend(THETA, R, rng(), lr=0.5, log_every=range(17), **run)
    assert_allclose(theta, np.mean([th for t, th in hist if t > 8], 0), rtol=1e-14)


# `toy_bandit.py --json --steps 20 ARGS`: REFUSED exit 2, one line naming the flag; ACCEPTED exit 0, all finite
REFUSED = ["--rewards=", "--rewards 1,a", "--rewards 1", "--rewards 1,inf", "--beta -1"]
REFUSED += ["--beta nan", "--temperature 0", "--lr 0", "--steps 0", "--samples 0", "--noise -1"]
REFUSED += ["--steps x", "--temperature 5e-324"]
ACCEPTED = ["--beta 5e-324", "--beta 1e-310 --rewards=-1000,1000", "--lr 5e-324", "--noise 5e-324"]
ACCEPTED += ["--lr 1000 --temperature 1e-3 --noise 1000"]
SUMMARY = "--steps 300 --beta 1 --rewards 0.2,1.0,0.5,0.8,0.0"  # the default --seed 0: TV 1e-10, pi(a=1) 0.997


@pytest.fixture(scope="module")
def runs():
    return toy_commands("toy_bandit.py", SUMMARY, *REFUSED, *ACCEPTED)


@pytest.mark.parametrize("args", REFUSED + ACCEPTED)
def test_flags_give_one_clear_line_or_finite_numbers(runs, args):
    one_clear_line_or_finite_numbers(runs[args], args, refused=args in REFUSED)


def test_json_summary_has_the_promised_keys_and_exact_values(runs):
    stdout, stderr, returncode = runs[SUMMARY]
    assert returncode == 0, stderr
    out = json.loads(stdout)
    keys = {"exact_grad", "estimates", "final_policy", "closed_form_optimum", "tv_distance"}
    assert keys <= set(out)
    assert_allclose(out["exact_grad"], tb.exact_grad(np.zeros(5), R), atol=1e-12)
    assert_allclose(out["closed_form_optimum"], tb.closed_form(R, 1.0, LOG_REF)[0], atol=1e-12)
    assert [e["N"] for e in out["estimates"]] == [1, 10, 100, 1000, 10000]
    assert out["tv_distance"] < 0.01 and out["final_policy"][1] > 0.98  # 30 seeds: < 6e-9, > 0.995


def test_same_seed_same_output(capsys):
    out = [tb.main(["--json", "--steps=20", "--seed", s]) or capsys.readouterr().out for s in "778"]
    assert out[0] == out[1] != out[2]
