"""The loop: KL-penalised PPO (or REINFORCE, or GRPO) on a pretrained policy.

One iteration is one screen: draw queries x, sample y ~ pi_theta(.|x) at temperature T, score
r(x, y), compute log pi_old, V(s_t) and log pi_ref of the sampled tokens and the per-token KL,
advantages, then update() pi_theta. train() repeats it and returns the frozen pi_ref.

`python -m minippo` calls train() with no `run` and it prints a line per iteration. `python
train.py` hands it a `run` (minippo/extras/runs.py) that restores a saved run, writes metrics and
checkpoints and stops on Ctrl-C; under torchrun, run.average_gradients makes every gradient the
mean over all processes (what DistributedDataParallel does).
"""
import copy

import torch

from minippo import rl
from minippo.model import sample
from minippo.rollout import decode_responses, encode_prompts, response_logprobs, score


def alone(model):
    """One process: its gradients are the whole batch's already (torchrun: the run averages)."""


def kl_penalty(cfg) -> str:
    """Where beta KL goes, a name of rl.KL_PENALTIES: "reward" (k1 in the reward) for PPO and
    REINFORCE, "k3" (a loss term per token, as in DeepSeekMath) for GRPO, unless --kl-penalty says."""
    return cfg.kl_penalty if cfg.kl_penalty != "auto" else "k3" if cfg.algo == "grpo" else "reward"


