"""Mutation testing of the lesson: plant one single-line bug at a time, run the tests, count the
bugs they catch. A surviving mutant is a bug the suite would let through.

    python tests/mutants.py                  # every mutant (about 8 minutes)
    python tests/mutants.py --tests tests    # the lesson's mutants against the whole suite
    python tests/mutants.py --only M3 R1     # some of them

M mutants (the lesson) run against the fast tests, or --tests; R mutants (the reward model and the
over-optimisation command, extras) always against tests/test_reward_model.py, C mutants (the command
around the loop) against the test of the promise they break.

Each mutant is applied to a fresh copy of the repository (never to this one), then
`python -m pytest -x -q TESTS` runs there: a failing run kills the mutant. Not run by CI (it takes
minutes); docs/testing.md gives the last score and the reason for each mutant left alive.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ["tests/test_rl.py", "tests/test_model.py", "tests/test_exact_gradient.py",
        "tests/test_loop.py", "tests/test_evaluate.py", "tests/test_estimators.py",
        "tests/test_data.py", "tests/test_toy_bandit.py",
        "tests/test_command.py::test_short_seeded_run_raises_reward_and_keeps_kl_bounded",
        "tests/test_command.py::test_same_seed_gives_identical_metrics_and_reinforce_learns"]

# (id, file, the line as it is, the line as the mutant has it, what the bug is)
MUTANTS = [
    ("M1", "minippo/ppo.py", "ref_logprobs, _, _ = response_logprobs(ref, prompt_ids, tokens, cfg.temperature)",
     "ref_logprobs, _, _ = response_logprobs(policy, prompt_ids, tokens, cfg.temperature)",
     "log pi_ref computed with the policy: the KL is always 0"),
    ("M2", "minippo/ppo.py", "mask = (tokens != vocab.pad_id).float()",
     "mask = ((tokens != vocab.pad_id) & (tokens != vocab.eos_id)).float()",
     "the response mask drops the EOS token"),
    ("M3", "minippo/ppo.py", '"kl": kl.sum(1).mean().item(),',
     '"kl": kl.sum(1).mean().item() / mask.sum(1).mean().item(),',
     "the KL logged (and fed to the adaptive beta) per token instead of per response"),
    ("M4", "minippo/ppo.py", 'beta = update_beta(beta, m["kl"], cfg.target_kl, m["responses"], cfg.kl_horizon)',
     'beta = update_beta(beta, m["kl"] / 40, cfg.target_kl, m["responses"], cfg.kl_horizon)',
     "the adaptive beta reads a per-token KL"),
    ("M5", "minippo/ppo.py", "optimizer.param_groups[0][\"lr\"] = cfg.lr * (1 - it / cfg.iters)",
     "optimizer.param_groups[0][\"lr\"] = cfg.lr * (it / cfg.iters)",
     "the learning rate grows instead of annealing"),
    ("M6", "minippo/ppo.py", "loss = pg_loss + cfg.vf_coef * vf_loss - cfg.ent_coef * mb_entropy",
     "loss = pg_loss + cfg.vf_coef * vf_loss + cfg.ent_coef * mb_entropy",
     "the entropy bonus with the wrong sign"),
    ("M7", "minippo/ppo.py", "grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)",
     "grad_norm = torch.nn.utils.get_total_norm([p.grad for p in policy.parameters() if p.grad is not None])",
     "no gradient clipping"),
    ("M8", "minippo/ppo.py", "if cfg.whiten:",
     "if not cfg.whiten:",
     "advantages whitened when they should not be, and not when they should"),
    ("M9", "minippo/ppo.py", 'mb_logprobs, mb["old_logprobs"], mb["advantages"], mb_values, mb["old_values"],',
     'mb_logprobs, mb["old_logprobs"], mb["returns"], mb_values, mb["old_values"],',
     "PPO weighs the ratio by the returns instead of the advantages"),
    ("M10", "minippo/rl.py", "b = (R.sum() - R) / (len(R) - 1)                          # leave-one-out baseline",
     "b = R.mean()                          # leave-one-out baseline",
     "the REINFORCE baseline includes the sample itself: the gradient shrinks by (B-1)/B"),
    ("M11", "minippo/rl.py", "vf_loss = 0.5 * seq_mean(torch.maximum((values - returns) ** 2, (values_clipped - returns) ** 2), mask)",
     "vf_loss = 0.5 * seq_mean(torch.minimum((values - returns) ** 2, (values_clipped - returns) ** 2), mask)",
     "the value-loss clip takes the min, not the max"),
    ("M12", "minippo/rl.py", "values = values * mask",
     "values = values",
     "GAE leaves V non-zero on padding"),
    ("M13", "minippo/rl.py", "rewards = -beta * kl",
     "rewards = beta * kl",
     "the KL penalty with the wrong sign"),
    ("M14", "minippo/rl.py", "pg_loss = seq_mean(pg_losses, mask)",
     "pg_loss = masked_mean(pg_losses, mask)",
     "PPO's loss a mean over tokens instead of a sum over tokens, mean over responses"),
    ("M15", "minippo/rl.py", "-advantages * ratio.clamp(1 - clip, 1 + clip))",
     "-advantages * ratio.clamp(1 - clip, 1 + 2 * clip))",
     "an asymmetric clip"),
    ("M16", "minippo/rl.py", "pg_losses = torch.maximum(-advantages * ratio,            # pessimistic of the two surrogates",
     "pg_losses = torch.minimum(-advantages * ratio,            # pessimistic of the two surrogates",
     "the optimistic instead of the pessimistic surrogate"),
    ("M17", "minippo/rl.py", "next_adv = delta + gamma * lam * next_adv",
     "next_adv = delta + gamma * next_adv",
     "GAE ignores lambda"),
    ("M18", "minippo/rl.py", "error = min(max(kl / target - 1, -0.2), 0.2)",
     "error = min(max(kl / target - 1, -2.0), 2.0)",
     "the adaptive beta's step is not bounded"),
    ("M19", "minippo/rl.py", "last = mask.sum(1).long() - 1                             # index of EOS (or of the last token)",
     "last = mask.sum(1).long() * 0                             # index of EOS (or of the last token)",
     "r(x, y) paid at the first token instead of the last"),
    ("M20", "minippo/evaluate.py", '"optimality_gap": (j_star - j_pol) / (j_star - j_ref) if j_star > j_ref else float("nan"),',
     '"optimality_gap": (j_pol - j_star) / (j_star - j_ref) if j_star > j_ref else float("nan"),',
     "the optimality gap with its sign reversed"),
    ("M21", "minippo/evaluate.py", "j_ref = r_ref.mean().item()",
     "j_ref = r_pol.mean().item()",
     "J(pi_ref) estimated from the policy's samples"),
    ("M22", "minippo/evaluate.py", "j_pol = (r_pol - beta * kl_pol).mean().item()",
     "j_pol = r_pol.mean().item()",
     "the evaluation drops the policy's KL"),
    ("M23", "minippo/evaluate.py", "se = beta * (w.std() / (w.mean() * math.sqrt(len(w)))).item()",
     "se = beta * (w.std() / w.mean()).item()",
     "the standard error of J* without its 1/sqrt(n)"),
    ("M24", "minippo/evaluate.py", "value = r.max().item() + beta * math.log(w.mean().item())",
     "value = r.mean().item()",
     "J* replaced by the mean reward"),
    ("M25", "minippo/evaluate.py", "- response_logprobs(ref, ids[j:j + rows], tokens[j:j + rows], cfg.temperature)[0]",
     "- response_logprobs(model, ids[j:j + rows], tokens[j:j + rows], cfg.temperature)[0]",
     "the evaluation's KL against the policy itself"),
    ("M26", "minippo/evaluate.py", '"objective_policy_se": (r_pol - beta * kl_pol).std().item() / math.sqrt(len(xs)),',
     '"objective_policy_se": (r_pol - beta * kl_pol).std().item() / len(xs),',
     "the standard error of J(theta) divided by n instead of sqrt(n)"),
    ("M27", "minippo/evaluate.py", "j_star, r_star, kl_star = (sum(v) / len(prompts) for v in (j_star, r_star, kl_star))",
     "j_star, r_star, kl_star = (max(v) for v in (j_star, r_star, kl_star))",
     "J* the best prompt's instead of the mean over prompts"),
    ("M28", "minippo/rollout.py", "return torch.tensor([float(reward_fn(x, y)) if done else NO_EOS_PENALTY",
     "return torch.tensor([float(reward_fn(x, y)) if True else NO_EOS_PENALTY",
     "a response without EOS is scored by the reward instead of the penalty"),
    ("M29", "minippo/rollout.py", "return torch.tensor([[vocab.pad_id] * (P - len(r)) + r for r in rows], device=device)",
     "return torch.tensor([r + [vocab.pad_id] * (P - len(r)) for r in rows], device=device)",
     "prompts right-padded: responses no longer start right after their prompt"),
    ("M30", "minippo/model.py", "mask = ((k_col <= q_col) & real[:, None, None, :]) | (k_col == q_col)  # (B, 1, T, S)",
     "mask = ((k_col <= q_col + 1) & real[:, None, None, :]) | (k_col == q_col)  # (B, 1, T, S)",
     "attention sees one token of the future"),
    ("M31", "minippo/model.py", "logp = torch.log_softmax(logits / temperature, dim=-1)              # log pi at temperature T",
     "logp = torch.log_softmax(logits, dim=-1)              # log pi at temperature T",
     "sampling ignores the temperature"),
    ("M32", "minippo/rl.py", "return float(1 - var_err / var) if var > 0 else float(\"nan\")",
     "return float(1 - var / var_err) if var > 0 else float(\"nan\")",
     "explained variance inverted"),
    ("M33", "minippo/ppo.py", "ref = copy.deepcopy(policy).requires_grad_(False).eval()    # pi_ref: the pretrained model, frozen",
     "ref = policy    # pi_ref: the pretrained model, frozen",
     "train() uses the policy itself as pi_ref: the KL is 0 throughout"),
    ("M34", "minippo/ppo.py", "return ref, beta",
     "return policy, beta",
     "train() returns the tuned policy instead of the frozen pi_ref"),
    ("M35", "minippo/rollout.py", "texts.append(text.rstrip(\"\\n\"))",
     "texts.append(text)",
     "y keeps its EOS character"),
    ("M36", "minippo/ppo.py", "scores = score(reward_fn, xs, ys, finished, device)                  # (B,)",
     "scores = score(reward_fn, [vocab.decode(p) for p in prompt_ids.tolist()], ys, finished, device)  # (B,)",
     "the reward gets x decoded from the prompt ids, with the leading EOS"),
    ("M37", "minippo/rollout.py", "texts.append(text.rstrip(\"\\n\"))",
     "texts.append(text[:-1])",
     "the last character dropped as if EOS were always there: a response cut at the limit loses one"),
    ("M38", "minippo/data.py", "return \"\".join(self.chars[i] for i in ids if i < len(self.chars))",
     "return \"\".join((self.chars + \" \")[i] for i in ids)",
     "decoding turns PAD into a character: y carries padding"),
    ("M39", "minippo/ppo.py",
     "xs = [prompts[i] for i in torch.randint(len(prompts), (cfg.batch // G,)).tolist() for _ in range(G)]",
     "xs = [prompts[i] for i in torch.randint(len(prompts) - 1, (cfg.batch // G,)).tolist() for _ in range(G)]",
     "prompt sampling never draws the last prompt"),
    ("M40", "minippo/model.py", "nxt = torch.multinomial(logp.exp(), 1).squeeze(1)                   # (B,)",
     "nxt = torch.multinomial(torch.softmax(logits, -1), 1).squeeze(1)                   # (B,)",
     "the sampler draws from softmax(logits), ignoring T (its log-probs still use T)"),
    ("M41", "minippo/model.py", "nxt = torch.multinomial(logp.exp(), 1).squeeze(1)                   # (B,)",
     "nxt = torch.multinomial(torch.softmax(logits / temperature / temperature, -1), 1).squeeze(1)  # (B,)",
     "the sampler divides the logits by T twice"),
    ("M42", "minippo/model.py", "return self.lm_head(x), self.value_head(x).squeeze(-1)",
     "return self.lm_head(x), self.value_head(x.detach()).squeeze(-1)",
     "the value head reads a detached hidden state: the value loss no longer trains the trunk"),
    ("M43", "minippo/ppo.py", "loss = pg_loss + cfg.vf_coef * vf_loss - cfg.ent_coef * mb_entropy",
     "loss = pg_loss + cfg.vf_coef * vf_loss.detach() - cfg.ent_coef * mb_entropy",
     "the value loss detached from the update"),
    ("M44", "minippo/evaluate.py", "kls.append((log_ratio * mask).sum(1))                  # log pi(y|x) - log pi_ref(y|x)",
     "kls.append(log_ratio.sum(1))                  # log pi(y|x) - log pi_ref(y|x)",
     "the evaluation's KL sums padding positions too"),
    ("M45", "minippo/evaluate.py", "kls.append((log_ratio * mask).sum(1))                  # log pi(y|x) - log pi_ref(y|x)",
     "kls.append((log_ratio * mask).sum(1) / mask.sum(1))                  # log pi(y|x) - log pi_ref(y|x)",
     "the evaluation's KL a per-token mean instead of a per-response sum"),
    ("M46", "minippo/evaluate.py",
     "log_ratio = torch.cat([response_logprobs(model, ids[j:j + rows], tokens[j:j + rows], cfg.temperature)[0]",
     "log_ratio = torch.cat([response_logprobs(model, ids[j:j + rows], tokens[j:j + rows], 1.0)[0]",
     "the evaluation's log pi at T = 1 instead of the sampling temperature"),
    ("M47", "minippo/rl.py", '"approx_kl": masked_mean(-log_ratio, mask),                      # k1',
     '"approx_kl": masked_mean(log_ratio, mask),                      # k1',
     "approx_kl with its sign flipped (log pi - log pi_old)"),
    ("M48", "toy_bandit.py", "if t > half:",
     "if t >= half:",
     "Polyak averaging takes one iterate too many"),
    ("M49", "toy_bandit.py", "mean_theta += theta / (steps - half)  # Polyak: mean of theta over the second half",
     "mean_theta += history[t - 1][1] / (steps - half)  # Polyak: mean of theta over the second half",
     "Polyak averaging mixes in the previous iterate instead of the current one"),
    ("M50", "minippo/rl.py", "A = R - R.mean(1, keepdim=True)",
     "A = R - R.mean()",
     "GRPO's baseline the batch's mean, not the group's"),
    ("M51", "minippo/rl.py", "return (A / (R.std(1, keepdim=True) + eps) if std else A).flatten()",
     "return (A / (R.std() + eps) if std else A).flatten()",
     "GRPO divides by the batch's std, not the group's"),
    ("M52", "minippo/rl.py", 'return {"k1": d, "k2": 0.5 * d ** 2, "k3": torch.expm1(-d) + d}[estimator]',
     'return {"k1": d, "k2": 0.5 * d ** 2, "k3": torch.expm1(d) - d}[estimator]',
     "k3 with its ratio inverted: pi / pi_ref - 1 - log(pi / pi_ref)"),
    ("M53", "minippo/rl.py", 'return {"k1": d, "k2": 0.5 * d ** 2, "k3": torch.expm1(-d) + d}[estimator]',
     'return {"k1": d, "k2": d ** 2, "k3": torch.expm1(-d) + d}[estimator]',
     "k2 without its 1/2: twice the KL's gradient"),
    ("M54", "minippo/ppo.py", "reduce = response_mean if cfg.algo == \"grpo\" and not cfg.dr_grpo else seq_mean    # over a response's tokens",
     "reduce = seq_mean    # over a response's tokens",
     "GRPO without its per-response length normalisation"),
    ("M55", "minippo/ppo.py", "in_reward = beta if kl_penalty(cfg) == \"reward\" else 0.0   # beta of the KL in the reward, or 0",
     "in_reward = beta   # beta of the KL in the reward, or 0",
     "the KL paid twice: in the reward and as a loss term"),
    ("M56", "minippo/ppo.py", "return cfg.kl_penalty if cfg.kl_penalty != \"auto\" else \"k3\" if cfg.algo == \"grpo\" else \"reward\"",
     "return cfg.kl_penalty if cfg.kl_penalty != \"auto\" else \"reward\"",
     "GRPO's default KL in the reward instead of k3 as a loss"),
    ("M57", "minippo/ppo.py", "loss = loss + beta * reduce(kl_estimate(mb_logprobs, mb[\"ref_logprobs\"], mb[\"mask\"], penalty),",
     "loss = loss - beta * reduce(kl_estimate(mb_logprobs, mb[\"ref_logprobs\"], mb[\"mask\"], penalty),",
     "the KL loss term with the wrong sign"),
    ("M58", "minippo/ppo.py", "advantages = group_advantages(R, G, std=cfg.group_std and not cfg.dr_grpo)[:, None] * mask  # (B, L)",
     "advantages = group_advantages(R, G, std=cfg.group_std)[:, None] * mask  # (B, L)",
     "Dr. GRPO still divides by the group's std"),
    ("M59", "minippo/evaluate.py", "r_star.append((w @ r).item())                                  # E_pi*[r]",
     "r_star.append(r.mean().item())                                  # E_pi*[r]",
     "E_pi*[r] taken as pi_ref's mean reward"),
    ("M60", "minippo/evaluate.py", '"kl_to_optimum": (j_star - j_pol) / beta if beta else math.nan,  # J* - J(theta) = beta KL(pi_theta || pi*)',
     '"kl_to_optimum": (j_star - j_pol) if beta else math.nan,  # J* - J(theta) = beta KL(pi_theta || pi*)',
     "KL(pi_theta || pi*) not divided by beta"),
    ("M81", "minippo/evaluate.py", "kl_star.append(torch.xlogy(w, w * n).sum().item())             # KL(pi* || pi_ref) = E_pi*[log(n w)]",
     "kl_star.append(torch.xlogy(w, w).sum().item())             # KL(pi* || pi_ref) = E_pi*[log(n w)]",
     "KL(pi* || pi_ref) without the n of pi_ref's weights 1/n"),
    ("M83", "minippo/ppo.py", "pg_losses, stats = clipped_surrogate(mb_logprobs, mb[\"old_logprobs\"], mb[\"advantages\"],",
     "pg_losses, stats = clipped_surrogate(mb_logprobs, mb_logprobs.detach(), mb[\"advantages\"],",
     "GRPO without its trust region: the ratio against the current policy, always 1"),
    ("M84", "minippo/ppo.py", "epochs, mb_size = (1, B) if cfg.algo == \"reinforce\" else (cfg.epochs, cfg.minibatch)",
     "epochs, mb_size = (cfg.epochs, cfg.minibatch) if cfg.algo == \"ppo\" else (1, B)",
     "GRPO takes REINFORCE's one step instead of PPO's epochs and minibatches"),
    ("M82", "minippo/evaluate.py",
     "w = torch.softmax((r - r.max()) / beta, 0) if beta else (r == r.max()).double() / (r == r.max()).sum()",
     "w = torch.softmax(r / beta, 0) if beta else (r == r.max()).double() / (r == r.max()).sum()",
     "pi*'s weights from r / beta: NaN once r / beta is -inf for every sample (a tiny beta)"),
    ('M61', 'toy_bandit.py', "return d                         # k2 = d^2 / 2                            k2' = d",
     "return d ** 2 / 2                # k2 = d^2 / 2                            k2' = d",
     "k2's per-sample weight is k2 itself, not its derivative d"),
    ('M62', 'toy_bandit.py', "return 1 - np.exp(-d)            # k3 = rho - 1 - log rho (GRPO)           k3' = 1 - rho",
     "return 1 - np.exp(d)             # k3 = rho - 1 - log rho (GRPO)           k3' = 1 - rho",
     "k3's per-sample weight with the ratio inverted (1 - w for 1 - rho)"),
    ('M63', 'toy_bandit.py', "return np.exp(d) - 1                 # inverted: w - 1 - log w, w = 1 / rho    k'  = w - 1",
     "return np.exp(d) - 1 - d             # inverted: w - 1 - log w, w = 1 / rho    k'  = w - 1",
     "inverted k3's weight is the loss value, not its derivative w - 1"),
    ('M64', 'toy_bandit.py', 'penalty = np.zeros_like(pi)                                   # sum_a pi(a) (e_a - pi) = 0',
     'penalty = pi * (d - pi @ d)                                   # sum_a pi(a) (e_a - pi) = 0',
     "k1 as a loss credited with k1-in-the-reward's penalty gradient (the bug it hides)"),
    ('M65', 'toy_bandit.py', 'penalty = pi - np.exp(log_ref)                                # pi - pi_ref',
     'penalty = pi * (d - pi @ d)                                   # pi - pi_ref',
     "k3 as a loss given the reverse-KL gradient ('k3 is unbiased, so same as k1 in the reward')"),
    ('M66', 'toy_bandit.py', 'penalty = pi * (np.exp(d) - pi @ np.exp(d))                   # pi * (w - E_pi w)',
     'penalty = pi * (np.exp(-d) - pi @ np.exp(-d))                 # pi * (w - E_pi w)',
     "inverted k3's closed form with rho for w"),
    ('M67', 'toy_bandit.py', 'return pi * (r - pi @ r) / sigma - beta * penalty       # grad J / sigma - beta E[grad k]',
     'return (pi * (r - pi @ r) - beta * penalty) / sigma     # grad J / sigma - beta E[grad k]',
     'the std divides the KL loss term too (beta_eff = beta)'),
    ('M68', 'toy_bandit.py', "coef = (r - pi @ r) / sigma - beta * kl_weight(placement, d)  # A(a) - beta k'(d(a))",
     "coef = (r - pi @ r - beta * kl_weight(placement, d)) / sigma  # A(a) - beta k'(d(a))",
     'per-sample: the std divides the KL loss term too'),
    ('M69', 'toy_bandit.py', 'shaped = r - beta * d                                       # r~ = r - beta d',
     'shaped = r + beta * d                                       # r~ = r - beta d',
     'per-sample KL in the reward with the wrong sign'),
    ('M70', 'toy_bandit.py', 'return ref / (u + steep)',
     'return ref * np.exp(-steep) / (ref * np.exp(-steep)).sum()',
     'k3 as a loss claimed to converge to pi*'),
    ('M71', 'toy_bandit.py', 'return ref * np.maximum(0, v - steep)               # pi = pi_ref max(0, v - (max r - r) / beta)',
     'return np.maximum(0, v - steep) / np.maximum(0, v - steep).sum()  # pi = pi_ref max(0, v - (max r - r) / beta)',
     'water-filling without the pi_ref weights'),
    ('M72', 'toy_bandit.py', 'return at(b), b',
     'return at(beta), b',
     "the std variant's fixed point taken at beta, not beta_eff = beta sigma"),
    ('M73', 'toy_bandit.py', "return math.sqrt(pi @ (r - pi @ r) ** 2)  # sigma_pi(r): GRPO's group std of r as G -> inf",
     "return math.sqrt(r.var())  # sigma_pi(r): GRPO's group std of r as G -> inf",
     'the group std taken over arms, not under pi'),
    ('M74', 'toy_bandit.py', 'return float(pi @ r - beta * pi[on] @ (np.log(pi[on]) - log_ref[on]))',
     'return float(pi @ r - beta * pi[on] @ (log_ref[on] - np.log(pi[on])))',
     "score's KL with its sign flipped"),
    ('M75', 'toy_bandit.py', 'gap = lambda j: (j_star - j) / (j_star - j_ref) if j_star > j_ref else 0.0  # pi* 0, pi_ref 1',
     'gap = lambda j: (j_star - j) / j_star if j_star > j_ref else 0.0  # pi* 0, pi_ref 1',
     'the gap normalised by J* instead of J* - J(pi_ref)'),
    ('M76', 'toy_bandit.py', 'step = lambda th: kl_direction(th, r, beta, log_ref, name, std)',
     'step = lambda th: kl_direction(th, r, beta, log_ref, name)',
     "part 6's ascent ignores std: the std run settles at plain k3's point"),
    ('M77', 'toy_bandit.py', 'theta = theta + lr * direction(theta)',
     'theta = theta + lr * direction(theta) / (1 + t)',
     'exact ascent with a decaying step: stops short of the fixed points'),
    ('M78', 'toy_bandit.py', 'enum = policy(probe) @ sample_steps(probe, r, beta, log_ref, name)  # sum_a pi(a) step(a)',
     'enum = sample_steps(probe, r, beta, log_ref, name).mean(0)  # sum_a pi(a) step(a)',
     "part 6's enumeration averages the arms uniformly, not over pi"),
    ('M79', 'toy_bandit.py', 'sigma = (group_std(pi, r) or 1.0) if std else 1.0     # sigma = 0: A = 0 wherever pi > 0',
     'sigma = 1.0     # sigma = 0: A = 0 wherever pi > 0',
     'per-sample steps ignore the std'),
    ('M80', 'toy_bandit.py', 'u = bisect(lambda u: (ref / (u + steep)).sum() - 1, 0.0, 1.0)',
     'u = bisect(lambda u: (ref / (u + steep)).sum() - 1, 0.0, 0.5)',
     "k3's root bracket too narrow: c cannot reach its value"),
]

# the reward model learned from preferences (an extra), against its own tests
RM_TESTS = ["tests/test_reward_model.py"]
RM_MUTANTS = [
    ("R1", "minippo/extras/reward_model.py", "d = r_a - r_b                                                           # (N,)",
     "d = r_b - r_a                                                           # (N,)",
     "Bradley-Terry loss rewards the loser"),
    ("R2", "minippo/extras/reward_model.py", "return -(p * F.logsigmoid(d) + (1 - p) * F.logsigmoid(-d)).mean()",
     "return -(p * F.logsigmoid(d) + (1 - p) * F.logsigmoid(d)).mean()",
     "the loss of a pair won by y_b pushes y_a up"),
    ("R3", "minippo/extras/reward_model.py", "return 1 / (1 + math.exp(-max(-700.0, min(700.0, (g_a - g_b) / tau))))",
     "return 1 / (1 + math.exp(-max(-700.0, min(700.0, (g_b - g_a) / tau))))",
     "noisy labels prefer the worse response"),
    ("R4", "minippo/extras/reward_model.py", 'answer = "t" if ga == gb else "1" if rng.random() < p else "2"',
     'answer = "t" if ga == gb else "2" if rng.random() < p else "1"',
     "gold labels name the loser"),
    ("R5", "minippo/extras/reward_model.py", "out.append(model(ids)[1][:, -1])                                    # (rows,) value head at EOS",
     "out.append(model(ids)[1][:, 0])                                    # (rows,) value head at EOS",
     "r_phi read at the first column (often PAD) instead of the final EOS"),
    ("R6", "minippo/extras/reward_model.py", 'ANSWERS = {"1": 1.0, "2": 0.0, "t": 0.5}',
     'ANSWERS = {"1": 1.0, "2": 1.0, "t": 0.5}',
     "a person's answer 2 read as 1"),
    ("R7", "minippo/extras/reward_model.py", "return gain, -gain * r.mean().item()",
     "return gain, gain * r.mean().item()",
     "the normalisation shifts the mean the wrong way"),
    ("R8", "minippo/extras/reward_model.py", "gain = 1 / r.std().item()",
     "gain = r.std().item()",
     "the normalisation multiplies by the standard deviation"),
    ("R9", "minippo/extras/reward_model.py", "j_pol, j_ref = g_pol.mean().item() - beta * kl_policy, g_ref.mean().item()",
     "j_pol, j_ref = g_pol.mean().item(), g_ref.mean().item()",
     "the gold J forgets the KL penalty"),
    ("R10", "minippo/extras/reward_model.py", "return torch.tensor([NO_EOS_PENALTY if t.endswith(NO_EOS) else gold_fn(x, t[len(x):])",
     "return torch.tensor([gold_fn(x, t[len(x):])",
     "the gold reward scores responses that never ended"),
    ("R11", "minippo/extras/reward_model.py", "pairs = [q for q in pairs if q[3] != 0.5]",
     "pairs = list(pairs)",
     "the accuracy counts ties, which have no right answer"),
    ("R12", "minippo/extras/runs.py", 'm["gold_reward"] = sum(self.gold(x, y) if done else NO_EOS_PENALTY for x, y, done in texts) / n',
     'm["gold_reward"] = m["reward"]',
     "the logged gold reward is the proxy's"),
    ("R13", "minippo/extras/launch.py", "run.gold = checked(REWARDS[cfg.reward])",
     "run.gold = checked(proxy[0])",
     "the gold reward is the learned one"),
    ("R14", "minippo/extras/reward_model.py",
     "usable = not a.endswith(NO_EOS) and not b.endswith(NO_EOS) and not (decided and ga == gb)",
     "usable = not (decided and ga == gb)",
     "pairs with a response that never ended are trained on"),
    ("R15", "minippo/extras/reward_model.py", "return (d * sign > 0).float().mean().item()",
     "return (d * sign >= 0).float().mean().item()",
     "the accuracy counts equal rewards as a right ranking"),
    ("R16", "minippo/extras/reward_model.py",
     "usable = not a.endswith(NO_EOS) and not b.endswith(NO_EOS) and not (decided and ga == gb)",
     "usable = not a.endswith(NO_EOS) and not b.endswith(NO_EOS)",
     "held-out pairs include ties, which have no right answer"),
    ("R17", "minippo/extras/reward_model.py", "r = model(torch.cat([ids_a[idx], ids_b[idx]]))[1][:, -1]            # (2 mb,) r_phi at EOS",
     "r = model(torch.cat([ids_a[idx], ids_b[idx]]))[1][:, -2]            # (2 mb,) r_phi at EOS",
     "r_phi trained at the last character of y, scored at the EOS after it"),
    ("R18", "minippo/extras/reward_model.py",
     "ids = encode_prompts(vocab, [x + y + EOS for x, y in zip(xs[i:i + rows], ys[i:i + rows])], device)",
     "ids = encode_prompts(vocab, [x + y for x, y in zip(xs[i:i + rows], ys[i:i + rows])], device)",
     "r_phi scored without the EOS it was trained to read"),
    ("R19", "minippo/extras/overoptimisation.py", 'peak, s = max(r["windows"], key=lambda p: p["gold_reward"]), r["summary"]',
     'peak, s = max(r["windows"], key=lambda p: p["proxy_reward"]), r["summary"]',
     "the report's gold peak is the proxy's peak"),
    ("R20", "minippo/extras/overoptimisation.py", 'peak["proxy_reward"], math.sqrt(max(0.0, s["kl_policy"])), s["reward_policy"], s["gold_reward_policy"],',
     'peak["proxy_reward"], max(0.0, s["kl_policy"]), s["reward_policy"], s["gold_reward_policy"],',
     "the report's end sqrt KL is the KL itself"),
]

# the command around the loop (an extra), against the test of what it promises
COMMAND_TESTS = ["tests/test_command.py::test_resuming_a_finished_run_keeps_the_seconds_it_measured"]
COMMAND_MUTANTS = [
    ("C1", "minippo/extras/runs.py", 'self.rl_seconds_before = self.rl_seconds = float(state["rl_seconds"])',
     'self.rl_seconds_before = float(state["rl_seconds"])',
     "resuming a finished run reports 0 s of RL"),
    ("C2", "minippo/extras/runs.py", 'self.pretrain_seconds += float(state.get("pretrain_seconds", 0.0))',
     'self.pretrain_seconds += 0.0',
     "a resumed run forgets the pretraining it measured"),
]


def skipped(folder: str, names: list) -> list:
    """What a copy leaves out: caches anywhere, and the run folders a user made in the repository's
    top folder (only there: minippo/extras/overoptimisation.py must not match "overopt*")."""
    top = ("out", "sweeps", "figures_out", "exercises", "overopt", "rm")
    return [n for n in names if n in (".git", "__pycache__", ".pytest_cache")
            or (os.path.samefile(folder, ROOT) and n.startswith(top))]


def apply(root: str, path: str, old: str, new: str) -> None:
    full = os.path.join(root, path)
    text = open(full).read()
    if text.count(old) != 1:
        raise SystemExit(f"mutant does not apply: {path} has {text.count(old)} copies of {old!r}")
    open(full, "w").write(text.replace(old, new))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tests", nargs="+", default=FAST, help="what pytest runs [default: the fast tests]")
    p.add_argument("--only", nargs="+", default=[], help="mutant ids, e.g. M1 M21")
    args = p.parse_args(argv)
    chosen = [m for m in MUTANTS + RM_MUTANTS + COMMAND_MUTANTS if not args.only or m[0] in args.only]
    survivors = []
    with tempfile.TemporaryDirectory() as tmp:
        for mid, path, old, new, what in chosen:
            copy = os.path.join(tmp, mid)
            shutil.copytree(ROOT, copy, ignore=skipped)
            apply(copy, path, old.strip(), new.strip())
            t = time.time()
            result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                                     *{"R": RM_TESTS, "C": COMMAND_TESTS}.get(mid[0], args.tests)], cwd=copy,
                                    capture_output=True, text=True)
            killed = result.returncode != 0
            print(f"{mid:<4} {'killed ' if killed else 'SURVIVED'} {time.time() - t:5.1f} s  {path}: {what}",
                  flush=True)
            if not killed:
                survivors.append(mid)
            shutil.rmtree(copy)
    n = len(chosen)
    print(f"\nscore: {n - len(survivors)} of {n} mutants killed; survivors: {' '.join(survivors) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
