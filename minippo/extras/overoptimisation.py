"""Over-optimisation, measured: PPO against a learned reward, scored by the gold reward it imitates.

    python -m minippo.extras.overoptimisation --out overopt        # ~1.5 min on a 2-core CPU

Gao, Schulman and Hilton (2022, "Scaling laws for reward model overoptimization") trained reward
models on preferences labelled by a large "gold" reward model, optimised policies against them, and
plotted both rewards against sqrt(KL(pi || pi_ref)) as training went on: the proxy keeps rising
while the gold reward rises, peaks and falls. Here the gold reward is a hand-written one (--reward),
so the same measurement takes minutes:

  1. reward models r_phi on --pairs preference pairs each (250 and 2,000 by default), labelled by the
     gold reward (minippo/extras/reward_model.py), all from one pi_ref;
  2. for each, a PPO run against r_phi at each --betas value (0: nothing holds the policy near pi_ref;
     0.01: a small KL penalty), --iters iterations each, through train.py's main (as
     minippo/extras/sweep.py runs them). Every iteration logs the batch's proxy reward, gold reward
     and KL (metrics.jsonl), so a run traces both rewards as the policy moves away from pi_ref;
  3. OUT/overoptimisation.png: gold (solid) and proxy (dashed) reward against sqrt(KL), means over
     windows of --window iterations, one panel per reward model; OUT/overoptimisation.csv and a table:
     where the gold reward peaked, and where each run ended (its final evaluation).

Finished reward models and runs are reused, so running the command again continues where it stopped.
Any other flag goes to every PPO run (`--eval-samples 32`, say), and `--reference RUN/reference.pt`
starts from another run's pi_ref, with its settings.
"""
import argparse
import csv
import io
import math
import os
import sys

from minippo.config import Config
from minippo.extras import files, plot, reward_model, sweep
from minippo.extras.cli import PRETRAIN_KEYS, one_line_error, parse_config
from minippo.extras.files import UsageError
from minippo.extras.plot import NO_MATPLOTLIB, figure
from minippo.rewards import REWARDS

WINDOW_COLUMNS = ["pairs", "beta", "iter", "kl", "sqrt_kl", "proxy_reward", "gold_reward", "grammatical"]
SUMMARY_KEYS = ("kl_policy", "reward_policy", "reward_reference", "gold_reward_policy", "gold_reward_reference")


