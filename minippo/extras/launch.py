"""`python train.py`: the command around the lesson. It checks the flags, prepares the run folder,
pretrains pi_ref (or loads it), calls minippo.ppo.train, evaluates against J* and reports.

Around the loop: flags and their checks (cli.py); the error boundary, Ctrl-C and SIGTERM, atomic
writes and the folder lock (files.py); the run folder, resume and the metrics (runs.py); pi_ref and
its cache (reference.py); torchrun (dist.py); plots and the blind human evaluation at the end.
"""
import json
import math
import numbers
import os
import shlex
import sys
from dataclasses import replace

import torch

from minippo import ppo
from minippo.evaluate import evaluate
from minippo.extras import dist, files, reference, reward_model, runs
from minippo.extras.cli import parse_config
from minippo.extras.files import Failure, UsageError
from minippo.extras.human_eval import answer_stream, human_eval
from minippo.extras.plot import NO_MATPLOTLIB, figure, plot_run
from minippo.rewards import REWARDS


def main(argv=None) -> int:
    stop, started = files.StopFlag(), []    # Ctrl-C or SIGTERM: finish the current step, save, exit

    def kept():
        run = started[0] if started else None
        if run and os.path.exists(run.path("checkpoint.pt")):
            return f"the last good checkpoint is kept; continue with `{run.resume_hint}`"
        return f"no checkpoint was saved in {run.cfg.out}" if run else "nothing was written"

    try:
        return files.boundary(command, argv, stop, started, stop=stop, after_stop=kept)
    finally:
        dist.close()


def checked(reward_fn):
    """reward_fn, made to stop the run with one line naming the reward, the prompt and the response
    when it raises, exits, or returns something that is not a finite number. Any real number is
    taken (a Python or numpy float or integer, a one-element tensor), as a float."""
    def reward(x, y):
        where = f"reward {reward_fn.__name__!r} on prompt {x!r} and response {y!r}"
        try:
            r = reward_fn(x, y)
        except (Exception, SystemExit) as e:
            raise Failure(f"{where} raised {type(e).__name__}: {e}") from None
        if isinstance(r, torch.Tensor) and r.numel() == 1 and r.dtype != torch.bool:
            r = r.item()
        if isinstance(r, bool) or not isinstance(r, numbers.Real) or not math.isfinite(r):
            raise Failure(f"{where} returned {r!r}; a reward must be a finite float")
        return float(r)
    reward.__name__ = reward_fn.__name__
    return reward


def command(argv, stop, started) -> int:
    """Every input is checked, on every process, before the first file is written."""
    cfg = parse_config(argv, rewards=tuple(REWARDS))
    gpu = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
    rank, world = dist.setup("cuda" if gpu else "cpu")          # which process of how many; (0, 1) alone
    refusal, run = None, None
    try:
        share = cfg.batch // world
        small = cfg.algo == "grpo" and share % cfg.group or cfg.algo == "reinforce" and share < 2
        if cfg.batch % world or cfg.minibatch % world or small:
            each = "REINFORCE: at least 2 responses each; GRPO: whole groups"
            sizes = f"--batch={cfg.batch} and --minibatch={cfg.minibatch}"
            raise UsageError(f"{sizes} must split evenly over the {world} processes ({each})")
        answers = answer_stream(sys.stdin) if cfg.human_eval and rank == 0 else None   # refuse now
        if cfg.plot and figure(1, 1, (1, 1)) is None:
            raise UsageError(f"--plot: {NO_MATPLOTLIB}")
        run = runs.Run(cfg, rank, world, stop)                # data and sizes checked
        proxy = None
        if cfg.reward_model:                                  # the learned r_phi, checked like any input
            proxy = reward_model.load(cfg.reward_model, run.identity, run.device, run.pretrain)
            reward_model.check_unchanged(cfg.reward_model, run)
        started.append(run)
        run.open()                                            # the folder: lock, --resume / --force
    except UsageError as e:
        refusal = e
    if dist.any_process(refusal is not None):   # rank 0 checks the folder: a refusal there ends
        raise refusal or UsageError("refused by process 0")   # every process, said once
    try:
        return tune_and_evaluate(cfg, run, answers, proxy)
    finally:
        run.close()


