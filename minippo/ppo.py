"""The loop: KL-penalised PPO (or REINFORCE, or GRPO) on a pretrained policy. One iteration is one screen:
draw queries x, sample y ~ pi_theta(.|x) at temperature T, score r(x, y), log pi_old, V(s_t) and
log pi_ref of the sampled tokens with the per-token KL, advantages, then update() pi_theta.

`python train.py` (minippo/extras/launch.py) wraps train() from outside: it pretrains or loads
pi_ref, and hands train() a `run` (minippo/extras/runs.py) whose calls restore a saved run, write
metrics and checkpoints, and stop on Ctrl-C. Under torchrun each process runs this same loop on its
share of the batch, and run.average_gradients makes each gradient the mean over all processes
(what DistributedDataParallel does); alone, the gradients are the batch's already.
"""
import copy

import torch

from minippo.model import sample
from minippo.rl import (clipped_surrogate, entropy, explained_variance, gae, group_advantages, kl_estimate,
                        per_token_rewards, ppo_losses, reinforce_loss, response_mean, seq_mean, update_beta,
                        whiten)
from minippo.rollout import decode_responses, encode_prompts, response_logprobs, score


def alone(model):
    """The gradients of one process are the whole batch's already (torchrun: run.average_gradients)."""


def kl_penalty(cfg) -> str:
    """Where beta KL goes: "reward" (k1 in the reward; PPO's and REINFORCE's default) or a loss term
    per token, "k1" | "k2" | "k3" (GRPO's default: k3, as in DeepSeekMath)."""
    return cfg.kl_penalty if cfg.kl_penalty != "auto" else "k3" if cfg.algo == "grpo" else "reward"


