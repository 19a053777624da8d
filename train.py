"""minippo: pretrain a tiny character-level GPT, then tune it with KL-penalised PPO (or REINFORCE).

    python train.py                      # ~55 s on a 2-core CPU: pretrain, then 70 PPO iterations
    torchrun --standalone --nproc_per_node 2 train.py   # the same, data-parallel (minippo/dist.py)
    python train.py --algo reinforce     # the log-derivative trick, one step per batch
    python train.py --help               # every setting, with its meaning and typical range

It maximises the lecture's objective
    J(theta) = E_x E_{y ~ pi_theta(.|x)}[ r(x, y) ] - beta KL(pi_theta(.|x) || pi_ref(.|x))
and at the end measures how close it came to the exact optimum J* (minippo/evaluate.py).
Reading order: this file top to bottom, following the imports into minippo/.
"""
import signal
import sys
import time

import torch
from tqdm import tqdm

from minippo import dist, runs
from minippo.adamw import AdamW
from minippo.checkpoint import rng_state
from minippo.config import UsageError, parse_config
from minippo.data import is_grammatical
from minippo.evaluate import distinct_ngrams, evaluate
from minippo.human_eval import answer_stream, human_eval
from minippo.plot import NO_MATPLOTLIB, figure, plot_run
from minippo.model import sample
from minippo.rewards import REWARDS
from minippo.rl import (entropy, explained_variance, gae, per_token_rewards, ppo_losses,
                        reinforce_loss, update_beta, whiten)
from minippo.rollout import (RewardError, decode_responses, encode_prompts, response_logprobs,
                             score)