def iteration(policy, ref, optimizer, vocab, prompts, reward_fn, cfg, beta, average=alone):
    """One iteration on cfg.batch responses; returns what it sampled and the figures to log."""
    device = policy.lm_head.weight.device
    G = cfg.group if cfg.algo == "grpo" else 1                 # responses per query
    penalty = kl_penalty(cfg)                                  # a name of rl.KL_PENALTIES
    in_reward = beta if rl.KL_PENALTIES[penalty][0] == "reward" else 0.0  # its beta in r_t, or 0
    # ---- 1. draw queries x (GRPO: each G times); sample responses y ~ pi_theta(.|x) at temperature T
    picks = torch.randint(len(prompts), (cfg.batch // G,)).tolist()
    xs = [prompts[i] for i in picks for _ in range(G)]
    prompt_ids = encode_prompts(vocab, xs, device)                       # (B, P)
    T = cfg.temperature
    tokens, sampled_logprobs = sample(policy, prompt_ids, cfg.max_new_tokens, T, vocab.eos_id)
    mask = (tokens != vocab.pad_id).float()                              # (B, L) 1 = response token
    ys, finished = decode_responses(vocab, tokens)

    # ---- 2. score them: r(x, y), plain Python on strings
    scores = score(reward_fn, xs, ys, finished, device)                  # (B,)

    # ---- 3. log pi_old, V(s_t) and log pi_ref of the sampled tokens, at the same T; per-token KL
    with torch.no_grad():
        if cfg.algo == "ppo":
            old_logprobs, old_values, _ = response_logprobs(policy, prompt_ids, tokens, T)
        else:       # REINFORCE and GRPO need no V(s_t); sampling already computed log pi_old(y_t)
            old_logprobs, old_values = sampled_logprobs, None
        ref_logprobs, _, _ = response_logprobs(ref, prompt_ids, tokens, T)
        kl = (old_logprobs - ref_logprobs) * mask                          # k1 of KL, per token
        k = rl.kl_penalty_terms(penalty, old_logprobs, old_logprobs, ref_logprobs, mask)
        rewards = rl.per_token_rewards(scores, k if in_reward else 0 * kl, mask, in_reward)

        # ---- 4. advantages. PPO: GAE over the per-token rewards; GRPO: each R against its group's
        if cfg.algo == "ppo":
            advantages, returns = rl.gae(rewards, old_values, mask, cfg.gamma, cfg.lam)  # (B, L)
            if cfg.whiten:
                advantages = rl.whiten(advantages, mask)
        else:       # R = r(x, y) - beta KL (or r(x, y) alone, with the KL as a loss term), (B,)
            returns, advantages = rewards.sum(1), None
            if cfg.algo == "grpo":
                A = rl.group_advantages(returns, G, std=cfg.variant == "std")     # (B,)
                advantages = A[:, None] * mask                                    # (B, L)

    # ---- 5. update pi_theta on this batch
    batch = dict(prompt_ids=prompt_ids, tokens=tokens, mask=mask, scores=scores, kl=kl)
    batch |= dict(old_logprobs=old_logprobs, old_values=old_values, ref_logprobs=ref_logprobs)
    batch |= dict(advantages=advantages, returns=returns)
    steps = update(policy, optimizer, batch, cfg, beta, average)
    ev = rl.explained_variance(old_values, returns, mask) if cfg.algo == "ppo" else None  # V's fit
    return {"texts": list(zip(xs, ys, finished)), "scores": scores.tolist(), "steps": steps,
            "reward": scores.mean().item(),                  # E[r(x, y)] over the batch
            "kl": kl.sum(1).mean().item(),                   # KL(pi_theta || pi_ref), per response
            "response_length": mask.sum(1).mean().item(), "explained_variance": ev}


def update(policy, optimizer, batch, cfg, beta, average=alone) -> list:
    """PPO and GRPO: cfg.epochs passes over shuffled minibatches of the batch. REINFORCE: one step on
    the whole batch. Returns one dict of statistics per optimizer step."""
    B, penalty, T = len(batch["tokens"]), kl_penalty(cfg), cfg.temperature
    epochs, mb_size = (1, B) if cfg.algo == "reinforce" else (cfg.epochs, cfg.minibatch)
    per_response = cfg.algo == "grpo" and cfg.variant != "dr"   # GRPO averages a response's tokens
    reduce = rl.response_mean if per_response else rl.seq_mean  # the others sum them
    log = []
    for epoch in range(epochs):
        for idx in torch.randperm(B, device=batch["tokens"].device).split(mb_size):
            mb = {k: v[idx] for k, v in batch.items() if v is not None}
            m, old, adv = mb["mask"], mb["old_logprobs"], mb.get("advantages")  # (mb, L) each
            tokens = mb["tokens"]
            mb_logprobs, mb_values, mb_logits = response_logprobs(policy, mb["prompt_ids"], tokens, T)
            mb_entropy = rl.entropy(mb_logits, m, T)
            if cfg.algo == "ppo":
                pg_loss, vf_loss, stats = rl.ppo_losses(
                    mb_logprobs, old, adv, mb_values, mb["old_values"], mb["returns"], m, cfg.clip)
                loss = pg_loss + cfg.vf_coef * vf_loss - cfg.ent_coef * mb_entropy
                stats["vf_loss"] = vf_loss
            elif cfg.algo == "grpo":                # PPO's surrogate, the group's advantages, no V
                pg_losses, stats = rl.clipped_surrogate(mb_logprobs, old, adv, m, cfg.clip)
                pg_loss = reduce(pg_losses, m)
                loss = pg_loss - cfg.ent_coef * mb_entropy
            else:
                loss = pg_loss = rl.reinforce_loss(mb_logprobs, mb["returns"], m)
                stats = {}
            if rl.KL_PENALTIES[penalty][0] == "loss":  # + beta k_t, reduced as pg_loss is
                k = rl.kl_penalty_terms(penalty, mb_logprobs, old, mb["ref_logprobs"], m)
                loss = loss + beta * reduce(k, m)
            optimizer.zero_grad()
            loss.backward()
            average(policy)                         # torchrun: the mean over every process
            grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            if not torch.isfinite(grad_norm):       # a NaN or inf step would poison every weight
                raise FloatingPointError("a gradient became non-finite (lr or beta too high?)")
            optimizer.step()
            log.append({"pg_loss": pg_loss, "entropy": mb_entropy, **stats, "tokens": m.sum()})
    # tensors -> floats, one read per step (on a GPU: one sync)
    return [dict(zip(d, torch.stack([v.detach() for v in d.values()]).tolist())) for d in log]


def train(cfg, policy, vocab, prompts, reward_fn, run=None):
    """Tune the pretrained `policy` for cfg.iters iterations; returns pi_ref and the final beta.
    Without a `run`, it prints a line per iteration; run.log() returns the batch's figures."""
    ref = copy.deepcopy(policy).requires_grad_(False).eval()    # pi_ref: the pretrained model
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)
    start, beta = run.start(policy, optimizer) if run else (0, cfg.beta)   # or where a run stopped
    for it in range(start, cfg.iters):
        if cfg.anneal_lr:   # a step size that decays to 0 lets noisy gradient ascent converge
            optimizer.param_groups[0]["lr"] = cfg.lr * (1 - it / cfg.iters)
        average = run.average_gradients if run else alone      # torchrun: over every process
        out = iteration(policy, ref, optimizer, vocab, prompts, reward_fn, cfg, beta, average)
        m = run.log(it + 1, beta, out) if run else {"kl": out["kl"], "responses": cfg.batch}
        if not run:
            x, y, _ = out["texts"][0]
            print(f"iteration {it + 1:3d}  reward {out['reward']:.3f}  KL {out['kl']:.3f}  "
                  f"J {out['reward'] - beta * out['kl']:.3f}  e.g. {x + y!r}")
        if cfg.target_kl > 0:                # adaptive beta, after logging the beta that was used
            beta = rl.update_beta(beta, m["kl"], cfg.target_kl, m["responses"], cfg.kl_horizon)
        if run and run.save(it + 1, policy, optimizer, beta):   # checkpoint.pt; True: Ctrl-C
            break
    return ref, beta
