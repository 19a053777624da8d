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
PI_STAR = ("k1 in reward", "k2 as loss", "k3 x ratio", "k3 st", "ratio x k1", "KL to come")  # reach pi*
KL = lambda pi: (pi * (pi / REF).log()).sum()  # noqa: E731  KL(pi || pi_ref)
DIVERGENCE = {  # E_{a~pi}[grad of the KL term] = beta grad D(pi): D by placement, written in torch
    "k1 in reward": lambda pi: (pi * (pi / REF).log()).sum(),  # KL(pi || pi_ref): the lecture's
    "k1 as loss": lambda pi: 0 * pi.sum(),                     # nothing: gone in expectation
    "k2 as loss": lambda pi: (pi * (pi / REF).log()).sum(),    # KL(pi || pi_ref) again, on-policy
    "k3 as loss": lambda pi: (REF * (REF / pi).log()).sum(),   # the forward KL(pi_ref || pi)
    "k3 inverted": lambda pi: ((pi ** 2 / REF).sum() - 1) / 2,  # chi2(pi || pi_ref) / 2
    "k3 in reward": lambda pi: KL(pi) - (REF * (REF / pi).log()).sum(),  # KL less the forward KL
    **dict.fromkeys(["k3 x ratio", "k3 st", "ratio x k1", "KL to come"], KL),  # k2's gradient
}


def autograd_steps(theta, r, beta, placement, std=False):
    """Row a: minus the autograd gradient of sample a's loss -A(a) log pi(a) + beta k(a), A taken as data (r - E_pi r,
    or r~ - E_pi r~ with the KL in the reward; / the std of r under pi with std), k written with rho or w as printed."""
    rows = []
    for a in range(len(r)):
        th = torch.tensor(theta, requires_grad=True)
        logpi = torch.log_softmax(th, 0)
        pi, rho, rt = logpi.exp().detach(), REF / logpi.exp(), torch.tensor(r)
        d, ratio = -rho.log(), torch.exp(logpi - logpi.detach())  # log pi / pi_ref; pi / pi_old = 1
        k3 = rho - 1 - rho.log()
        cost = {"k1 in reward": d, "k3 in reward": k3}.get(placement, 0 * d).detach()  # in the reward: data
        shaped = rt - beta * cost
        adv = (shaped - pi @ shaped) / (torch.sqrt(pi @ (rt - pi @ rt) ** 2) if std else 1)
        k = {"k1 as loss": d, "k2 as loss": d ** 2 / 2, "k3 as loss": k3, "k3 inverted": 1 / rho - 1 - (1 / rho).log(),
             "k3 x ratio": ratio * k3, "k3 st": (k3 - d ** 2 / 2).detach() + d ** 2 / 2, "ratio x k1": ratio * d,
             "KL to come": d.detach() * logpi}.get(placement, 0 * d)  # one token: its KL to come is d
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
    want = {"k1 as loss": 0 * pi, "k3 as loss": pi - ref, "k3 inverted": pi * (w - pi @ w),
            "k3 in reward": pi * (d - pi @ d) - (pi - ref)}
    assert_allclose(penalty, want.get(placement, pi * (d - pi @ d)), atol=1e-12)  # k1, k2: the KL's


CONCAVE = [p for p in tk.PLACEMENTS if p != "k3 in reward"]  # J - beta D concave: one maximum


@pytest.mark.parametrize("placement", CONCAVE)
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


def ascent(placement, beta, steps=2000, lr=3.0):
    return tk.policy(tk.exact_ascent(LOG_REF, lambda th: direction(th, R, beta, placement), steps, lr)[0])


def test_only_k1_in_the_reward_and_k2_s_gradient_reach_pi_star():
    """gap = (J* - (J - beta KL)) / (J* - J(pi_ref)) at each fixed point: 0 for k1 in the reward and the placements
    with k2's gradient, > 0 else (k3 in the reward: on the arms its ascent keeps)."""
    beta, ref = 0.3, REF.numpy()
    j_star = tk.closed_form(R, beta, LOG_REF)[1]
    for placement in tk.PLACEMENTS:
        fix = tk.kl_fixed_point(R, beta, LOG_REF, placement, ended=ascent(placement, beta))
        j = fix @ R - beta * sum(p * np.log(p / q) for p, q in zip(fix, ref) if p > 0)  # 0 log 0: 0
        assert tk.score(fix, R, beta, LOG_REF) == pytest.approx(j, abs=1e-12)
        gap = (j_star - j) / (j_star - ref @ R)
        assert gap == pytest.approx(0, abs=1e-12) if placement in PI_STAR else gap > 0.05


