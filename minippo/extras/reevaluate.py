"""`python -m minippo.extras.reevaluate DIR --eval-samples N`: measure a saved run against J* again,
with N samples per prompt, without training. It reads DIR's config.json, reference.pt (pi_ref) and
checkpoint.pt (pi_theta as last saved, and its beta), changes none of them, prints the table of
train.py and writes DIR/evaluation-N.json: the figures of summary.json, from N samples per prompt
(a rerun with the same N gives the same file, which replaces the old one only once it is saved).
"""
import argparse
import os
import sys
from dataclasses import replace

import torch

from minippo.extras import files, launch, reference, reward_model, runs
from minippo.extras.cli import LIMITS, config_from, one_line_error, within
from minippo.model import Policy
from minippo.rewards import REWARDS


def command(argv) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0].strip("`"), allow_abbrev=False)
    p.add_argument("run", help="a run folder of train.py (its --out)")
    p.add_argument("--eval-samples", type=int, help="samples per prompt [default: the run's]")
    p.error = one_line_error
    args = p.parse_args(argv)
    if not os.path.isfile(os.path.join(args.run, "config.json")):
        raise files.UsageError(f"{args.run}: not a run folder of train.py (no config.json)")
    cfg = config_from(os.path.join(args.run, "config.json"), tuple(REWARDS))
    n = cfg.eval_samples if args.eval_samples is None else args.eval_samples
    here = cfg.device != "cuda" or torch.cuda.is_available()       # (a GPU's run, on a CPU: there)
    cfg = replace(cfg, out=args.run, resume=args.run, eval_samples=n, device=cfg.device if here else "cpu")
    within("eval_samples", cfg.eval_samples, *LIMITS["eval_samples"])
    run = runs.Run(cfg)
    run.lock_fd = files.lock(cfg.out)                   # not while train.py writes there
    try:
        if run.cached_reference() is None:
            raise files.UsageError(f"{run.path('reference.pt')}: missing, or not this run's pi_ref")
        ref, path = reference.pretrained_policy(run, build=False)[0], run.path("checkpoint.pt")
        state = files.load(path, "rl")
        run.check_identity(state, path)
        policy = files.load_model(Policy(run.model_config), state.get("model"), path).eval()
        try:
            it, beta, rl = state["iter"], float(state["beta"]), float(state["rl_seconds"])
        except runs.NOT_SAVED:
            raise files.UsageError(f"{path}: not a checkpoint of train.py") from None
        proxy = None
        if cfg.reward_model:                            # the learned r_phi the run optimised
            proxy = reward_model.load(cfg.reward_model, run.identity, run.device, run.pretrain)
            run.gold = launch.checked(REWARDS[cfg.reward])
        reward_fn = launch.checked(proxy[0] if proxy else REWARDS[cfg.reward])
        print(f"{cfg.out}: pi_theta of iteration {it} of {cfg.iters}, beta {beta:.4g}")
        results = launch.measure(cfg, run, policy.to(run.device), ref, beta, reward_fn, proxy)
        results.update(iter=it, pretrain_seconds=state.get("pretrain_seconds", 0), rl_seconds=rl)
        saved = run.path(f"evaluation-{n}.json")
        files.save_json(results, saved)
        print(launch.summary_table(results, beta, cfg.out, os.path.basename(saved)))
    finally:
        run.close()
    return 0


def main(argv=None) -> int:
    return files.boundary(command, argv)


if __name__ == "__main__":
    sys.exit(main())