def main(argv=None) -> int:
    cfg = parse_config(argv, rewards=tuple(REWARDS))
    stop = runs.StopFlag()                  # Ctrl-C: finish the current step, save, exit
    previous_handler = signal.signal(signal.SIGINT, stop.request)
    try:
        return train(cfg, stop)
    except KeyboardInterrupt:               # a second Ctrl-C: quit now, the last checkpoint stays
        print(f"\nstopped without saving; the last checkpoint in {cfg.out} is intact", file=sys.stderr)
        return 130
    except UsageError as e:                 # a bad input: one line, exit 2, nothing saved is touched
        if dist.is_first_process():
            print(f"error: {e}", file=sys.stderr)
        return 2
    except (RewardError, FloatingPointError) as e:
        print(f"error: {e}. The last good checkpoint is kept in {cfg.out}.", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        dist.close()


def update(policy, optimizer, cfg, beta, prompt_ids, tokens, mask, scores, kl, old_logprobs,
           old_values, advantages, returns):
    """PPO: cfg.epochs passes over shuffled minibatches of the batch. REINFORCE: one step on the
    whole batch. Returns one dict of statistics per optimizer step."""
    B = tokens.shape[0]                     # this process's share of the batch (all of it in one)
    epochs, mb_size = (cfg.epochs, cfg.minibatch * B // cfg.batch) if cfg.algo == "ppo" else (1, B)
    log = []
    for epoch in range(epochs):
        for mb in torch.randperm(B, device=tokens.device).split(mb_size):
            mb_logprobs, mb_values, mb_logits = response_logprobs(
                policy, prompt_ids[mb], tokens[mb], cfg.temperature)          # (mb, L) each
            mb_entropy = entropy(mb_logits, mask[mb], cfg.temperature)
            if cfg.algo == "ppo":
                pg_loss, vf_loss, stats = ppo_losses(
                    mb_logprobs, old_logprobs[mb], advantages[mb], mb_values, old_values[mb],
                    returns[mb], mask[mb], cfg.clip)
                loss = pg_loss + cfg.vf_coef * vf_loss - cfg.ent_coef * mb_entropy
                stats["vf_loss"] = vf_loss
            else:
                loss = pg_loss = reinforce_loss(mb_logprobs, scores[mb], kl[mb], mask[mb], beta)
                stats = {}
            optimizer.zero_grad()
            loss.backward()
            dist.average_gradients(policy)  # several processes: the global batch's gradient
            grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            checks = torch.stack([loss.detach(), grad_norm])    # one read back per step (GPU: one sync)
            if not bool(torch.isfinite(checks).all()):          # a bad step never reaches the weights
                raise FloatingPointError(f"the loss became {checks[0].item()} and the gradient norm "
                                         f"{checks[1].item()}")
            optimizer.step()
            log.append({"pg_loss": pg_loss.detach(), "entropy": mb_entropy.detach(),
                        **{k: v.detach() for k, v in stats.items()}, "tokens": mask[mb].sum()})
    log = [dict(zip(d, torch.stack(list(d.values())).tolist())) for d in log]   # tensors -> floats
    # several processes: figures over the global minibatch (per-token means weighted by tokens)
    return [{k: dist.all_mean(v * d["tokens"]) / dist.all_mean(d["tokens"]) if k in PER_TOKEN
             else dist.all_mean(v) for k, v in d.items() if k != "tokens"} for d in log]


PER_TOKEN = ("entropy", "approx_kl", "approx_kl_k3", "clipfrac")   # means over response tokens


def train(cfg, stop) -> int:
    # several processes (torchrun): which one is this, of how many; (0, 1) when run alone
    device_type = runs.pick_device(cfg.device).type
    if cfg.bf16 and device_type != "cuda":
        raise UsageError("--bf16 needs a CUDA GPU (--device cuda): on a CPU bf16 matmuls are slower")
    rank, world = dist.setup(device_type)
    if cfg.batch % world or cfg.minibatch % world:
        raise UsageError(f"--batch={cfg.batch} and --minibatch={cfg.minibatch} must split evenly "
                         f"over the {world} processes")
    answers = answer_stream(sys.stdin) if cfg.human_eval and rank == 0 else None  # refuse now, not later
    if cfg.plot and figure(1, 1, (1, 1)) is None:
        raise UsageError(f"--plot: {NO_MATPLOTLIB}")
    run = runs.open_run(cfg, rank)          # checks --out / --resume, loads data, picks the device
    vocab, prompts, device, reward_fn = run.vocab, run.prompts, run.device, REWARDS[cfg.reward]
    if rank == 0:
        print(run.describe() + (f" | {world} processes" if world > 1 else ""))

    # ---------------------------------------------------------------- the reference pi_ref
    # Pretrain (or reuse the cached reference.pt), then keep a frozen copy: no gradients, eval mode.
    # Several processes: rank 0 pretrains while the others wait, then they load its reference.pt
    # (pretraining takes seconds, and every process must start from the very same pi_ref).
    policy = ref = None
    if rank == 0:
        policy, ref, pretrain_seconds = runs.pretrained_policy(run, stop)
    if dist.any_process(rank == 0 and policy is None):   # (also makes the others wait)
        return 130                          # interrupted during pretraining; its state is saved
    if rank > 0:
        policy, ref, pretrain_seconds = runs.pretrained_policy(run, stop, build=False)
    optimizer = AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)    # minippo/adamw.py
    # --bf16 (GPU): the log-probs' and the update's matmuls in bfloat16; sampling and evaluation fp32
    bf16 = lambda: torch.autocast(device.type, torch.bfloat16, enabled=cfg.bf16)
    state = runs.resume_rl(run, policy, optimizer, rank, world)  # iteration, beta, RNG
    beta = state["beta"]

    bar = tqdm(range(state["iter"], cfg.iters), desc="rl", initial=state["iter"], total=cfg.iters,
               dynamic_ncols=True, disable=rank > 0)
    t_start = time.time()
    for it in bar:
        t0 = time.time()
        if cfg.anneal_lr:   # a step size that decays to 0 lets noisy gradient ascent converge
            optimizer.lr = cfg.lr * (1 - it / cfg.iters)
        # ---- 1. sample responses: x from the prompt set, y ~ pi_theta(.|x) at temperature T
        xs = [prompts[i] for i in torch.randint(len(prompts), (cfg.batch // world,)).tolist()]
        prompt_ids = encode_prompts(vocab, xs, device)                   # (B, P)
        tokens, sampled_logprobs = sample(policy, prompt_ids, cfg.max_new_tokens, cfg.temperature,
                                          vocab.eos_id)                  # (B, L) each
        mask = (tokens != vocab.pad_id).float()                          # (B, L) 1 = response token
        ys, finished = decode_responses(vocab, tokens)

        # ---- 2. score them: r(x, y), plain Python on strings
        scores = score(reward_fn, xs, ys, finished, device)              # (B,)

        # ---- 3. log pi_old, V(s_t) and log pi_ref of the sampled tokens, at the same T
        with torch.no_grad(), bf16():
            if cfg.algo == "ppo" or cfg.bf16:   # (--bf16: the same bf16 matmuls as log pi_ref)
                old_logprobs, old_values, _ = response_logprobs(policy, prompt_ids, tokens, cfg.temperature)
            else:       # REINFORCE needs no V(s_t), and sampling already computed log pi_old(y_t)
                old_logprobs, old_values = sampled_logprobs, None
            ref_logprobs, _, _ = response_logprobs(ref, prompt_ids, tokens, cfg.temperature)
            rewards, kl = per_token_rewards(scores, old_logprobs, ref_logprobs, mask, beta)

            # ---- 4. advantages (PPO): GAE over the per-token rewards (optionally whitened)
            advantages = returns = None                 # REINFORCE needs neither
            if cfg.algo == "ppo":
                advantages, returns = gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
                if cfg.whiten:
                    advantages = whiten(advantages, mask)

        # ---- 5. update: K epochs of shuffled minibatches (PPO) or one step (REINFORCE)
        with bf16():
            log = update(policy, optimizer, cfg, beta, prompt_ids, tokens, mask, scores, kl,
                         old_logprobs, old_values, advantages, returns)
        if not torch.isfinite(sum(p.detach().sum() for p in policy.parameters())):   # NaN/inf spreads
            raise FloatingPointError(f"parameters became non-finite at iteration {it}")

        # ---- 6. log: one JSON line per iteration (see the README for each figure's meaning)
        # (several processes: means over all of them and texts gathered, so figures are global)
        kl_sum, reward = dist.all_mean(kl.sum(1).mean().item()), dist.all_mean(scores.mean().item())
        texts = dist.gather(list(zip(xs, ys, finished)))                # (x, y, reached EOS)
        m = {"iter": it + 1, "reward": reward, "kl": kl_sum,
             "objective": reward - beta * kl_sum, "beta": beta,
             **{k: sum(d[k] for d in log) / len(log) for k in log[0]},
             "response_length": dist.all_mean(mask.sum(1).mean().item()),
             "no_eos": 1 - sum(done for _, _, done in texts) / cfg.batch,
             "distinct": len(set(y for _, y, _ in texts)) / cfg.batch,
             "distinct_2grams": distinct_ngrams([y for _, y, _ in texts], 2)}
        if cfg.algo == "ppo":               # how well V(s_t) predicts the return
            m["explained_variance"] = explained_variance(old_values, returns, mask)
        if run.grammar:
            m["grammatical"] = sum(is_grammatical(x + y) for x, y, _ in texts) / cfg.batch
        if cfg.target_kl > 0:               # adaptive beta, after logging the beta that was used
            beta = update_beta(beta, kl_sum, cfg.target_kl, cfg.batch, cfg.kl_horizon)
        m["seconds"] = time.time() - t0
        runs.release_memory()               # keeps resident memory flat over long runs
        stopping = dist.any_process(stop.requested)     # Ctrl-C, in this or another process
        if rank == 0:                       # several processes: only rank 0 writes
            run.log_metrics(m)
            bar.set_postfix(reward=f"{m['reward']:.2f}", kl=f"{m['kl']:.2f}", J=f"{m['objective']:.3f}")
            if (it + 1) % cfg.sample_every == 0 or it == 0:
                run.log_samples(it + 1, xs[:4], ys[:4], scores[:4].tolist(), bar)
        if (it + 1) % cfg.ckpt_every == 0 or it + 1 == cfg.iters or stopping:
            rngs = dist.gather([rng_state()])            # every process's random state
            if rank == 0:
                run.save_rl(policy, optimizer, it + 1, beta, rngs)
        if stopping and it + 1 < cfg.iters:
            bar.close()
            if rank == 0:
                print(f"interrupted: saved iteration {it + 1} in {cfg.out}; continue with "
                      f"`{run.resume_hint}`", file=sys.stderr)
            return 130
    bar.close()
    rl_seconds = time.time() - t_start
    if rank > 0:                            # several processes: rank 0 alone evaluates and reports
        return 0

    # ---------------------------------------------------------------- how close to J*?
    torch.manual_seed(cfg.seed + 2)
    results, ref_texts, pol_texts = evaluate(policy, ref, vocab, prompts, reward_fn, cfg, device,
                                             run.grammar, beta)   # the final beta if it adapted
    target = results["objective_reference"] + 0.9 * (results["objective_optimal"] - results["objective_reference"])
    results.update(pretrain_seconds=pretrain_seconds, rl_seconds=rl_seconds, iters=cfg.iters,
                   samples_drawn=cfg.iters * cfg.batch,
                   samples_to_90pct=run.samples_to_reach(target))     # first batch with J >= 90% of the way
    run.save_summary(results)
    print(f"\nsame prompts, T = {cfg.temperature}:  reference pi_ref  |  tuned pi_theta")
    for a, b in zip(ref_texts[:8], pol_texts[:8]):
        print(f"  {a:<46} | {b}")
    print(summary_table(results, beta))
    if cfg.plot:
        print(f"curves: {plot_run(cfg.out)}")
    if cfg.human_eval:                      # the lecture's advice: evaluate with human feedback
        human_eval(policy, ref, vocab, prompts, cfg, device, cfg.human_eval, cfg.seed, answers,
                   sys.stdout, run.path("human_eval.jsonl"))
    return 0


def summary_table(s: dict, beta: float) -> str:
    g = lambda k: f"{s[k]:>11.3f}" if k in s else f"{'-':>11}"
    rows = [f"\n{'':<20}{'reward':>11}{'KL (nats)':>11}{'J':>11}{'grammatical':>12}{'distinct':>11}",
            f"{'pi_ref':<20}{g('reward_reference')}{0:>11.3f}{g('objective_reference')}"
            f"{g('grammatical_reference')} {g('distinct_reference')}",
            f"{'pi_theta (tuned)':<20}{g('reward_policy')}{g('kl_policy')}{g('objective_policy')}"
            f"{g('grammatical_policy')} {g('distinct_policy')}",
            f"{'pi* (exact optimum)':<20}{'':>22}{g('objective_optimal')}  (J* = beta log E_ref exp(r/beta), "
            f"+- {s['objective_optimal_se']:.3f})",
            f"optimality gap (J* - J(theta)) / (J* - J(pi_ref)) = {s['optimality_gap']:.3f}   "
            f"[beta {beta:.4g}, pretraining {s['pretrain_seconds']:.0f} s, RL {s['rl_seconds']:.0f} s; "
            f"all figures in summary.json]"]
    return "\n".join(rows)


if __name__ == "__main__":
    sys.exit(main())