def tune_and_evaluate(cfg, run, answers, proxy) -> int:
    rank, world = run.rank, run.world
    if rank == 0:
        reward = f"reward {cfg.reward!r}"
        reward = f"learned reward {cfg.reward_model!r} (gold {cfg.reward!r})" if proxy else reward
        algo = f"{cfg.algo}, {reward}, beta {cfg.beta}, T {cfg.temperature}"
        size = f"{cfg.batch} responses x <= {cfg.max_new_tokens} tokens per iteration"
        size += f", {cfg.iters} iterations"
        where = f"out: {cfg.out}" + (f" | {world} processes" if world > 1 else "")
        head = f"minippo | device {run.device} | {len(run.prompts)} prompts"
        print(f"{head} | {algo} | {size} | {where}")

    # pi_ref: rank 0 pretrains (or reuses the cached reference.pt) while the others wait, then they
    # load its reference.pt (pretraining takes seconds, and every process must start from one pi_ref)
    policy, pretrain_seconds = reference.pretrained_policy(run) if rank == 0 else (None, 0.0)
    dist.any_process(False)                 # the others wait for rank 0's reference.pt
    if rank > 0:
        policy, pretrain_seconds = reference.pretrained_policy(run, build=False)
    run.pretrain_seconds = pretrain_seconds     # (a resumed run adds what its checkpoint saved)

    # the lesson: each process tunes the policy on its share of the batch
    share = replace(cfg, batch=cfg.batch // world, minibatch=cfg.minibatch // world)
    reward_fn = checked(proxy[0] if proxy else REWARDS[cfg.reward])
    if proxy:                               # the loop optimises the learned r_phi; the gold r is logged
        run.gold = checked(REWARDS[cfg.reward])
    try:
        ref, beta = ppo.train(share, policy, run.vocab, run.prompts, reward_fn, run)
    finally:
        run.close_bar()                     # an error message then starts on a line of its own
    if rank > 0:                            # several processes: rank 0 alone evaluates and reports
        return 130 if run.stopped else 0
    run.stop.immediate = True               # nothing left to save: Ctrl-C from here on quits at once
    if run.stop.requested:                  # (a stop that came after the last checkpoint too)
        if not run.stopped:
            files.say(f"interrupted: the run is saved; continue with `{run.resume_hint}`")
        return 130
    results = measure(cfg, run, policy, ref, beta, reward_fn, proxy)
    j_ref, j_star = results["objective_reference"], results["objective_optimal"]
    target = j_ref + 0.9 * (j_star - j_ref) if results["objective_optimal_trusted"] else math.inf
    logged = map(json.loads, run.logs["metrics.jsonl"])
    first = next((m["iter"] * cfg.batch for m in logged if m["objective"] >= target), None)
    results.update(pretrain_seconds=run.pretrain_seconds, rl_seconds=run.rl_seconds)
    results.update(iters=cfg.iters, samples_drawn=cfg.iters * cfg.batch, samples_to_90pct=first)
    files.save_json(results, run.path("summary.json"))
    print(summary_table(results, beta, cfg.out))
    if cfg.plot:
        print(f"curves: {plot_run(cfg.out)}")
    if cfg.human_eval:                      # the lecture's advice: evaluate with human feedback
        out, models = run.path("human_eval.jsonl"), (policy, ref, run.vocab, run.prompts)
        human_eval(*models, cfg, run.device, cfg.human_eval, cfg.seed, answers, sys.stdout, out)
    return 0


def measure(cfg, run, policy, ref, beta, reward_fn, proxy) -> dict:
    """How close to J*: the figures of minippo/evaluate.py (and, with a learned reward, the gold
    reward's on the same samples, and the texts'), after one sample per prompt side by side."""
    n = cfg.eval_samples
    files.say(f"evaluating against J*: {n} samples per prompt from pi_ref and pi_theta")
    torch.manual_seed(cfg.seed + runs.EVAL_SEED)
    models = (policy, ref, run.vocab, run.prompts)          # evaluated with the final beta
    results, ref_texts, pol_texts = evaluate(*models, reward_fn, cfg, run.device, beta)
    results.update(runs.text_figures(ref_texts, run.grammar, "_reference"))
    results.update(runs.text_figures(pol_texts, run.grammar, "_policy"))
    if proxy:                               # the same samples, scored by the gold reward
        texts = (run.prompts, n, ref_texts, pol_texts, results["kl_policy"], beta)
        results.update(reward_model.gold_figures(run.gold, cfg.reward, *texts))
        accuracy = proxy[1].get("held_out_accuracy")
        results.update(reward_model=cfg.reward_model, reward_model_accuracy=accuracy)
    print(f"\nsame prompts, T = {cfg.temperature}:  reference pi_ref  |  tuned pi_theta")
    for a, b in list(zip(ref_texts, pol_texts))[::n][:8]:   # one per prompt
        print(f"  {a:<46} | {b}")
    return results


def summary_table(s: dict, beta: float, out: str = "out", saved: str = "summary.json") -> str:
    fine = lambda k: isinstance(s.get(k), float) and math.isfinite(s[k])
    g = lambda k: f"{s[k]:>11.3f}" if fine(k) else f"{'-':>11}"
    na = "n/a (J* is not above J(pi_ref): no room to improve, or too few --eval-samples)"
    if s.get("objective_optimal_trusted") is False:     # pi*'s weights rest on too few samples
        more = f"python -m minippo.extras.reevaluate {shlex.quote(out)} --eval-samples {8 * s['eval_samples_per_prompt']}"
        na = f"n/a: J* rests on {s['objective_optimal_ess']:.1f} samples of a prompt; measure again: {more}"
    gap = f"{s['optimality_gap']:.3f}" if fine("optimality_gap") else na
    star = f"(J* = E_x beta log E_ref exp(r/beta), +- {s['objective_optimal_se']:.3f})"
    if mixed := s.get("objective_optimal_mixture_prompts"):
        star += f", for {mixed} of the prompts from pi_theta's samples too"
    took = f"pretraining {s['pretrain_seconds']:.0f} s, RL {s['rl_seconds']:.0f} s"
    rows = [f"\n{'':<20}{'reward':>11}{'KL_ref':>11}{'J':>11}{'grammatical':>12}{'distinct':>11}",
            f"{'pi_ref':<20}{g('reward_reference')}{0:>11.3f}{g('objective_reference')}"
            f"{g('grammatical_reference')} {g('distinct_reference')}",
            f"{'pi_theta (tuned)':<20}{g('reward_policy')}{g('kl_policy')}{g('objective_policy')}"
            f"{g('grammatical_policy')} {g('distinct_policy')}",
            f"{'pi* (exact optimum)':<20}{'':>22}{g('objective_optimal')}  {star}",
            f"optimality gap (J* - J(theta)) / (J* - J(pi_ref)) = {gap}   [beta {beta:.4g}, {took}; "
            f"KL_ref in nats per response; all figures in {saved}]"]
    if "gold_objective_optimal" in s:       # --reward-model: the table above is the learned proxy's
        gold_gap = f"{s['gold_optimality_gap']:.3f}" if fine("gold_optimality_gap") else "n/a"
        rows[0] = "\nunder the learned reward (the proxy PPO optimised):" + rows[0]
        rows += [f"\nunder the gold reward {s['gold']!r} (what was wanted), on the same samples:",
                 f"{'pi_ref':<20}{g('gold_reward_reference')}{0:>11.3f}{g('gold_objective_reference')}",
                 f"{'pi_theta (tuned)':<20}{g('gold_reward_policy')}{g('kl_policy')}{g('gold_objective_policy')}",
                 f"{'pi* of the gold':<20}{'':>22}{g('gold_objective_optimal')}",
                 f"gold optimality gap = {gold_gap}"]
    return "\n".join(rows)
