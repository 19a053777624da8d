"""Mutation testing: plant one single-line bug at a time in a copy of the repository, run the
tests there, count the bugs they catch. A surviving mutant is a bug the suite would let through.

    python tests/mutants.py                  # every mutant (about 25 minutes on 2 quiet cores)
    python tests/mutants.py --only M3 R1     # some of them (--tests: other tests for the M ones)
    python tests/mutants.py --check          # only check that each mutant's text is in the code, once

SPEC below holds one block per mutant: a header "ID FILE | what the bug is", the text as it is
("- " lines), the mutant's text ("+ " lines), each stripped. The id's first letter picks the tests:
M (the lesson) FAST or --tests; R (the reward model), C (the command), D (torchrun), E (sweeps,
plots) tests of their own (TESTS). To add a mutant, append a block; when the code moves, --check
(and tests/test_layout.py) names the blocks to re-anchor. Not run by CI (it takes minutes);
docs/testing.md gives the last score.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = """tests/test_rl.py tests/test_model.py tests/test_exact_gradient.py tests/test_loop.py
tests/test_evaluate.py tests/test_estimators.py tests/test_data.py tests/test_toy_bandit.py
tests/test_toy_kl.py tests/test_layout.py
tests/test_command.py::test_short_seeded_run_raises_reward_and_keeps_kl_bounded
tests/test_command.py::test_same_seed_gives_identical_metrics_and_reinforce_learns""".split()
# by the id's first letter: R the reward model (an extra), against its own tests; C the command
# around the loop (an extra), against the tests of what it promises; D torchrun and E the sweeps,
# plots and evaluations around it, against their files; M FAST, or --tests
COMMAND = """tests/test_command.py::test_resuming_a_finished_run_keeps_the_seconds_it_measured
tests/test_command.py::test_a_bad_flag_is_one_line_and_creates_nothing
tests/test_command.py::test_a_resume_goes_on_from_the_saved_beta_seconds_and_logs
tests/test_command.py::test_a_resume_must_repeat_the_run_s_settings
tests/test_command.py::test_one_writer_per_folder_and_free_again_when_its_holder_dies
tests/test_command.py::test_force_never_removes_an_input_of_the_command
tests/test_command.py::test_a_stop_in_the_last_iteration_saves_and_the_resume_only_evaluates""".split()
TESTS = {"R": ["tests/test_reward_model.py"], "D": ["tests/test_distributed.py"], "C": COMMAND}
TESTS["E"] = ["tests/test_experiments.py"]

SPEC = r"""
M1 minippo/ppo.py | log pi_ref computed with the policy: the KL is always 0
- ref_logprobs, _, _ = response_logprobs(ref, prompt_ids, tokens, T)
+ ref_logprobs, _, _ = response_logprobs(policy, prompt_ids, tokens, T)
M2 minippo/ppo.py | the response mask drops the EOS token
- mask = (tokens != vocab.pad_id).float()
+ mask = ((tokens != vocab.pad_id) & (tokens != vocab.eos_id)).float()
M3 minippo/ppo.py | the KL logged (and fed to the adaptive beta) per token instead of per response
- "kl": kl.sum(1).mean().item(),
+ "kl": kl.sum(1).mean().item() / mask.sum(1).mean().item(),
M4 minippo/ppo.py | the adaptive beta reads a per-token KL
- beta = rl.update_beta(beta, m["kl"], cfg.target_kl, m["responses"], cfg.kl_horizon)
+ beta = rl.update_beta(beta, m["kl"] / 40, cfg.target_kl, m["responses"], cfg.kl_horizon)
M5 minippo/ppo.py | the learning rate grows instead of annealing
- optimizer.param_groups[0]["lr"] = cfg.lr * (1 - it / cfg.iters)
+ optimizer.param_groups[0]["lr"] = cfg.lr * (it / cfg.iters)
M6 minippo/ppo.py | the entropy bonus with the wrong sign
- loss = pg_loss + cfg.vf_coef * vf_loss - cfg.ent_coef * mb_entropy
+ loss = pg_loss + cfg.vf_coef * vf_loss + cfg.ent_coef * mb_entropy
M7 minippo/ppo.py | no gradient clipping
- grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
+ grad_norm = torch.nn.utils.get_total_norm([p.grad for p in policy.parameters() if p.grad is not None])
M8 minippo/ppo.py | advantages whitened when they should not be, and not when they should
- if cfg.whiten:
+ if not cfg.whiten:
M9 minippo/ppo.py | PPO weighs the ratio by the returns instead of the advantages
- mb_logprobs, old, adv, mb_values, mb["old_values"], mb["returns"], m, cfg.clip)
+ mb_logprobs, old, mb["returns"], mb_values, mb["old_values"], mb["returns"], m, cfg.clip)
M10 minippo/rl.py | the REINFORCE baseline includes the sample itself: the gradient shrinks by (B-1)/B
- b = (R.sum() - R) / (len(R) - 1)                          # leave-one-out baseline
+ b = R.mean()                          # leave-one-out baseline
M11 minippo/rl.py | the value-loss clip takes the min, not the max
- vf_loss = 0.5 * seq_mean(torch.maximum((values - returns) ** 2, (values_clipped - returns) ** 2), mask)
+ vf_loss = 0.5 * seq_mean(torch.minimum((values - returns) ** 2, (values_clipped - returns) ** 2), mask)
M12 minippo/rl.py | GAE leaves V non-zero on padding
- values = values * mask
+ values = values
M13 minippo/rl.py | the KL penalty with the wrong sign
- rewards = -beta * k
+ rewards = beta * k
M14 minippo/rl.py | PPO's loss a mean over tokens instead of a sum over tokens, mean over responses
- pg_loss = seq_mean(pg_losses, mask)
+ pg_loss = masked_mean(pg_losses, mask)
M15 minippo/rl.py | an asymmetric clip
- -advantages * ratio.clamp(1 - clip, 1 + clip))
+ -advantages * ratio.clamp(1 - clip, 1 + 2 * clip))
M16 minippo/rl.py | the optimistic instead of the pessimistic surrogate
- pg_losses = torch.maximum(-advantages * ratio,            # pessimistic of the two surrogates
+ pg_losses = torch.minimum(-advantages * ratio,            # pessimistic of the two surrogates
M17 minippo/rl.py | GAE ignores lambda
- next_adv = delta + gamma * lam * next_adv
+ next_adv = delta + gamma * next_adv
M18 minippo/rl.py | the adaptive beta's step is not bounded
- error = min(max(kl / target - 1, -0.2), 0.2)
+ error = min(max(kl / target - 1, -2.0), 2.0)
M19 minippo/rl.py | r(x, y) paid at the first token instead of the last
- last = mask.sum(1).long() - 1                             # index of EOS (or of the last token)
+ last = mask.sum(1).long() * 0                             # index of EOS (or of the last token)
M20 minippo/evaluate.py | the optimality gap with its sign reversed
- gap = (j_star - j_pol) / (j_star - j_ref) if j_star > j_ref and ess >= MIN_ESS else math.nan
+ gap = (j_pol - j_star) / (j_star - j_ref) if j_star > j_ref and ess >= MIN_ESS else math.nan
M21 minippo/evaluate.py | J(pi_ref) estimated from the policy's samples
- j_ref = r_ref.mean().item()
+ j_ref = r_pol.mean().item()
M22 minippo/evaluate.py | the evaluation drops the policy's KL
- j_pol = (r_pol - beta * kl_pol).mean().item()
+ j_pol = r_pol.mean().item()
M23 minippo/evaluate.py | the standard error of J* without its 1/sqrt(n)
- se = beta * (w.std() / (w.mean() * math.sqrt(len(w)))).item()
+ se = beta * (w.std() / w.mean()).item()
M24 minippo/evaluate.py | J* replaced by the mean reward
- value = (m + beta * log_mean).item()                            # J* = beta log Z
+ value = r.mean().item()                            # J* = beta log Z
M25 minippo/evaluate.py | the evaluation's KL against the policy itself
- log_ratio.append(response_logprobs(model, *part)[0] - response_logprobs(ref, *part)[0])
+ log_ratio.append(response_logprobs(model, *part)[0] - response_logprobs(model, *part)[0])
M26 minippo/evaluate.py | the standard error of J(theta) divided by n instead of sqrt(n)
- "objective_policy_se": (r_pol - beta * kl_pol).std().item() / math.sqrt(len(xs)),
+ "objective_policy_se": (r_pol - beta * kl_pol).std().item() / len(xs),
M27 minippo/evaluate.py | J* the best prompt's instead of the mean over prompts
- j_star, r_star, kl_star = (sum(f[i] for f in figures) / len(prompts) for i in (0, 2, 3))
+ j_star, r_star, kl_star = (max(f[i] for f in figures) for i in (0, 2, 3))
M28 minippo/rollout.py | a response without EOS is scored by the reward instead of the penalty
- return torch.tensor([float(reward_fn(x, y)) if done else NO_EOS_PENALTY
+ return torch.tensor([float(reward_fn(x, y)) if True else NO_EOS_PENALTY
M29 minippo/rollout.py | prompts right-padded: responses no longer start right after their prompt
- return torch.tensor([[vocab.pad_id] * (P - len(r)) + r for r in rows], device=device)
+ return torch.tensor([r + [vocab.pad_id] * (P - len(r)) for r in rows], device=device)
M30 minippo/model.py | attention sees one token of the future
- mask = ((k_col <= q_col) & real[:, None, None, :]) | (k_col == q_col)  # (B, 1, T, S)
+ mask = ((k_col <= q_col + 1) & real[:, None, None, :]) | (k_col == q_col)  # (B, 1, T, S)
M31 minippo/model.py | sampling ignores the temperature
- logp = torch.log_softmax(logits / temperature, dim=-1)              # log pi at temperature T
+ logp = torch.log_softmax(logits, dim=-1)              # log pi at temperature T
M32 minippo/rl.py | explained variance inverted
- return float(1 - var_err / var) if var > 0 else float("nan")
+ return float(1 - var / var_err) if var > 0 else float("nan")
M33 minippo/ppo.py | train() uses the policy itself as pi_ref: the KL is 0 throughout
- ref = copy.deepcopy(policy).requires_grad_(False).eval()    # pi_ref: the pretrained model
+ ref = policy    # pi_ref: the pretrained model
M34 minippo/ppo.py | train() returns the tuned policy instead of the frozen pi_ref
- return ref, beta
+ return policy, beta
M35 minippo/rollout.py | y keeps its EOS character
- texts.append(text.rstrip("\n"))
+ texts.append(text)
M36 minippo/ppo.py | the reward gets x decoded from the prompt ids, with the leading EOS
- scores = score(reward_fn, xs, ys, finished, device)                  # (B,)
+ scores = score(reward_fn, [vocab.decode(p) for p in prompt_ids.tolist()], ys, finished, device)  # (B,)
M37 minippo/rollout.py | the last character dropped as if EOS were always there: a response cut at the limit loses one
- texts.append(text.rstrip("\n"))
+ texts.append(text[:-1])
M38 minippo/data.py | decoding turns PAD into a character: y carries padding
- return "".join(self.chars[i] for i in ids if i < len(self.chars))
+ return "".join((self.chars + " ")[i] for i in ids)
M39 minippo/ppo.py | prompt sampling never draws the last prompt
- picks = torch.randint(len(prompts), (cfg.batch // G,)).tolist()
+ picks = torch.randint(len(prompts) - 1, (cfg.batch // G,)).tolist()
M40 minippo/model.py | the sampler draws from softmax(logits), ignoring T (its log-probs still use T)
- nxt = torch.multinomial(logp.exp(), 1).squeeze(1)                   # (B,)
+ nxt = torch.multinomial(torch.softmax(logits, -1), 1).squeeze(1)                   # (B,)
M41 minippo/model.py | the sampler divides the logits by T twice
- nxt = torch.multinomial(logp.exp(), 1).squeeze(1)                   # (B,)
+ nxt = torch.multinomial(torch.softmax(logits / temperature / temperature, -1), 1).squeeze(1)  # (B,)
M42 minippo/model.py | the value head reads a detached hidden state: the value loss no longer trains the trunk
- return self.lm_head(x), self.value_head(x).squeeze(-1)
+ return self.lm_head(x), self.value_head(x.detach()).squeeze(-1)
M43 minippo/ppo.py | the value loss detached from the update
- loss = pg_loss + cfg.vf_coef * vf_loss - cfg.ent_coef * mb_entropy
+ loss = pg_loss + cfg.vf_coef * vf_loss.detach() - cfg.ent_coef * mb_entropy
M44 minippo/evaluate.py | the evaluation's KL sums padding positions too
- kls.append((torch.cat(log_ratio) * mask).sum(1))  # log pi(y|x) - log pi_ref(y|x), (B,)
+ kls.append(torch.cat(log_ratio).sum(1))  # log pi(y|x) - log pi_ref(y|x), (B,)
M45 minippo/evaluate.py | the evaluation's KL a per-token mean instead of a per-response sum
- kls.append((torch.cat(log_ratio) * mask).sum(1))  # log pi(y|x) - log pi_ref(y|x), (B,)
+ kls.append((torch.cat(log_ratio) * mask).sum(1) / mask.sum(1))  # log pi(y|x) - log pi_ref(y|x), (B,)
M46 minippo/evaluate.py | the evaluation's log pi at T = 1 instead of the sampling temperature
- part = ids[j:j + rows], tokens[j:j + rows], cfg.temperature
+ part = ids[j:j + rows], tokens[j:j + rows], 1.0
M47 minippo/rl.py | approx_kl with its sign flipped (log pi - log pi_old)
- "approx_kl": masked_mean(-log_ratio, mask),                      # k1
+ "approx_kl": masked_mean(log_ratio, mask),                      # k1
M48 toy_bandit.py | Polyak averaging takes one iterate too many
- if t > half:
+ if t >= half:
M49 toy_bandit.py | Polyak averaging mixes in the previous iterate instead of the current one
- mean_theta += theta / (steps - half)  # Polyak: mean of theta over the second half
+ mean_theta += history[t - 1][1] / (steps - half)  # Polyak: mean of theta over the second half
M50 minippo/rl.py | GRPO's baseline the batch's mean, not the group's
- A = R - R.mean(1, keepdim=True)
+ A = R - R.mean()
M51 minippo/rl.py | GRPO divides by the batch's std, not the group's
- return (A / (R.std(1, keepdim=True) + eps) if std else A).flatten()
+ return (A / (R.std() + eps) if std else A).flatten()
M52 minippo/rl.py | k3 with its ratio inverted: pi / pi_ref - 1 - log(pi / pi_ref)
- return torch.expm1(-d) + d
+ return torch.expm1(d) - d
M53 minippo/rl.py | k2 without its 1/2: twice the KL's gradient
- "k2": ("loss", lambda d, ratio, lp: d**2 / 2),
+ "k2": ("loss", lambda d, ratio, lp: d**2),
M54 minippo/ppo.py | GRPO without its per-response length normalisation
- reduce = rl.response_mean if per_response else rl.seq_mean  # the others sum them
+ reduce = rl.seq_mean  # the others sum them
M55 minippo/ppo.py | the KL paid twice: in the reward and as a loss term
- in_reward = beta if rl.KL_PENALTIES[penalty][0] == "reward" else 0.0
+ in_reward = beta
M56 minippo/ppo.py | GRPO's default KL in the reward instead of k3 as a loss
- return cfg.kl_penalty if cfg.kl_penalty != "auto" else "k3" if cfg.algo == "grpo" else "reward"
+ return cfg.kl_penalty if cfg.kl_penalty != "auto" else "reward"
M57 minippo/ppo.py | the KL loss term with the wrong sign
- loss = loss + beta * reduce(k, m)
+ loss = loss - beta * reduce(k, m)
M58 minippo/ppo.py | Dr. GRPO keeps the per-response length normalisation
- per_response = cfg.algo == "grpo" and cfg.variant != "dr"   # GRPO averages a response's tokens
+ per_response = cfg.algo == "grpo"   # GRPO averages a response's tokens
M59 minippo/evaluate.py | E_pi*[r] taken as pi_ref's mean reward
- r_star = (s @ r).item()                                         # E_pi*[r]
+ r_star = r.mean().item()                                         # E_pi*[r]
M60 minippo/evaluate.py | KL(pi_theta || pi*) not divided by beta
- "kl_to_optimum": (j_star - j_pol) / beta if beta and ess >= MIN_ESS else math.nan,
+ "kl_to_optimum": (j_star - j_pol) if beta and ess >= MIN_ESS else math.nan,
M81 minippo/evaluate.py | KL(pi* || pi_ref) without log Z: E_pi*[r / beta] alone
- kl_star = (s[s > 0] @ u[s > 0] - log_mean).item()               # E_pi*[log pi* / pi_ref]
+ kl_star = (s[s > 0] @ u[s > 0]).item()               # E_pi*[log pi* / pi_ref]
M83 minippo/ppo.py | GRPO without its trust region: the ratio against the current policy, always 1
- pg_losses, stats = rl.clipped_surrogate(mb_logprobs, old, adv, m, cfg.clip)
+ pg_losses, stats = rl.clipped_surrogate(mb_logprobs, mb_logprobs.detach(), adv, m, cfg.clip)
M84 minippo/ppo.py | GRPO takes REINFORCE's one step instead of PPO's epochs and minibatches
- epochs, mb_size = (1, B) if cfg.algo == "reinforce" else (cfg.epochs, cfg.minibatch)
+ epochs, mb_size = (cfg.epochs, cfg.minibatch) if cfg.algo == "ppo" else (1, B)
M82 minippo/evaluate.py | pi*'s weights from r / beta unshifted: NaN once r / beta is -inf for every sample (a tiny beta)
- u = torch.where(r == m, 0.0, (r - m) / beta)   # log pi*/pi_ref + const, shifted for safety
+ u = r / beta   # log pi*/pi_ref + const, shifted for safety
M61 toy_kl.py | k2's per-sample weight is k2 itself, not its derivative d
- "k2 as loss": lambda: d,                # k2 = d^2 / 2                       k2' = d
+ "k2 as loss": lambda: d ** 2 / 2,       # k2 = d^2 / 2                       k2' = d
M62 toy_kl.py | k3's per-sample weight with the ratio inverted (1 - w for 1 - rho)
- "k3 as loss": lambda: 1 - np.exp(-d),   # k3 = rho - 1 - log rho (GRPO)      k3' = 1 - rho
+ "k3 as loss": lambda: 1 - np.exp(d),    # k3 = rho - 1 - log rho (GRPO)      k3' = 1 - rho
M63 toy_kl.py | inverted k3's weight is the loss value, not its derivative w - 1
- "k3 inverted": lambda: np.exp(d) - 1,   # w - 1 - log w, w = 1 / rho         k'  = w - 1
+ "k3 inverted": lambda: np.exp(d) - 1 - d,  # w - 1 - log w, w = 1 / rho         k'  = w - 1
M64 toy_kl.py | k1 as a loss credited with k1-in-the-reward's penalty gradient (the bug it hides)
- penalty = {"k1 as loss": lambda: np.zeros_like(pi),               # sum_a pi(a) (e_a - pi) = 0
+ penalty = {"k1 as loss": lambda: kl_part,               # sum_a pi(a) (e_a - pi) = 0
M65 toy_kl.py | k3 as a loss given the reverse-KL gradient ('k3 is unbiased, so same as k1 in the reward')
- "k3 as loss": lambda: pi - np.exp(log_ref),            # pi - pi_ref
+ "k3 as loss": lambda: kl_part,            # pi - pi_ref
M66 toy_kl.py | inverted k3's closed form with rho for w
- "k3 inverted": lambda: pi * (np.exp(d) - pi @ np.exp(d)),  # pi * (w - E_pi w)
+ "k3 inverted": lambda: pi * (np.exp(-d) - pi @ np.exp(-d)),  # pi * (w - E_pi w)
M67 toy_kl.py | the std divides the KL loss term too (beta_eff = beta)
- return pi * (r - pi @ r) / sigma - beta * penalty       # grad J / sigma - beta E[grad k]
+ return (pi * (r - pi @ r) - beta * penalty) / sigma     # grad J / sigma - beta E[grad k]
M68 toy_kl.py | per-sample: the std divides the KL loss term too
- coef = (r - pi @ r) / sigma - beta * kl_weight(placement, d)  # A(a) - beta k'(d(a))
+ coef = (r - pi @ r - beta * kl_weight(placement, d)) / sigma  # A(a) - beta k'(d(a))
M69 toy_kl.py | per-sample KL in the reward with the wrong sign
- IN_REWARD = {"k1 in reward": lambda d: d,                  # r~ = r - beta k1 = r - beta d
+ IN_REWARD = {"k1 in reward": lambda d: -d,                  # r~ = r - beta k1 = r - beta d
M70 toy_kl.py | k3 as a loss claimed to converge to pi*
- return ref / (u + steep)
+ return ref * np.exp(-steep) / (ref * np.exp(-steep)).sum()
M71 toy_kl.py | water-filling without the pi_ref weights
- return ref * np.maximum(0, v - steep)               # pi = pi_ref max(0, v - (max r - r) / beta)
+ return np.maximum(0, v - steep) / np.maximum(0, v - steep).sum()  # pi = pi_ref max(0, v - (max r - r) / beta)
M72 toy_kl.py | the std variant's fixed point taken at beta, not beta_eff = beta sigma
- return at(b), b
+ return at(beta), b
M73 toy_kl.py | the group std taken over arms, not under pi
- return math.sqrt(pi @ (r - pi @ r) ** 2)  # sigma_pi(r): GRPO's group std of r as G -> inf
+ return math.sqrt(r.var())  # sigma_pi(r): GRPO's group std of r as G -> inf
M74 toy_kl.py | score's KL with its sign flipped
- return float(pi @ r - beta * pi[on] @ (np.log(pi[on]) - log_ref[on]))
+ return float(pi @ r - beta * pi[on] @ (log_ref[on] - np.log(pi[on])))
M75 toy_kl.py | the gap normalised by J* instead of J* - J(pi_ref)
- gap = lambda j: (j_star - j) / (j_star - j_ref) if j_star > j_ref else 0.0  # pi* 0, pi_ref 1
+ gap = lambda j: (j_star - j) / j_star if j_star > j_ref else 0.0  # pi* 0, pi_ref 1
M76 toy_kl.py | part 6's ascent ignores std: the std run settles at plain k3's point
- step = lambda th: kl_direction(th, r, beta, log_ref, name, std)
+ step = lambda th: kl_direction(th, r, beta, log_ref, name)
M77 toy_kl.py | exact ascent with a decaying step: stops short of the fixed points
- theta = theta + lr * direction(theta)
+ theta = theta + lr * direction(theta) / (1 + t)
M78 toy_kl.py | part 6's enumeration averages the arms uniformly, not over pi
- enum = policy(probe) @ sample_steps(probe, r, beta, log_ref, name)  # sum_a pi(a) step(a)
+ enum = sample_steps(probe, r, beta, log_ref, name).mean(0)  # sum_a pi(a) step(a)
M79 toy_kl.py | per-sample steps ignore the std
- sigma = (group_std(pi, r) or 1.0) if std else 1.0     # sigma = 0: A = 0 wherever pi > 0
+ sigma = 1.0     # sigma = 0: A = 0 wherever pi > 0
M80 toy_kl.py | k3's root bracket too narrow: c cannot reach its value
- u = bisect(lambda u: (ref / (u + steep)).sum() - 1, 0.0, 1.0)
+ u = bisect(lambda u: (ref / (u + steep)).sum() - 1, 0.0, 0.5)
R1 minippo/extras/reward_model.py | Bradley-Terry loss rewards the loser
- d = r_a - r_b                                                           # (N,)
+ d = r_b - r_a                                                           # (N,)
R2 minippo/extras/reward_model.py | the loss of a pair won by y_b pushes y_a up
- return -(p * F.logsigmoid(d) + (1 - p) * F.logsigmoid(-d)).mean()
+ return -(p * F.logsigmoid(d) + (1 - p) * F.logsigmoid(d)).mean()
R3 minippo/extras/reward_model.py | noisy labels prefer the worse response
- return 1 / (1 + math.exp(-max(-700.0, min(700.0, (g_a - g_b) / tau))))
+ return 1 / (1 + math.exp(-max(-700.0, min(700.0, (g_b - g_a) / tau))))
R4 minippo/extras/reward_model.py | gold labels name the loser
- answer = "t" if ga == gb else "1" if rng.random() < p else "2"
+ answer = "t" if ga == gb else "2" if rng.random() < p else "1"
R5 minippo/extras/reward_model.py | r_phi read at the first column (often PAD) instead of the final EOS
- out.append(model(ids)[1][:, -1])                                    # (rows,) value head at EOS
+ out.append(model(ids)[1][:, 0])                                    # (rows,) value head at EOS
R6 minippo/extras/reward_model.py | a person's answer 2 read as 1
- ANSWERS = {"1": 1.0, "2": 0.0, "t": 0.5}
+ ANSWERS = {"1": 1.0, "2": 1.0, "t": 0.5}
R7 minippo/extras/reward_model.py | the normalisation shifts the mean the wrong way
- bias = -gain * r.mean().item()
+ bias = gain * r.mean().item()
R8 minippo/extras/reward_model.py | the normalisation multiplies by the standard deviation
- gain = 1 / r.std().item()
+ gain = r.std().item()
R9 minippo/extras/reward_model.py | the gold J forgets the KL penalty
- j_pol, j_ref = g_pol.mean().item() - beta * kl_policy, g_ref.mean().item()
+ j_pol, j_ref = g_pol.mean().item(), g_ref.mean().item()
R10 minippo/extras/reward_model.py | the gold reward scores responses that never ended
- g = [NO_EOS_PENALTY if t.endswith(NO_EOS) else gold_fn(x, t[len(x):]) for x, t in texts]
+ g = [gold_fn(x, t[len(x):]) for x, t in texts]
R11 minippo/extras/reward_model.py | the accuracy counts ties, which have no right answer
- pairs = [q for q in pairs if q[3] != 0.5]
+ pairs = list(pairs)
R12 minippo/extras/runs.py | the logged gold reward is the proxy's
- m["gold_reward"] = sum(self.gold(x, y) if done else NO_EOS_PENALTY for x, y, done in texts) / n
+ m["gold_reward"] = m["reward"]
R13 minippo/extras/launch.py | the gold reward is the learned one
- run.gold = checked(REWARDS[cfg.reward])
+ run.gold = checked(proxy[0])
R14 minippo/extras/reward_model.py | pairs with a response that never ended are trained on
- usable = not a.endswith(NO_EOS) and not b.endswith(NO_EOS) and not (decided and ga == gb)
+ usable = not (decided and ga == gb)
R15 minippo/extras/reward_model.py | the accuracy counts equal rewards as a right ranking
- return (d * sign > 0).float().mean().item()
+ return (d * sign >= 0).float().mean().item()
R16 minippo/extras/reward_model.py | held-out pairs include ties, which have no right answer
- usable = not a.endswith(NO_EOS) and not b.endswith(NO_EOS) and not (decided and ga == gb)
+ usable = not a.endswith(NO_EOS) and not b.endswith(NO_EOS)
R17 minippo/extras/reward_model.py | r_phi trained at the last character of y, scored at the EOS after it
- r = model(torch.cat([ids_a[idx], ids_b[idx]]))[1][:, -1]            # (2 mb,) r_phi at EOS
+ r = model(torch.cat([ids_a[idx], ids_b[idx]]))[1][:, -2]            # (2 mb,) r_phi at EOS
R18 minippo/extras/reward_model.py | r_phi scored without the EOS it was trained to read
- ids = encode_prompts(vocab, [x + y + EOS for x, y in zip(xs[i:i + rows], ys[i:i + rows])], device)
+ ids = encode_prompts(vocab, [x + y for x, y in zip(xs[i:i + rows], ys[i:i + rows])], device)
R19 minippo/extras/overoptimisation.py | the report's gold peak is the proxy's peak
- peak, s = max(r["windows"], key=lambda p: p["gold_reward"]), r["summary"]
+ peak, s = max(r["windows"], key=lambda p: p["proxy_reward"]), r["summary"]
R20 minippo/extras/overoptimisation.py | the report's end sqrt KL is the KL itself
- cells += [peak["proxy_reward"], math.sqrt(max(0.0, s["kl_policy"])), s["reward_policy"]]
+ cells += [peak["proxy_reward"], max(0.0, s["kl_policy"]), s["reward_policy"]]
C1 minippo/extras/runs.py | resuming a finished run reports 0 s of RL
- self.rl_seconds_before = self.rl_seconds = float(state["rl_seconds"])
+ self.rl_seconds_before = float(state["rl_seconds"])
C2 minippo/extras/runs.py | a resumed run forgets the pretraining it measured
- self.pretrain_seconds += float(state.get("pretrain_seconds", 0.0))
+ self.pretrain_seconds += 0.0
M85 minippo/ppo.py | Dr. GRPO still divides by the group's std
- A = rl.group_advantages(returns, G, std=cfg.variant == "std")     # (B,)
+ A = rl.group_advantages(returns, G, std=cfg.variant != "no_std")     # (B,)
M86 minippo/evaluate.py | J* always from pi_ref's samples alone: a rare reward they never drew is missed
- figures.append(alone if alone[4] >= MIN_ESS and agree else both)
+ figures.append(alone)
M87 minippo/evaluate.py | the mixture q = (pi_ref + pi_theta) / 2 without its 1/2: every weight halved
- log_q = torch.logaddexp(torch.zeros(1), torch.stack([-kl_ref, kl_pol])) - math.log(2)
+ log_q = torch.logaddexp(torch.zeros(1), torch.stack([-kl_ref, kl_pol]))
M88 minippo/evaluate.py | pi_ref's samples weighted with log pi_ref / pi_theta for log pi_theta / pi_ref
- log_q = torch.logaddexp(torch.zeros(1), torch.stack([-kl_ref, kl_pol])) - math.log(2)
+ log_q = torch.logaddexp(torch.zeros(1), torch.stack([kl_ref, kl_pol])) - math.log(2)
M89 minippo/evaluate.py | a J* resting on too few samples still gives a gap
- gap = (j_star - j_pol) / (j_star - j_ref) if j_star > j_ref and ess >= MIN_ESS else math.nan
+ gap = (j_star - j_pol) / (j_star - j_ref) if j_star > j_ref else math.nan
M90 minippo/evaluate.py | the effective sample size of the weights is n whatever they are
- return value, se, r_star, kl_star, 1 / (s @ s).item()
+ return value, se, r_star, kl_star, len(s)
M91 minippo/evaluate.py | pi_ref's estimate kept however far it is from the one from both samples
- agree = abs(alone[0] - both[0]) <= 3 * math.hypot(alone[1], both[1])
+ agree = True
M92 minippo/ppo.py | GRPO's no_std still divides by the group's std (only dr leaves it out)
- A = rl.group_advantages(returns, G, std=cfg.variant == "std")     # (B,)
+ A = rl.group_advantages(returns, G, std=cfg.variant != "dr")     # (B,)
M93 minippo/ppo.py | Dr. GRPO's KL loss term keeps GRPO's per-response length normalisation
- loss = loss + beta * reduce(k, m)
+ loss = loss + beta * (rl.response_mean if cfg.algo == "grpo" else reduce)(k, m)
M94 minippo/ppo.py | GRPO's entropy bonus with the wrong sign
- loss = pg_loss - cfg.ent_coef * mb_entropy
+ loss = pg_loss + cfg.ent_coef * mb_entropy
M95 minippo/ppo.py | minibatches in the batch's order: no shuffling
- for idx in torch.randperm(B, device=batch["tokens"].device).split(mb_size):
+ for idx in torch.arange(B, device=batch["tokens"].device).split(mb_size):
M96 minippo/model.py | attention scaled by 1/sqrt(d_model) instead of 1/sqrt(head size)
- y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)          # (B, nh, T, hs)
+ y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1 / math.sqrt(C))          # (B, nh, T, hs)
M97 minippo/ppo.py | GRPO's default KL placement k1 instead of k3
- return cfg.kl_penalty if cfg.kl_penalty != "auto" else "k3" if cfg.algo == "grpo" else "reward"
+ return cfg.kl_penalty if cfg.kl_penalty != "auto" else "k1" if cfg.algo == "grpo" else "reward"
M98 minippo/evaluate.py | J* trusted on pi_ref's estimate even when the mixture's weights rest on one sample
- ess = min(ess, figures[-1][4], both[4])     # J* is trusted when ess >= MIN_ESS
+ ess = min(ess, figures[-1][4])     # J* is trusted when ess >= MIN_ESS
M106 toy_kl.py | part 7: the KL to come counted among the per-token placements
- SEQUENCE = ("k1 in reward", "k3 in reward", "KL to come")
+ SEQUENCE = ("k1 in reward", "k3 in reward")
M107 toy_kl.py | part 7's closed form: token a never sees the KL of token b
- kl_b = (pb * (two_log_b(theta) - log_b)).sum(1)                    # KL(pi(.|a) || pi_ref(.|a))
+ kl_b = 0 * (pb * (two_log_b(theta) - log_b)).sum(1)                    # KL(pi(.|a) || pi_ref(.|a))
M108 toy_kl.py | part 7's samples: the KL to come of token a is its own log-ratio alone
- c_a -= beta * (d_a[a] + d_b[a, b] if placement == "KL to come"
+ c_a -= beta * (d_a[a] if placement == "KL to come"
C3 minippo/extras/cli.py | a flag the algorithm ignores is accepted
- if name in given and cfg.algo not in algos.split():
+ if name in given and cfg.algo in algos.split():
D1 minippo/extras/runs.py | approx_kl_k3 left out of the per-token figures: under torchrun it is the processes' plain mean, not weighted by their tokens
- PER_TOKEN = ("entropy", "approx_kl", "approx_kl_k3", "clipfrac")
+ PER_TOKEN = ("entropy", "approx_kl", "clipfrac")
D2 minippo/extras/runs.py | every torchrun process draws from the same RL seed: both draw the same responses
- RANK_SEED_STRIDE = 1000
+ RANK_SEED_STRIDE = 0
E1 minippo/extras/sweep.py | a boolean sweep value drops the settings it adds after "+"
- given = [flag(name) if value.lower() in ("true", "1") else flag("no_" + name)]
+ return [flag(name) if value.lower() in ("true", "1") else flag("no_" + name)]
E2 minippo/extras/sweep.py | a sweep with --force still reuses finished runs
- if not here or cfg.force:
+ if not here:
E3 minippo/extras/plot.py | the gap curves repeat the last run's gaps instead of the seeds' mean
- mean = [sum(g) / len(g) for g in zip(*(gaps for _, gaps in group))]
+ mean = [sum(g) / len(g) for g in zip(*(gaps for _ in group))]
E4 minippo/extras/plot.py | the gap curves drawn against a J* that its run did not trust
- if not (number(best) and number(ref) and best > ref) or s.get("objective_optimal_trusted") is False:
+ if not (number(best) and number(ref) and best > ref):
R21 minippo/extras/reward_model.py | held-out pairs are the training draws again (pi_ref and the prompts reseeded)
- held_rows = sample(args.held_out, 0.0, decided=True)      # fresh, and labelled without noise
+ held_rows = torch.manual_seed(args.seed + runs.RL_SEED) and sample(args.held_out, 0.0, decided=True, rng=random.Random(args.seed))
R22 minippo/extras/reward_model.py | the gold reward reads each sample with another prompt's text
- xs = [x for x in prompts for _ in range(n)]
+ xs = [x for _ in range(n) for x in prompts]
R23 minippo/extras/reward_model.py | the gold reward scores the whole text, prompt included, as the response
- g = [NO_EOS_PENALTY if t.endswith(NO_EOS) else gold_fn(x, t[len(x):]) for x, t in texts]
+ g = [NO_EOS_PENALTY if t.endswith(NO_EOS) else gold_fn(x, t) for x, t in texts]
R24 minippo/extras/reward_model.py | the response sliced one character short
- g = [NO_EOS_PENALTY if t.endswith(NO_EOS) else gold_fn(x, t[len(x):]) for x, t in texts]
+ g = [NO_EOS_PENALTY if t.endswith(NO_EOS) else gold_fn(x, t[len(x) + 1:]) for x, t in texts]
R25 minippo/extras/reward_model.py | the normalisation's gain of the wrong sign (the loop maximises -r_phi)
- gain = 1 / r.std().item()
+ gain = -1 / r.std().item()
R26 minippo/extras/reward_model.py | the reward's bias added before its gain
- return gain * raw_rewards(model, vocab, [x], [y], device)[0].item() + bias
+ return gain * (raw_rewards(model, vocab, [x], [y], device)[0].item() + bias)
R27 minippo/extras/reward_model.py | the share below NO_EOS_PENALTY adds the bias before the gain
- return gain, bias, ((gain * r + bias) < NO_EOS_PENALTY).double().mean().item()
+ return gain, bias, (((r + bias) * gain) < NO_EOS_PENALTY).double().mean().item()
R28 minippo/extras/reward_model.py | the learning rate never decays (integer division)
- optimizer.param_groups[0]["lr"] = lr * (1 - step / len(steps))    # linear decay to 0
+ optimizer.param_groups[0]["lr"] = lr * (1 - step // len(steps))    # linear decay to 0
R29 minippo/extras/reward_model.py | held-out pairs labelled with the training noise --tau
- held_rows = sample(args.held_out, 0.0, decided=True)      # fresh, and labelled without noise
+ held_rows = sample(args.held_out, args.tau, decided=True)
C4 minippo/extras/runs.py | the checkpoint saves only the RL seconds since the last resume: a second resume forgets the first run's
- state.update(logs=self.logs, rl_seconds=seconds, pretrain_seconds=self.pretrain_seconds)
+ state.update(logs=self.logs, rl_seconds=seconds - self.rl_seconds_before, pretrain_seconds=self.pretrain_seconds)
C5 minippo/extras/cli.py | --group 1 accepted
- LIMITS |= {"group": (2, 65_536)}
+ LIMITS |= {"group": (1, 65_536)}
C6 minippo/extras/cli.py | a resume may change --beta
- RESUMABLE = {"out", "resume", "force", "iters", "plot", "human_eval"}
+ RESUMABLE = {"out", "resume", "force", "iters", "plot", "human_eval", "beta"}
C7 minippo/extras/cli.py | --clip 0 accepted
- ABOVE_LOWEST = {"pretrain_lr", "lr", "clip", "max_grad_norm"}
+ ABOVE_LOWEST = {"pretrain_lr", "lr", "max_grad_norm"}
C8 minippo/extras/files.py | the atomic write's temporary file without the process id
- tmps = {path: f"{path}.tmp{os.getpid()}" for path in writes}
+ tmps = {path: f"{path}.tmp" for path in writes}
C9 minippo/extras/files.py | the input guard compares absolute paths, not real ones: an input reached through a symlink is removed
- given = {os.path.realpath(p) for p in inputs if p}
+ given = {os.path.abspath(p) for p in inputs if p}
C10 minippo/extras/files.py | the input guard's output side uses abspath: an --out reached through a symlink removes its input
- if os.path.realpath(path) in given:
+ if os.path.abspath(path) in given:
C11 minippo/extras/runs.py | a resume starts at the initial --beta, not the checkpoint's (a --target-kl run)
- start, beta, self.logs = state["iter"], state["beta"], state["logs"]
+ start, beta, self.logs = state["iter"], cfg.beta, state["logs"]
C12 minippo/extras/runs.py | the checkpoint saves the initial --beta, not the adapted one
- state = {"kind": "rl", **self.identity, "iter": it, "beta": float(beta)}
+ state = {"kind": "rl", **self.identity, "iter": it, "beta": float(self.cfg.beta)}
C13 minippo/extras/cli.py | --resume DIR alone starts from the defaults, not the run's config.json
- cfg = config_from(saved, rewards) if given.get("resume") and os.path.isfile(saved) else Config()
+ cfg = Config()
C14 minippo/extras/cli.py | a flag given beside --resume is overridden by the saved settings instead of compared with them
- cfg = Config(**{**asdict(cfg), **given})
+ cfg = Config(**{**given, **asdict(cfg)})
M99 minippo/rl.py | verl's k3+ with the gradients of k3 and k2 both, not k2's alone
- "k3_st": ("loss", lambda d, ratio, lp: (k3(d) - d**2 / 2).detach() + d**2 / 2),
+ "k3_st": ("loss", lambda d, ratio, lp: k3(d) + d**2 / 2 - (d**2 / 2).detach()),
M100 minippo/rl.py | TRL's k3 times a detached ratio: k3's gradient, not ratio d grad log pi
- "k3_ratio": ("loss", lambda d, ratio, lp: ratio * k3(d)),
+ "k3_ratio": ("loss", lambda d, ratio, lp: ratio.detach() * k3(d)),
M101 minippo/rl.py | the sequence-level term weighs log pi(y_t) by the KL so far, not the KL to come
- "seq": ("loss", lambda d, ratio, lp: d.flip(1).cumsum(1).flip(1).detach() * lp),
+ "seq": ("loss", lambda d, ratio, lp: d.cumsum(1).detach() * lp),
M102 minippo/rl.py | the KL to come differentiated too
- "seq": ("loss", lambda d, ratio, lp: d.flip(1).cumsum(1).flip(1).detach() * lp),
+ "seq": ("loss", lambda d, ratio, lp: d.flip(1).cumsum(1).flip(1) * lp),
M103 minippo/rl.py | k3 in the reward placed as a loss term
- "k3_reward": ("reward", lambda d, ratio, lp: k3(d)),
+ "k3_reward": ("loss", lambda d, ratio, lp: k3(d)),
M104 minippo/ppo.py | the reward's per-token penalty always k1, whatever the placement
- k = rl.kl_penalty_terms(penalty, old_logprobs, old_logprobs, ref_logprobs, mask)
+ k = rl.kl_penalty_terms("reward", old_logprobs, old_logprobs, ref_logprobs, mask)
M105 minippo/rl.py | open-instruct's ratio x k1 without its ratio: k1, whose expected gradient is 0
- "ratio_k1": ("loss", lambda d, ratio, lp: ratio * d),
+ "ratio_k1": ("loss", lambda d, ratio, lp: d),
"""


def parse(spec: str) -> list:
    """A spec's mutants: (id, file, the text as it is, the mutant's text, what the bug is)."""
    mutants = []
    for block in re.split(r"\n(?=[A-Z]\d+ \S+ \| )", spec.strip()):     # a block per header line
        head, *lines = [line for line in block.splitlines() if line.strip()]
        signs = "".join(s[0] if s[1:2] in ("", " ") else "?" for s in lines)   # "-", "- x", "+ x"
        if not re.fullmatch(r"\S+ \S+ \| .+", head) or not re.fullmatch(r"-+\++", signs):
            raise ValueError(f"not 'ID FILE | what', then '- ' lines, then '+ ' lines:\n{block}")
        (mid, path), what = head.split(" | ", 1)[0].split(), head.split(" | ", 1)[1].strip()
        old, new = ("\n".join(s[2:] for s in lines if s[0] == sign).strip() for sign in "-+")
        mutants.append((mid, path, old, new, what))
    return mutants


MUTANTS = parse(SPEC)


def check_anchors(root: str = ROOT) -> list:
    """(id, problem) for each mutant whose text as it is is not in its file under root exactly once
    (the mutants to re-anchor), or whose id another mutant uses too."""
    ids = [m[0] for m in MUTANTS]
    problems = [(mid, "id used twice") for mid in sorted(set(ids)) if ids.count(mid) > 1]
    for mid, path, old, new, what in MUTANTS:
        full = os.path.join(root, path)
        count = open(full).read().count(old) if os.path.isfile(full) else 0
        if count != 1:
            problems.append((mid, f"{path} has {count} copies of {old!r}"))
    return problems


def skipped(folder: str, names: list) -> list:
    """What a copy leaves out: caches anywhere, and the run folders a user made in the repository's
    top folder (only there: minippo/extras/overoptimisation.py must not match "overopt*")."""
    top = ("out", "sweeps", "figures_out", "exercises", "overopt", "rm")
    top = top if os.path.samefile(folder, ROOT) else ()
    return [n for n in names if n in (".git", "__pycache__", ".pytest_cache") or n.startswith(top)]


def apply(root: str, path: str, old: str, new: str) -> None:
    full = os.path.join(root, path)
    text = open(full).read()
    if text.count(old) != 1:
        raise SystemExit(f"mutant does not apply: {path} has {text.count(old)} copies of {old!r}")
    open(full, "w").write(text.replace(old, new))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tests", nargs="+", default=FAST, help="what pytest runs [FAST tests]")
    p.add_argument("--only", nargs="+", default=[], help="mutant ids, e.g. M1 M21")
    p.add_argument("--check", action="store_true", help="only find each mutant's text")
    args = p.parse_args(argv)
    if set(args.only) - {m[0] for m in MUTANTS}:
        p.error(f"no such mutant: {' '.join(sorted(set(args.only) - {m[0] for m in MUTANTS}))}")
    chosen = [m for m in MUTANTS if not args.only or m[0] in args.only]
    if args.check:
        problems = [p for p in check_anchors(ROOT) if p[0] in {m[0] for m in chosen}]
        for mid, problem in problems:
            print(f"{mid:<4} {problem}")
        print(f"{len(chosen) - len(problems)} of {len(chosen)} mutants find their text once")
        return 1 if problems else 0
    pytest, survivors = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"], []
    with tempfile.TemporaryDirectory() as tmp:
        for mid, path, old, new, what in chosen:
            copy = os.path.join(tmp, mid)
            shutil.copytree(ROOT, copy, ignore=skipped)
            apply(copy, path, old, new)
            t = time.time()
            tests = TESTS.get(mid[0], args.tests)
            result = subprocess.run([*pytest, *tests], cwd=copy, capture_output=True, text=True)
            killed = result.returncode != 0
            verdict = "killed " if killed else "SURVIVED"
            print(f"{mid:<4} {verdict} {time.time() - t:5.1f} s  {path}: {what}", flush=True)
            if not killed:
                survivors.append(mid)
            shutil.rmtree(copy)
    n, alive = len(chosen), " ".join(survivors) or "none"
    print(f"\nscore: {n - len(survivors)} of {n} mutants killed; survivors: {alive}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