def iteration(policy, ref, optimizer, vocab, prompts, reward_fn, cfg, beta, sample=sample,
              average_gradients=alone) -> dict:
    """One iteration on cfg.batch responses; returns what it sampled and the figures to log.
    `sample` is minippo.model.sample (on a GPU the command passes the same loop as CUDA graphs)."""
    device = policy.lm_head.weight.device
    G = cfg.group if cfg.algo == "grpo" else 1                 # responses per query
    in_reward = beta if kl_penalty(cfg) == "reward" else 0.0   # beta of the KL in the reward, or 0
    # ---- 1. draw queries x (GRPO: each G times); sample responses y ~ pi_theta(.|x) at temperature T
    xs = [prompts[i] for i in torch.randint(len(prompts), (cfg.batch // G,)).tolist() for _ in range(G)]
    prompt_ids = encode_prompts(vocab, xs, device)                       # (B, P)
    tokens, sampled_logprobs = sample(policy, prompt_ids, cfg.max_new_tokens, cfg.temperature,
                                      vocab.eos_id)                      # (B, L) each
    mask = (tokens != vocab.pad_id).float()                              # (B, L) 1 = response token
    ys, finished = decode_responses(vocab, tokens)

    # ---- 2. score them: r(x, y), plain Python on strings
    scores = score(reward_fn, xs, ys, finished, device)                  # (B,)

    # ---- 3. log pi_old, V(s_t) and log pi_ref of the sampled tokens, at the same T; per-token KL
    with torch.no_grad():
        if cfg.algo == "ppo":
            old_logprobs, old_values, _ = response_logprobs(policy, prompt_ids, tokens, cfg.temperature)
        else:       # REINFORCE and GRPO need no V(s_t), and sampling already computed log pi_old(y_t)
            old_logprobs, old_values = sampled_logprobs, None
        ref_logprobs, _, _ = response_logprobs(ref, prompt_ids, tokens, cfg.temperature)
        rewards, kl = per_token_rewards(scores, old_logprobs, ref_logprobs, mask, in_reward)  # (B, L) each

        # ---- 4. advantages. PPO: GAE over the per-token rewards; GRPO: each R against its group's R
        advantages = returns = None                 # REINFORCE needs neither
        if cfg.algo == "ppo":
            advantages, returns = gae(rewards, old_values, mask, cfg.gamma, cfg.lam)   # (B, L) each
            if cfg.whiten:
                advantages = whiten(advantages, mask)
        elif cfg.algo == "grpo":                    # R = r(x, y) - beta KL, or r(x, y) with the KL as a loss
            R = scores - in_reward * kl.sum(1)
            advantages = group_advantages(R, G, std=cfg.group_std and not cfg.dr_grpo)[:, None] * mask  # (B, L)

    # ---- 5. update pi_theta on this batch
    batch = {"prompt_ids": prompt_ids, "tokens": tokens, "mask": mask, "scores": scores, "kl": kl,
             "old_logprobs": old_logprobs, "old_values": old_values, "advantages": advantages,
             "returns": returns, "ref_logprobs": ref_logprobs}
    steps = update(policy, optimizer, batch, cfg, beta, average_gradients)
    ev = explained_variance(old_values, returns, mask) if cfg.algo == "ppo" else None  # V's fit
    return {"texts": list(zip(xs, ys, finished)), "scores": scores.tolist(), "steps": steps,
            "reward": scores.mean().item(),                  # E[r(x, y)] over the batch
            "kl": kl.sum(1).mean().item(),                   # KL(pi_theta || pi_ref), nats per response
            "response_length": mask.sum(1).mean().item(), "explained_variance": ev}


def update(policy, optimizer, batch, cfg, beta, average_gradients=alone) -> list:
    """PPO and GRPO: cfg.epochs passes over shuffled minibatches of the batch. REINFORCE: one step on
    the whole batch. Returns one dict of statistics per optimizer step."""
    B, penalty = len(batch["tokens"]), kl_penalty(cfg)
    epochs, mb_size = (1, B) if cfg.algo == "reinforce" else (cfg.epochs, cfg.minibatch)
    reduce = response_mean if cfg.algo == "grpo" and not cfg.dr_grpo else seq_mean    # over a response's tokens
    log = []
    for epoch in range(epochs):
        for idx in torch.randperm(B, device=batch["tokens"].device).split(mb_size):
            mb = {k: v[idx] for k, v in batch.items() if v is not None}
            mb_logprobs, mb_values, mb_logits = response_logprobs(
                policy, mb["prompt_ids"], mb["tokens"], cfg.temperature)    # (mb, L) each
            mb_entropy = entropy(mb_logits, mb["mask"], cfg.temperature)
            if cfg.algo == "ppo":
                pg_loss, vf_loss, stats = ppo_losses(
                    mb_logprobs, mb["old_logprobs"], mb["advantages"], mb_values, mb["old_values"],
                    mb["returns"], mb["mask"], cfg.clip)
                loss = pg_loss + cfg.vf_coef * vf_loss - cfg.ent_coef * mb_entropy
                stats["vf_loss"] = vf_loss
            elif cfg.algo == "grpo":                # PPO's surrogate with the group's advantages, no V
                pg_losses, stats = clipped_surrogate(mb_logprobs, mb["old_logprobs"], mb["advantages"],
                                                     mb["mask"], cfg.clip)
                pg_loss = reduce(pg_losses, mb["mask"])
                loss = pg_loss - cfg.ent_coef * mb_entropy
            else:
                in_reward = beta if penalty == "reward" else 0.0
                loss = pg_loss = reinforce_loss(mb_logprobs, mb["scores"], mb["kl"], mb["mask"], in_reward)
                stats = {}
            if penalty != "reward":                 # + beta k_t per token, reduced as the policy loss is
                loss = loss + beta * reduce(kl_estimate(mb_logprobs, mb["ref_logprobs"], mb["mask"], penalty),
                                            mb["mask"])
            optimizer.zero_grad()
            loss.backward()
            average_gradients(policy)               # torchrun: the mean over every process's minibatch
            grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            if not torch.isfinite(grad_norm):       # a NaN or inf step would poison every weight: stop
                raise FloatingPointError("a gradient became non-finite (a learning rate too high, or a "
                                         "reward or beta too large?); that step was not taken")
            optimizer.step()
            log.append({"pg_loss": pg_loss, "entropy": mb_entropy, **stats, "tokens": mb["mask"].sum()})
    # tensors -> floats, one read per step (on a GPU: one sync)
    return [dict(zip(d, torch.stack([v.detach() for v in d.values()]).tolist())) for d in log]


def train(cfg, policy, vocab, prompts, reward_fn, run, sample=sample):
    """Tune the pretrained `policy` with cfg.iters iterations; returns pi_ref and the final beta.
    run.log() returns the batch's figures (of every process's share), its KL per response among them."""
    ref = copy.deepcopy(policy).requires_grad_(False).eval()    # pi_ref: the pretrained model, frozen
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)
    start, beta = run.start(policy, optimizer)        # (0, cfg.beta), or where a saved run stopped
    for it in range(start, cfg.iters):
        if cfg.anneal_lr:   # a step size that decays to 0 lets noisy gradient ascent converge
            optimizer.param_groups[0]["lr"] = cfg.lr * (1 - it / cfg.iters)
        out = iteration(policy, ref, optimizer, vocab, prompts, reward_fn, cfg, beta, sample,
                        run.average_gradients)
        m = run.log(it + 1, beta, out)       # metrics.jsonl and the progress bar (figures of the batch)
        if cfg.target_kl > 0:                # adaptive beta, after logging the beta that was used
            beta = update_beta(beta, m["kl"], cfg.target_kl, m["responses"], cfg.kl_horizon)
        if run.save(it + 1, policy, optimizer, beta):    # checkpoint.pt now and then; True: Ctrl-C
            break
    return ref, beta