@pytest.mark.parametrize("beta, arm", [(1.0, 1), (10.0, 2)])
def test_k3_in_the_reward_starves_every_arm_but_one_and_not_always_the_best(beta, arm):
    """k3 as data in the reward ascends J - beta (KL(pi||pi_ref) - KL(pi_ref||pi)), unbounded: an arm pi starves
    pays beta pi_ref / pi each time it is drawn and starves further, for ever. Exact ascent ends with all of pi on
    one arm, at beta 10 not the best (r = 1) but pi_ref's mode (r = 0.5); the closed form puts all of pi there."""
    pi = ascent("k3 in reward", beta, lr=min(3.0, 1 / beta))
    assert pi[arm] > 1 - 1e-6
    assert_allclose(tk.kl_fixed_point(R, beta, LOG_REF, "k3 in reward", ended=pi), np.eye(5)[arm])
    later = ascent("k3 in reward", beta, steps=4000, lr=min(3.0, 1 / beta))
    assert later[arm] >= pi[arm] and tk.score(later, R, beta, LOG_REF) < tk.closed_form(R, beta, LOG_REF)[1] - 0.01


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
    with_std = std["gaps"]  # GRPO's std: only k1 in the reward keeps pi*; k3 keeps its own fixed point
    assert abs(with_std["k1 in reward"]) < 1e-9 and min(g for p, g in with_std.items() if p != "k1 in reward") > 0.05
    two = out["two_tokens"]["placements"]
    assert [p["placement"] for p in two] == list(tk.PLACEMENTS)
    for p in two:
        assert p["enumeration_vs_closed_form"] < 1e-12
        assert p["unbiased_per_token"] == (p["placement"] in PI_STAR)
        assert p["unbiased_per_sequence"] == (p["placement"] in PER_SEQUENCE)


# ---- part 7: two tokens, y = (a, b) ----------------------------------------------------------------
TWO = (np.array([0.3, -0.4, 0.1]), np.array([[0.5, -1.0, 0.2], [0.0, 0.7, -0.3], [-0.6, 0.4, 0.9]]))  # a test theta
PER_SEQUENCE = ("k1 in reward", "KL to come")  # the placements whose two-token fixed point is pi*


def two_autograd_step(theta, beta, placement, a, b):
    """Minus the autograd gradient of response (a, b)'s loss as the loop writes it: sum_t -A log pi(y_t) + beta k_t,
    k_t of d_t = log pi(y_t) - log pi_ref(y_t) (the ratio pi / pi_old = 1 with its gradient; the KL to come of token
    a is d_a + d_b, as data), or A from r~ = r - beta sum_t k(d_t) with the KL in the reward (as data)."""
    ta, tb = (torch.tensor(t, requires_grad=True) for t in theta)
    la, lb = torch.log_softmax(ta, 0), torch.log_softmax(tb, 1)
    d_a, d_b = la - torch.tensor(np.log(tk.REF_A)), lb - torch.tensor(np.log(tk.REF_B))
    cost = {"k1 in reward": lambda d: d, "k3 in reward": lambda d: torch.expm1(-d) + d}.get(placement)
    R = torch.tensor(tk.R_AB) - (beta * (cost(d_a)[:, None] + cost(d_b)) if cost else 0)
    pi_y = (la[:, None] + lb).exp()
    A = (R - (pi_y * R).sum()).detach()[a, b]

    def k(d, logp, to_come):
        ratio, k3 = torch.exp(logp - logp.detach()), torch.expm1(-d) + d
        return {"k1 as loss": d, "k2 as loss": d**2 / 2, "k3 as loss": k3, "k3 inverted": torch.expm1(d) - d,
                "k3 x ratio": ratio * k3, "k3 st": (k3 - d**2 / 2).detach() + d**2 / 2, "ratio x k1": ratio * d,
                "KL to come": to_come.detach() * logp}.get(placement, 0 * d)

    loss = -A * (la[a] + lb[a, b]) + beta * (k(d_a[a], la[a], d_a[a] + d_b[a, b]) + k(d_b[a, b], lb[a, b], d_b[a, b]))
    grads = torch.autograd.grad(loss, (ta, tb))
    return [-g.numpy() for g in grads]


