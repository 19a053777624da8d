"""Tests for toy_bandit.py: every formula against an independent reference answer
(torch autograd, finite differences, exact enumeration over arms, the closed-form optimum)."""
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import toy_bandit as tb  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
R = np.array([0.2, 1.0, 0.5, 0.8, 0.0])            # best arm is 1, not 0: no lucky index
THETA = np.array([0.3, -0.5, 1.2, 0.0, -1.0])       # a non-uniform policy: no symmetry to hide errors
LOG_REF = tb.reference_policy(5)


def torch_objective_and_grad(theta, r, beta, log_ref, temperature):
    """J - beta KL(pi || pi_ref) written directly in torch; autograd gives the reference gradient."""
    th = torch.tensor(theta, dtype=torch.float64, requires_grad=True)
    logpi = torch.log_softmax(th / temperature, dim=0)
    pi = logpi.exp()
    loss = (pi * torch.tensor(r)).sum() - beta * (pi * (logpi - torch.tensor(log_ref))).sum()
    loss.backward()
    return loss.item(), th.grad.numpy()


@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_exact_grad_matches_autograd_and_finite_difference(temperature):
    value, grad = torch_objective_and_grad(THETA, R, 0.0, LOG_REF, temperature)
    assert tb.objective(THETA, R, temperature=temperature) == pytest.approx(value, abs=1e-12)
    ours = tb.exact_grad(THETA, R, temperature=temperature)
    np.testing.assert_allclose(ours, grad, atol=1e-12)
    eps, fd = 1e-6, np.zeros(5)
    for b in range(5):                              # central differences of the objective itself
        d = np.eye(5)[b] * eps
        fd[b] = (tb.objective(THETA + d, R, temperature=temperature)
                 - tb.objective(THETA - d, R, temperature=temperature)) / (2 * eps)
    np.testing.assert_allclose(ours, fd, atol=1e-8)


def test_exact_grad_is_the_log_derivative_sum():
    """Step (3) of the derivation: grad J = sum_a pi(a) r(a) grad log pi(a), enumerated over arms."""
    pi = tb.policy(THETA)
    enumerated = sum(pi[a] * R[a] * tb.grad_log_pi(pi, np.array([a]))[0] for a in range(5))
    np.testing.assert_allclose(tb.exact_grad(THETA, R), enumerated, atol=1e-12)
    J = pi @ R
    np.testing.assert_allclose(tb.exact_grad(THETA, R), pi * (R - J), atol=1e-15)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_grad_log_pi_matches_autograd(temperature):
    pi = tb.policy(THETA, temperature)
    rows = tb.grad_log_pi(pi, np.arange(5), temperature)
    for a in range(5):
        th = torch.tensor(THETA, dtype=torch.float64, requires_grad=True)
        torch.log_softmax(th / temperature, dim=0)[a].backward()
        np.testing.assert_allclose(rows[a], th.grad.numpy(), atol=1e-12)


@pytest.mark.parametrize("beta,temperature", [(0.1, 1.0), (0.5, 1.0), (2.0, 1.7)])
def test_kl_regularised_grad_matches_autograd(beta, temperature):
    value, grad = torch_objective_and_grad(THETA, R, beta, LOG_REF, temperature)
    assert tb.objective(THETA, R, beta, LOG_REF, temperature) == pytest.approx(value, abs=1e-12)
    np.testing.assert_allclose(tb.exact_grad(THETA, R, beta, LOG_REF, temperature), grad, atol=1e-12)


@pytest.mark.parametrize("baseline", [False, True])
@pytest.mark.parametrize("beta,temperature,noise", [(0.0, 1.0, 0.0), (0.0, 1.0, 0.5), (0.3, 2.0, 0.0)])
def test_estimator_is_unbiased(baseline, beta, temperature, noise):
    rng, repeats = np.random.default_rng(1), 20000
    est = tb.sample_grad(THETA, R, 8, rng, beta, LOG_REF, temperature, noise, baseline, repeats)
    exact = tb.exact_grad(THETA, R, beta, LOG_REF, temperature)
    se = est.std(0) / np.sqrt(repeats)
    assert np.all(np.abs(est.mean(0) - exact) < 4 * se + 1e-12)


def test_unbiasedness_check_catches_a_biased_baseline():
    """The test above can fail: a baseline that includes r_i itself (the plain batch mean) gives
    (N - 1) / N times the leave-one-out estimate, and with N = 2 that is visibly biased."""
    rng, repeats = np.random.default_rng(2), 20000
    biased = 0.5 * tb.sample_grad(THETA, R, 2, rng, repeats=repeats)   # (r_i - batch mean) weights
    se = biased.std(0) / np.sqrt(repeats)
    assert np.any(np.abs(biased.mean(0) - tb.exact_grad(THETA, R)) > 4 * se)


def exact_single_sample_variance(theta, r):
    """E|r(a)(e_a - pi) - grad J|^2 for one sample, by enumerating the K arms."""
    pi, g = tb.policy(theta), tb.exact_grad(theta, r)
    return sum(pi[a] * np.sum((r[a] * tb.grad_log_pi(pi, np.array([a]))[0] - g) ** 2) for a in range(len(r)))


