"""Tests for toy_kl.py, where the KL goes: each placement's per-sample step against torch autograd
of its per-sample loss, its expected step against the gradient of J - beta D, each fixed point
against every nearby policy, and the command line."""
import json

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

import toy_kl as tk
from conftest import one_clear_line_or_finite_numbers, toy_commands

R = np.array([0.2, 1.0, 0.5, 0.8, 0.0])            # best arm is 1, not 0: no lucky index
THETA = np.array([0.3, -0.5, 1.2, 0.0, -1.0])       # a non-uniform policy: no symmetry to hide errors
LOG_REF = tk.reference_policy(5)
REF = torch.tensor(np.exp(LOG_REF))
PI_STAR = ("k1 in reward", "k2 as loss")            # the placements whose fixed point is pi*
DIVERGENCE = {  # E_{a~pi}[grad of the KL term] = beta grad D(pi): D by placement, written in torch
    "k1 in reward": lambda pi: (pi * (pi / REF).log()).sum(),  # KL(pi || pi_ref): the lecture's
    "k1 as loss": lambda pi: 0 * pi.sum(),                     # nothing: gone in expectation
    "k2 as loss": lambda pi: (pi * (pi / REF).log()).sum(),    # KL(pi || pi_ref) again, on-policy
    "k3 as loss": lambda pi: (REF * (REF / pi).log()).sum(),   # the forward KL(pi_ref || pi)
    "k3 inverted": lambda pi: ((pi ** 2 / REF).sum() - 1) / 2,  # chi2(pi || pi_ref) / 2
}


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


def direction(theta, r, beta, placement, std=False):
    return tk.kl_direction(theta, r, beta, LOG_REF, placement, std)    # E_{a~pi}[step], closed form


@pytest.mark.parametrize("std", [False, True])
@pytest.mark.parametrize("placement", tk.PLACEMENTS)
def test_sample_steps_match_autograd_and_average_to_the_closed_form(placement, std):
    """Each arm's step as the sample is autograd of its per-sample loss; their pi-weighted sum is kl_direction."""
    rows = tk.sample_steps(THETA, R, 0.7, LOG_REF, placement, std)
    assert_allclose(rows, autograd_steps(THETA, R, 0.7, placement, std), atol=1e-12)
    enumerated = tk.policy(THETA) @ rows  # sum_a pi(a) step(a)
    assert_allclose(enumerated, direction(THETA, R, 0.7, placement, std), atol=1e-12)


@pytest.mark.parametrize("placement", tk.PLACEMENTS)
def test_expected_step_is_the_gradient_of_reward_minus_beta_divergence(placement):
    """E_{a~pi}[step], enumerated with autograd per sample, = grad (J - beta D): k1 as a loss 0 (D = 0), k2 as a loss
    the KL(pi || pi_ref) of k1 in the reward (= exact_grad), k3 the forward KL(pi_ref || pi) (beta (pi - pi_ref)),
    inverted k3 chi2 / 2; numpy's closed form agrees, and so does its penalty part alone (r = 0)."""
    th = torch.tensor(THETA, requires_grad=True)
    pi = torch.softmax(th, 0)
    (pi @ torch.tensor(R) - 0.7 * DIVERGENCE[placement](pi)).backward()
    enumerated = tk.policy(THETA) @ autograd_steps(THETA, R, 0.7, placement)
    assert_allclose(enumerated, th.grad.numpy(), atol=1e-12)
    assert_allclose(direction(THETA, R, 0.7, placement), th.grad.numpy(), atol=1e-12)
    penalty = -direction(THETA, 0 * R, 0.7, placement) / 0.7                  # E[grad k]
    pi, ref = tk.policy(THETA), REF.numpy()
    d, w = np.log(pi) - LOG_REF, pi / ref  # log pi / pi_ref, pi / pi_ref
    want = {"k1 as loss": 0 * pi, "k3 as loss": pi - ref, "k3 inverted": pi * (w - pi @ w)}
    assert_allclose(penalty, want.get(placement, pi * (d - pi @ d)), atol=1e-12)  # k1, k2: the KL's


@pytest.mark.parametrize("placement", tk.PLACEMENTS)
def test_fixed_point_maximises_reward_minus_beta_divergence_and_exact_ascent_reaches_it(placement):
    """The closed-form fixed point beats every nearby policy on J - beta D (so it is D's optimum: pi* for k1 in the
    reward and k2, the best arm for k1 as a loss, forward KL's beta pi_ref / (c - r), chi2's water-filling with zeros),
    and exact ascent along kl_direction from pi_ref lands on it. Any q (seed 0): J - beta D is strictly concave."""
    fix = tk.kl_fixed_point(R, 0.3, LOG_REF, placement)
    value = lambda p: float(p @ R - 0.3 * DIVERGENCE[placement](torch.tensor(p)))  # noqa: E731
    assert fix.sum() == pytest.approx(1, abs=1e-12) and fix.min() >= 0
    for q in np.random.default_rng(0).dirichlet(np.ones(5), 10):
        assert all(value((1 - eps) * fix + eps * q) < value(fix) for eps in (1e-3, 0.3))
    theta, _ = tk.exact_ascent(LOG_REF, lambda th: direction(th, R, 0.3, placement), 2000, 3.0)
    assert tk.tv(tk.policy(theta), fix) < 2e-3              # zeros (water-filling, best arm) come like 1/t