def weighted(steps, theta):
    pa, pb = tk.two_policy(theta)
    return [sum(pa[a] * pb[a, b] * steps[a, b][i] for a, b in steps) for i in (0, 1)]


@pytest.mark.parametrize("placement", tk.PLACEMENTS)
def test_two_token_steps_are_the_loop_s_and_average_to_the_closed_form(placement):
    """Each response's step is autograd of its per-token loss; the pi-weighted sum over the 9 responses is
    two_direction, part 6's one-token step for b given a (weighed by pi(a)) and for a with E_b r(a, b), less
    beta KL(pi(.|a) || pi_ref(.|a)) where the placement carries the KL after t."""
    steps = tk.two_sample_steps(TWO, 0.4, placement)
    for (a, b), step in steps.items():
        for mine, torch_s in zip(step, two_autograd_step(TWO, 0.4, placement, a, b)):
            assert_allclose(mine, torch_s, atol=1e-12)
    for mine, closed in zip(weighted(steps, TWO), tk.two_direction(TWO, 0.4, placement)):
        assert_allclose(mine, closed, atol=1e-12)


def test_per_token_steps_miss_exactly_the_kl_of_the_token_after():
    """The exact gradient of J - beta KL(pi || pi_ref) over whole responses is the step of k1 in the reward and of
    the KL to come; k2's (and the three like it) lacks -beta pi(a) (KL_b(a) - E_a KL_b) on theta_a, no more."""
    ta, tb = (torch.tensor(t, requires_grad=True) for t in TWO)
    la, lb = torch.log_softmax(ta, 0), torch.log_softmax(tb, 1)
    log_pi = la[:, None] + lb
    log_ref = torch.tensor(np.log(tk.REF_A)[:, None] + np.log(tk.REF_B))
    (log_pi.exp() * (torch.tensor(tk.R_AB) - 0.4 * (log_pi - log_ref))).sum().backward()
    exact = [ta.grad.numpy(), tb.grad.numpy()]
    for placement in PER_SEQUENCE:
        for mine, want in zip(tk.two_direction(TWO, 0.4, placement), exact):
            assert_allclose(mine, want, atol=1e-12)
    pa, pb = tk.two_policy(TWO)
    kl_b = (pb * (np.log(pb) - np.log(tk.REF_B))).sum(1)
    for placement in ("k2 as loss", "k3 x ratio", "k3 st", "ratio x k1"):
        step_a, step_b = tk.two_direction(TWO, 0.4, placement)
        assert_allclose(step_b, exact[1], atol=1e-12)
        assert_allclose(step_a - 0.4 * pa * (kl_b - pa @ kl_b), exact[0], atol=1e-12)
        assert np.abs(step_a - exact[0]).max() > 1e-3


@pytest.mark.parametrize("placement", [p for p in tk.PLACEMENTS if p != "k1 as loss"])
def test_two_token_exact_ascent_reaches_the_closed_form_fixed_point(placement):
    """Exact ascent from pi_ref (toy_kl.py's 500 steps of lr 20) lands within TV 2e-3 of two_fixed_point; that is
    pi* (two_optimum) for k1 in the reward and the KL to come, gap 0, and for every other placement gap > 0.02.
    (k1 as a loss has no fixed point: it creeps to beta = 0's best response.)"""
    beta, theta = 0.1, (np.log(tk.REF_A), np.log(tk.REF_B))
    for _ in range(500):
        step = tk.two_direction(theta, beta, placement)
        theta = (theta[0] + 20 * step[0], theta[1] + 20 * step[1])
    pa, pb = tk.two_policy(theta)
    fa, fb = tk.two_fixed_point(beta, placement, (pa, pb))
    assert tk.tv((pa[:, None] * pb).ravel(), (fa[:, None] * fb).ravel()) < 2e-3
    sa, sb, j_star = tk.two_optimum(beta)
    gap = (j_star - tk.two_score(fa, fb, beta)) / (j_star - tk.two_score(tk.REF_A, tk.REF_B, beta))
    if placement in PER_SEQUENCE:
        assert_allclose(fa[:, None] * fb, sa[:, None] * sb, atol=1e-12)
        assert abs(gap) < 1e-12
    else:
        assert gap > 0.02