def test_baseline_lowers_variance_and_error_falls_like_one_over_sqrt_n():
    rng, var1 = np.random.default_rng(3), exact_single_sample_variance(THETA, R)
    for n in (1, 10, 100):
        s = tb.estimator_stats(THETA, R, n, rng, repeats=3000)
        assert s["none"]["variance"] == pytest.approx(var1 / n, rel=0.12)       # i.i.d. mean: var / N
        assert s["none"]["rms_error"] == pytest.approx(np.sqrt(var1 / n), rel=0.06)
        assert s["none"]["bias_in_se"] < 4 and s["baseline"]["bias_in_se"] < 4    # mean unchanged
        if n > 1:
            assert s["baseline"]["variance"] < 0.7 * s["none"]["variance"]


def test_ascent_converges_to_best_arm():
    theta, _ = tb.ascend(np.zeros(5), R, np.random.default_rng(4), steps=500, n=16, lr=2.0)
    assert np.argmax(tb.policy(theta)) == 1 and tb.policy(theta)[1] > 0.98


def test_closed_form_is_the_optimum():
    for beta in (0.05, 0.3, 2.0):
        pi_star, j_star = tb.closed_form(R, beta, LOG_REF)
        theta_star = np.log(pi_star)
        assert tb.objective(theta_star, R, beta, LOG_REF) == pytest.approx(j_star, abs=1e-12)
        np.testing.assert_allclose(tb.exact_grad(theta_star, R, beta, LOG_REF), 0, atol=1e-12)
        for seed in range(5):                       # any other policy scores lower
            other = theta_star + np.random.default_rng(seed).normal(0, 0.3, 5)
            assert tb.objective(other, R, beta, LOG_REF) < j_star
    assert tb.tv(tb.closed_form(R, 1e-3, LOG_REF)[0], np.eye(5)[1]) < 1e-6       # beta -> 0: best arm
    assert tb.tv(tb.closed_form(R, 1e3, LOG_REF)[0], np.exp(LOG_REF)) < 0.01     # beta large: pi_ref


@pytest.mark.parametrize("beta", [0.01, 0.1, 1.0])
def test_kl_ascent_lands_on_closed_form(beta):
    theta, _ = tb.ascend(LOG_REF, R, np.random.default_rng(5), steps=2000, n=16, lr=2.0, beta=beta,
                         log_ref=LOG_REF, average=True)
    assert tb.tv(tb.policy(theta), tb.closed_form(R, beta, LOG_REF)[0]) < 0.01


def run_cli(*args):
    return subprocess.run([sys.executable, "toy_bandit.py", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


BAD = [(["--rewards="], "--rewards"), (["--rewards", "1,a"], "--rewards"), (["--rewards", "1"], "--rewards"),
       (["--rewards", "1,inf"], "--rewards"), (["--beta", "-1"], "--beta"), (["--beta", "nan"], "--beta"),
       (["--temperature", "0"], "--temperature"), (["--lr", "0"], "--lr"), (["--steps", "0"], "--steps"),
       (["--samples", "0"], "--samples"), (["--noise", "-1"], "--noise"), (["--steps", "x"], "--steps")]


@pytest.fixture(scope="module")
def bad_runs():
    """Start every bad command line at once (each is a real subprocess), then collect the results."""
    procs = {" ".join(args): subprocess.Popen([sys.executable, "toy_bandit.py", *args], cwd=ROOT,
                                              text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for args, _ in BAD}
    return {key: (*p.communicate(timeout=60), p.returncode) for key, p in procs.items()}


@pytest.mark.parametrize("args,flag", BAD)
def test_bad_arguments_give_one_clear_line(bad_runs, args, flag):
    stdout, stderr, returncode = bad_runs[" ".join(args)]
    lines = stderr.strip().splitlines()
    assert returncode == 2 and stdout == ""
    assert len(lines) == 1 and flag in lines[0] and "Traceback" not in stderr


def test_json_summary_has_the_promised_keys_and_exact_values():
    res = run_cli("--json", "--steps", "300", "--beta", "1", "--rewards", "0.2,1.0,0.5,0.8,0.0")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    for key in ("exact_grad", "estimates", "final_policy", "closed_form_optimum", "tv_distance"):
        assert key in out
    np.testing.assert_allclose(out["exact_grad"], tb.exact_grad(np.zeros(5), R), atol=1e-12)
    np.testing.assert_allclose(out["closed_form_optimum"], tb.closed_form(R, 1.0, LOG_REF)[0], atol=1e-12)
    assert [e["N"] for e in out["estimates"]] == [1, 10, 100, 1000, 10000]
    assert out["tv_distance"] < 0.01 and out["final_policy"][1] > 0.98


def test_same_seed_same_output(capsys):
    runs = []
    for seed in ("7", "7", "8"):
        tb.main(["--json", "--steps", "20", "--seed", seed])
        runs.append(capsys.readouterr().out)
    assert runs[0] == runs[1] != runs[2]