def test_only_k1_in_the_reward_and_k2_as_a_loss_reach_pi_star():
    """gap = (J* - (J - beta KL)) / (J* - J(pi_ref)) at each fixed point: 0 for k1 in the reward and k2, > 0 else."""
    beta, ref = 0.3, REF.numpy()
    j_star = tk.closed_form(R, beta, LOG_REF)[1]
    for placement in tk.PLACEMENTS:
        fix = tk.kl_fixed_point(R, beta, LOG_REF, placement)
        j = fix @ R - beta * sum(p * np.log(p / q) for p, q in zip(fix, ref) if p > 0)  # 0 log 0: 0
        assert tk.score(fix, R, beta, LOG_REF) == pytest.approx(j, abs=1e-12)
        gap = (j_star - j) / (j_star - ref @ R)
        assert gap == pytest.approx(0, abs=1e-12) if placement in PI_STAR else gap > 0.05


def test_std_divides_a_kl_loss_into_beta_times_sigma():
    """GRPO's std: with the KL in the reward the whole step is divided by sigma = std of r under pi; with k3 as a loss
    only the advantage is, i.e. k3's step at beta_eff = beta sigma, over sigma. Its fixed point is k3's at beta sigma,
    sigma taken there, far below beta; exact ascent reaches it; its gap exceeds plain k3's."""
    pi, beta = tk.policy(THETA), 0.3
    sigma = np.sqrt(pi @ (R - pi @ R) ** 2)
    want = tk.exact_grad(THETA, R, beta, LOG_REF) / sigma
    assert_allclose(direction(THETA, R, beta, "k1 in reward", True), want, atol=1e-12)
    want = direction(THETA, R, beta * sigma, "k3 as loss") / sigma
    assert_allclose(direction(THETA, R, beta, "k3 as loss", True), want, atol=1e-12)
    fix, b_eff = tk.std_fixed_point(R, beta, LOG_REF)
    assert b_eff == pytest.approx(beta * np.sqrt(fix @ (R - fix @ R) ** 2), rel=1e-12)
    assert b_eff < beta / 5
    assert_allclose(fix, tk.kl_fixed_point(R, b_eff, LOG_REF, "k3 as loss"), atol=1e-12)
    step = lambda th: direction(th, R, beta, "k3 as loss", True)  # noqa: E731
    theta, _ = tk.exact_ascent(LOG_REF, step, 300, 3.0)
    assert tk.tv(tk.policy(theta), fix) < 1e-9
    score = lambda p: tk.score(p, R, beta, LOG_REF)  # noqa: E731
    assert score(fix) < score(tk.kl_fixed_point(R, beta, LOG_REF, "k3 as loss")) - 0.01


# `toy_kl.py --json --steps 20 ARGS`: REFUSED exit 2, one line naming the flag; ACCEPTED exit 0, all finite
REFUSED = ["--rewards=", "--rewards 1,a", "--rewards 1", "--rewards 1,inf", "--beta -1"]
REFUSED += ["--beta nan", "--steps 0", "--steps x", "--lr 1"]   # --lr: toy_bandit.py's alone
ACCEPTED = ["--beta 5e-324", "--beta 1e-310 --rewards=-1000,1000", "--beta 1000"]
SUMMARY = "--steps 300 --beta 1 --rewards 0.2,1.0,0.5,0.8,0.0"  # toy_kl.py draws nothing: exact


@pytest.fixture(scope="module")
def runs():
    return toy_commands("toy_kl.py", SUMMARY, *REFUSED, *ACCEPTED)


@pytest.mark.parametrize("args", REFUSED + ACCEPTED)
def test_flags_give_one_clear_line_or_finite_numbers(runs, args):
    one_clear_line_or_finite_numbers(runs[args], args, refused=args in REFUSED)


def test_part_6_reports_its_checks(runs):
    """The printed summary: enumeration = closed form, each ascent within TV 0.01 of its fixed point, gaps as above."""
    stdout, stderr, returncode = runs[SUMMARY]
    assert returncode == 0, stderr
    out = json.loads(stdout)
    assert [p["placement"] for p in out["kl_placements"]] == list(tk.PLACEMENTS)
    for p in out["kl_placements"]:
        assert p["enumeration_vs_closed_form"] < 1e-12 and p["tv"] < 0.01
        assert (abs(p["gap"]) < 1e-6) == (p["placement"] in PI_STAR) and p["gap"] > -1e-6
    std = out["grpo_std"]
    assert std["k3_as_loss_std"]["tv"] < 1e-6 and std["k1_in_reward_step_at_pi_star"] < 1e-12
    assert std["path"][0]["gap"] == pytest.approx(1, abs=1e-12)            # the ascent starts at pi_ref
    assert std["beta_eff"] == pytest.approx(std["path"][-1]["beta_eff"])
    assert std["beta_eff"] < 0.9 * std["path"][0]["beta_eff"]               # sigma shrinks as pi concentrates
