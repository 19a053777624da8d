"""Over-optimisation, measured: PPO against a learned reward, scored by the gold reward it imitates.

    python -m minippo.extras.overoptimisation --out overopt        # ~1.5 min on a 2-core CPU

Gao, Schulman and Hilton (2022): a reward model per --pairs, PPO against each at every --betas value; gold and proxy
reward against sqrt(KL) in a table, CSV and plot. Finished models and runs are reused. More in docs/reward_model.md.
"""
import argparse
import csv
import io
import math
import os

from minippo.config import Config
from minippo.extras import files, plot, reward_model, sweep
from minippo.extras.cli import LIMITS, PRETRAIN_KEYS, flag, one_line_error, parse_config
from minippo.extras.files import UsageError
from minippo.rewards import REWARDS


def texts(text: str, name: str, kind, low, high) -> list[str]:
    """A comma-separated flag's distinct values from low to high, each as its exact text (repr): its folder's name."""
    try:
        values = [kind(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"--{name}={text}: expected comma-separated {kind.__name__}s") from None
    if len(set(values)) != len(values) or not all(low <= v <= high for v in values):   # (nan: refused)
        raise UsageError(f"--{name}={text}: must be distinct values from {low} to {high:,}")
    return [repr(v) for v in values]


def trained(folder: str, pairs: str, args):
    path = os.path.join(folder, "reward_model.pt")
    state = files.load(path, "reward_model") if os.path.isfile(path) else {}
    changed = files.differences(state, {"pairs": int(pairs), "gold": args.reward, "tau": args.tau,
                                        "seed": args.seed, "pretrain": args.pretrain, "pairs_file": ""})
    if state and changed and not args.force:
        raise UsageError(f"--out={args.out}: {path} was trained with other settings ({changed}); use another "
                         f"--out, or --force to train it again (its PPO runs are then run again too)")
    return None if changed else state


def windows(metrics: list, size: int, run_dir: str) -> list:
    """Means over consecutive windows of `size` iterations (the last may be shorter)."""
    out, keys = [], {"kl": "kl", "proxy_reward": "reward", "gold_reward": "gold_reward", "grammatical": "grammatical"}
    for w in [metrics[i:i + size] for i in range(0, len(metrics), size)]:
        mean = {k: sum(m[v] for m in w) / len(w) if all(m.get(v) is not None for m in w) else None
                for k, v in keys.items()}
        if mean["kl"] is None or mean["gold_reward"] is None:       # e.g. a run of another command
            raise UsageError(f"{run_dir}/metrics.jsonl: iteration {w[0]['iter']} has no numeric kl and gold_reward; "
                             f"remove {run_dir} and run this command again")
        out.append({"iter": w[-1]["iter"], "sqrt_kl": math.sqrt(max(0.0, mean["kl"])), **mean})
    return out


def measure(args) -> list:
    results, reference = [], args.reference
    for n in args.pairs:
        folder = os.path.join(args.out, f"rm_{n}_pairs")
        if trained(folder, n, args) is None:
            print(f"\nreward model on {n} pairs -> {folder}", flush=True)
            code = reward_model.main(["--pairs", n, "--reward", args.reward, "--tau", str(args.tau), "--seed",
                                      str(args.seed), "--out", folder, "--force", "--reference", reference])
            if code:
                raise SystemExit(code)
        accuracy = trained(folder, n, args).get("held_out_accuracy", float("nan"))
        reference = os.path.join(folder, "reference.pt")       # pretrained once, then copied
        for b in args.betas:
            run_dir = os.path.join(args.out, f"ppo_{n}_pairs", f"beta={b}")
            config = os.path.join(run_dir, "config.json")     # older than its reward model: it optimised another
            old = os.path.exists(config) and os.path.getmtime(config) < os.path.getmtime(f"{folder}/reward_model.pt")
            flags = args.run_flags + ["--reward-model", folder] + ["--force"] * old
            sweep.sweep("beta", [b], os.path.dirname(run_dir), flags, reference)     # (summary.json: readable)
            results.append({"pairs": n, "accuracy": accuracy, "beta": b, "summary": plot.read_summary(run_dir),
                            "windows": windows(plot.read_metrics(run_dir), args.window, run_dir)})
    return results


def draw(results: list, path: str, gold: str):
    """A panel per reward model, a colour per beta, from pi_ref at KL = 0: `path`, or None without matplotlib."""
    pairs = list(dict.fromkeys(r["pairs"] for r in results))
    fig = plot.figure(1, len(pairs), (5.2 * len(pairs), 4.4))
    if fig is None:
        return None
    for ax, n in zip(fig.axes, pairs):
        for i, r in enumerate(r for r in results if r["pairs"] == n):
            x = [0.0] + [p["sqrt_kl"] for p in r["windows"]]
            for key, start, style, what in [("gold_reward", "gold_reward_reference", "o-", "gold"),
                                            ("proxy_reward", "reward_reference", "x--", "proxy r_phi")]:
                y = [r["summary"][start]] + [p[key] for p in r["windows"]]
                ax.plot(x, y, style, ms=3, color=f"C{i}", label=f"{what}, beta {r['beta']}")
        ax.set_title(f"r_phi from {n} pairs (held-out accuracy {r['accuracy']:.2f})", fontsize=10)
        ax.set_xlabel("sqrt(KL(pi_theta || pi_ref)), KL in nats per response")
        ax.set_ylabel(f"mean reward (gold {gold!r}; proxy normalised)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle("PPO against a learned reward: the proxy it optimises and the gold reward it imitates")
    return plot.save(fig, path)


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
    path, text = os.path.join(args.out, "overoptimisation.csv"), io.StringIO()
    columns = ["pairs", "beta", "iter", "kl", "sqrt_kl", "proxy_reward", "gold_reward", "grammatical"]
    writer = csv.DictWriter(text, columns, lineterminator="\n")     # (None: an empty cell)
    writer.writeheader()
    writer.writerows({"pairs": r["pairs"], "beta": r["beta"], **p} for r in results for p in r["windows"])
    files.save_lines([text.getvalue()], path)
    png = draw(results, os.path.join(args.out, "overoptimisation.png"), args.reward)
    print(f"wrote {path}\n" + (f"wrote {png}" if png else f"plot skipped: {plot.NO_MATPLOTLIB}"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minippo.extras.overoptimisation", allow_abbrev=False, description=
                                "PPO against learned rewards, scored by the gold one; other flags go to every run")
    a = p.add_argument
    a("--out", default="overopt", help="folder for the reward models, runs, CSV and plot [default: overopt]")
    a("--pairs", default="250,2000", help="preference pairs of each reward model [default: 250,2000]")
    a("--betas", default="0,0.01", help="KL coefficients of the PPO runs [default: 0,0.01]")
    a("--reward", default="positive", choices=sorted(REWARDS), help="the gold reward [default: positive]")
    a("--tau", type=float, default=0.0, help="labelling noise (see reward_model) [default: 0]")
    a("--iters", type=int, default=150, help="PPO iterations of each run [default: 150]")
    a("--window", type=int, default=10, help="iterations averaged into each point [default: 10]")
    a("--seed", type=int, default=None, help="seed of pi_ref, the pairs and the runs [default: 0, or --reference's]")
    a("--reference", default="", help="start from this reference.pt of a train.py run, with its settings")
    a("--force", action="store_true", help="train again a reward model made with other settings; rerun its runs")
    p.error = one_line_error
    args, run_flags = p.parse_known_args(argv)     # any other flag goes to every PPO run
    try:
        return files.boundary(command, args, run_flags, after_stop=lambda: "run the same command again to continue")
    except SystemExit as e:                  # a reward model or a run failed, and said why
        return e.code


def command(args, run_flags) -> int:
    for name in [a.split("=")[0] for a in run_flags]:
        if name in ("--reward-model", "--resume", "--out", "--beta"):
            raise UsageError(f"{name}: set by this command for each run; leave it out (--betas sets beta)")
        if name in [flag(k) for k in PRETRAIN_KEYS]:
            raise UsageError(f"{name}: pi_ref's settings come from --reference RUN/reference.pt, so that all share it")
    settings = reward_model.reference_settings(args.reference) if args.reference else {}
    if args.seed not in (None, settings.get("seed", args.seed)):
        raise UsageError(f"--seed={args.seed}: --reference={args.reference} was pretrained with seed "
                         f"{settings['seed']}; leave --seed out or give that one")
    args.seed = settings.get("seed", args.seed or 0)
    args.pretrain = settings or {k: getattr(Config(seed=args.seed), k) for k in PRETRAIN_KEYS}
    args.run_flags = run_flags + [a for k, v in settings.items() if k != "seed" and v != "" for a in (flag(k), str(v))]
    args.run_flags += ["--reward", args.reward, "--seed", str(args.seed), "--iters", str(args.iters)]
    args.pairs = texts(args.pairs, "pairs", int, 2, 10 ** 6)
    args.betas = texts(args.betas, "betas", float, *LIMITS["beta"])
    if not 0 <= args.tau <= 10 ** 6:        # (nan: refused)
        raise UsageError(f"--tau={args.tau}: must be from 0 to 1,000,000")
    if not 1 <= args.window <= args.iters:
        raise UsageError(f"--window={args.window}: must be an integer from 1 to --iters={args.iters}")
    parse_config(args.run_flags + ["--reward-model", "-", "--out", args.out], tuple(REWARDS))   # as train.py would
    report(measure(args), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