def texts(text: str, flag: str, kind) -> list[str]:
    """The values of a comma-separated flag, each as the one exact text of its value (repr): the run
    folder, the table and the CSV all name a value by it, so values that differ never share a folder."""
    try:
        values = [kind(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"--{flag}={text}: expected comma-separated {kind.__name__}s, e.g. "
                         f"{'100,2000' if kind is int else '0,0.01'}") from None
    if len(set(values)) != len(values):
        raise UsageError(f"--{flag}={text}: the values must differ")
    return [repr(v) for v in values]


def trained(folder: str, pairs: str, args):
    """The saved facts of folder/reward_model.pt when it was trained with these settings (and this
    pi_ref), else None; UsageError when it was trained otherwise and --force was not given."""
    path = os.path.join(folder, "reward_model.pt")
    if not os.path.isfile(path):
        return None
    state = files.load(path, "reward_model")
    changed = files.differences(state, {"pairs": int(pairs), "gold": args.reward, "tau": args.tau,
                                        "seed": args.seed, "pretrain": args.pretrain, "pairs_file": ""})
    if changed and not args.force:
        raise UsageError(f"--out={args.out}: {path} was trained with other settings ({changed}); use another "
                         f"--out, or --force to train it again (its PPO runs are then run again too)")
    return None if changed else state


def stale(run_dir: str, model_path: str) -> bool:
    """A run in run_dir started before the reward model was (re)trained: it optimised an older one."""
    config = os.path.join(run_dir, "config.json")
    return os.path.exists(config) and os.path.getmtime(config) < os.path.getmtime(model_path)


def windows(metrics: list, size: int, run_dir: str) -> list:
    """Means over consecutive windows of `size` iterations of the batch figures (the last window
    may be shorter): KL, proxy reward, gold reward, grammatical fraction."""
    for m in metrics:                       # e.g. a run of another command, or of an older minippo
        if not all(isinstance(m.get(k), (int, float)) for k in ("kl", "gold_reward")):
            raise UsageError(f"{run_dir}/metrics.jsonl: iteration {m['iter']} has no numeric kl and gold_reward; "
                             f"remove {run_dir} and run this command again")
    out = []
    for i in range(0, len(metrics), size):
        w = metrics[i:i + size]
        mean = lambda k: sum(m[k] for m in w) / len(w) if all(m.get(k) is not None for m in w) else None
        out.append({"iter": w[-1]["iter"], "kl": mean("kl"), "sqrt_kl": math.sqrt(max(0.0, mean("kl"))),
                    "proxy_reward": mean("reward"), "gold_reward": mean("gold_reward"),
                    "grammatical": mean("grammatical")})
    return out


def run_arguments(args, reward_model_folder: str) -> list:
    """train.py's flags for a PPO run against the reward model in reward_model_folder (beta and --out
    are the sweep's)."""
    return args.run_flags + ["--reward-model", reward_model_folder, "--reward", args.reward,
                             "--seed", str(args.seed), "--iters", str(args.iters)]


def measure(args) -> list:
    """Train (or reuse) each reward model and run (or reuse) PPO against it at each beta; one dict
    per run: its settings, the reward model's accuracy, its windows and its final evaluation."""
    results, reference = [], args.reference
    for n in args.pairs:
        folder = os.path.join(args.out, f"rm_{n}_pairs")
        if trained(folder, n, args) is None:
            print(f"\nreward model on {n} pairs -> {folder}", flush=True)
            code = reward_model.main(["--pairs", n, "--reward", args.reward, "--tau", str(args.tau),
                                      "--seed", str(args.seed), "--out", folder, "--force"]
                                     + (["--reference", reference] if reference else []))
            if code:
                raise SystemExit(code)
        state = trained(folder, n, args)
        reference = os.path.join(folder, "reference.pt")       # pretrained once, then copied
        for b in args.betas:
            run_dir = os.path.join(args.out, f"ppo_{n}_pairs", f"beta={b}")
            again = ["--force"] if stale(run_dir, os.path.join(folder, "reward_model.pt")) else []
            sweep.sweep("beta", [b], os.path.dirname(run_dir), run_arguments(args, folder) + again, reference)
            summary = plot.read_summary(run_dir)
            if not all(isinstance(summary.get(k), (int, float)) for k in SUMMARY_KEYS):
                raise UsageError(f"{run_dir}/summary.json: unreadable or not a --reward-model run's; remove "
                                 f"{run_dir} and run this command again")
            results.append({"pairs": n, "accuracy": state.get("held_out_accuracy", float("nan")), "beta": b,
                            "windows": windows(plot.read_metrics(run_dir), args.window, run_dir),
                            "summary": summary})
    return results


def draw(results: list, path: str, gold: str) -> str:
    """One panel per reward model: gold (solid) and proxy (dashed) reward against sqrt(KL), one
    colour per beta, starting from pi_ref at KL = 0. Returns `path`."""
    pairs = list(dict.fromkeys(r["pairs"] for r in results))
    fig = figure(1, len(pairs), (5.2 * len(pairs), 4.4))
    if fig is None:
        raise UsageError(NO_MATPLOTLIB)
    for ax, n in zip(fig.axes, pairs):
        for i, r in enumerate(r for r in results if r["pairs"] == n):
            s, w = r["summary"], r["windows"]
            x = [0.0] + [p["sqrt_kl"] for p in w]
            ax.plot(x, [s["gold_reward_reference"]] + [p["gold_reward"] for p in w], "o-", ms=3, color=f"C{i}",
                    label=f"gold, beta {r['beta']}")
            ax.plot(x, [s["reward_reference"]] + [p["proxy_reward"] for p in w], "x--", ms=3, color=f"C{i}",
                    label=f"proxy r_phi, beta {r['beta']}")
        ax.set_title(f"r_phi from {n} pairs (held-out accuracy {r['accuracy']:.2f})", fontsize=10)
        ax.set_xlabel("sqrt(KL(pi_theta || pi_ref)), KL in nats per response")
        ax.set_ylabel(f"mean reward (gold {gold!r}; proxy normalised)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle("PPO against a learned reward: the proxy it optimises and the gold reward it imitates",
                 fontsize=11)
    fig.savefig(path, dpi=100)
    return path


def report(results: list, args) -> None:
    print(f"\nPPO against reward models of {args.reward!r} preferences; gold and proxy are means over windows "
          f"of {args.window} iterations, 'end' is the final evaluation")
    head = ["pairs", "accuracy", "beta", "gold peak", "at sqrtKL", "at iter", "proxy there", "end sqrtKL",
            "end proxy", "end gold", "grammatical"]
    print("".join(f"{h:>12}" for h in head))
    for r in results:
        peak, s = max(r["windows"], key=lambda p: p["gold_reward"]), r["summary"]
        cells = [r["pairs"], r["accuracy"], r["beta"], peak["gold_reward"], peak["sqrt_kl"], peak["iter"],
                 peak["proxy_reward"], math.sqrt(max(0.0, s["kl_policy"])), s["reward_policy"], s["gold_reward_policy"],
                 s.get("grammatical_policy")]
        print("".join(f"{'-' if c is None else f'{c:.3f}' if isinstance(c, float) else c:>12}" for c in cells))
    path = os.path.join(args.out, "overoptimisation.csv")
    rows = [{"pairs": r["pairs"], "beta": r["beta"], **p} for r in results for p in r["windows"]]
    out = io.StringIO(newline="")
    csv.writer(out).writerows([WINDOW_COLUMNS] + [["" if row[c] is None else row[c] for c in WINDOW_COLUMNS]
                                                  for row in rows])
    files.save_lines([out.getvalue()], path)
    print(f"wrote {path}")
    if figure(1, 1, (1, 1)) is None:
        print(f"plot skipped: {NO_MATPLOTLIB}")
    else:
        print(f"wrote {draw(results, os.path.join(args.out, 'overoptimisation.png'), args.reward)}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minippo.extras.overoptimisation", allow_abbrev=False,
                                description="Reward models on few and many preference pairs; PPO "
                                "against each at several betas; gold and proxy reward against sqrt(KL). "
                                "Any other flag goes to every PPO run (see python train.py --help).")
    p.add_argument("--out", default="overopt", help="folder for the reward models, runs, CSV and plot "
                   "[default: overopt]")
    p.add_argument("--pairs", default="250,2000", help="preference pairs of each reward model [default: 250,2000]")
    p.add_argument("--betas", default="0,0.01", help="KL coefficients of the PPO runs [default: 0,0.01]")
    p.add_argument("--reward", default="positive", choices=sorted(REWARDS), help="the gold reward "
                   "[default: positive]")
    p.add_argument("--tau", type=float, default=0.0, help="labelling noise (see reward_model) [default: 0]")
    p.add_argument("--iters", type=int, default=150, help="PPO iterations of each run [default: 150]")
    p.add_argument("--window", type=int, default=10, help="iterations averaged into each point [default: 10]")
    p.add_argument("--seed", type=int, default=None, help="seed of pi_ref, the pairs and the runs "
                   "[default: 0, or --reference's]")
    p.add_argument("--reference", default="", help="start from this reference.pt (of a train.py run "
                   "folder): its settings (model shape, corpus, seed) apply to the reward models and runs")
    p.add_argument("--force", action="store_true", help="train again a reward model in --out made with "
                   "other settings, and rerun its PPO runs")
    p.error = one_line_error
    args, run_flags = p.parse_known_args(argv)     # any other flag goes to every PPO run
    try:
        return files.boundary(command, args, run_flags, after_stop=lambda: "run the same command again to continue")
    except SystemExit as e:                  # a reward model or a run failed, and said why
        return e.code


def command(args, run_flags) -> int:
    """Every flag is checked before any work: a bad one is one line naming it."""
    for flag in ("--reward-model", "--resume", "--out", "--beta"):
        if any(a.split("=")[0] == flag for a in run_flags):
            raise UsageError(f"{flag}: set by this command for each run; leave it out (--betas sets beta)")
    for a in run_flags:
        if a.split("=")[0] in [f"--{k.replace('_', '-')}" for k in PRETRAIN_KEYS]:
            raise UsageError(f"{a.split('=')[0]}: pi_ref's settings come from --reference RUN/reference.pt "
                             f"(a train.py run made with them), so that the reward models share it")
    args.run_flags, settings = run_flags, {}
    if args.reference:
        settings = reward_model.reference_settings(args.reference)
        if args.seed not in (None, settings["seed"]):
            raise UsageError(f"--seed={args.seed}: --reference={args.reference} was pretrained with "
                             f"seed {settings['seed']}; leave --seed out or give that one")
        args.run_flags += [a for k, v in settings.items() if k != "seed" and v != ""
                           for a in (f"--{k.replace('_', '-')}", str(v))]
    args.seed = settings.get("seed", 0 if args.seed is None else args.seed)
    args.pretrain = settings or {k: getattr(Config(seed=args.seed), k) for k in PRETRAIN_KEYS}
    typed, args.pairs, args.betas = args.betas, texts(args.pairs, "pairs", int), texts(args.betas, "betas", float)
    if not all(2 <= int(n) <= 1_000_000 for n in args.pairs):
        raise UsageError(f"--pairs={','.join(args.pairs)}: every value must be from 2 to 1,000,000")
    if not (math.isfinite(args.tau) and args.tau >= 0):
        raise UsageError(f"--tau={args.tau}: must be a finite number >= 0")
    if not 1 <= args.window <= args.iters:
        raise UsageError(f"--window={args.window}: must be an integer from 1 to --iters={args.iters}")
    parse_config(run_arguments(args, "unused") + ["--out", args.out], tuple(REWARDS))   # the run flags, --out
    for b in args.betas:                    # each beta as train.py would check it
        try:
            parse_config(run_arguments(args, "unused") + ["--out", args.out, "--beta", b], tuple(REWARDS))
        except UsageError as e:
            raise UsageError(f"--betas={typed}: {e}") from None
    report(measure(args), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
