"""Over-optimisation, measured (Gao, Schulman and Hilton 2022): PPO against a learned reward r_phi,
scored by the gold reward r_phi imitates. The runs are a beta sweep against each reward model:

    python -m minippo.extras.reward_model --pairs 250 --out overopt/rm_250
    python -m minippo.extras.sweep --sweep beta=0,0.01 --reward-model overopt/rm_250 --iters 150 \\
        --out overopt/ppo_250                           # (and the same with 2000 pairs)
    python -m minippo.extras.overoptimisation overopt/ppo_*/beta=* --out overopt

This reads them: gold and proxy reward against sqrt(KL), in means over --window iterations, as a
table, OUT/overoptimisation.csv and OUT/overoptimisation.png (a panel per reward model).
"""
import argparse
import csv
import io
import math
import os

from minippo.extras import files, plot
from minippo.extras.cli import one_line_error, read_settings
from minippo.extras.files import UsageError
from minippo.extras.reward_model import reward_model_file

KEYS = dict(kl="kl", proxy_reward="reward", gold_reward="gold_reward", grammatical="grammatical")


def windows(metrics: list, size: int, run_dir: str) -> list:
    """Means over consecutive windows of `size` iterations (the last may be shorter)."""
    out = []
    for w in [metrics[i:i + size] for i in range(0, len(metrics), size)]:
        have = [v for v in KEYS.values() if all(m.get(v) is not None for m in w)]
        mean = {k: sum(m[v] for m in w) / len(w) if v in have else None for k, v in KEYS.items()}
        if mean["kl"] is None or mean["gold_reward"] is None:
            raise UsageError(f"{run_dir}: iteration {w[0]['iter']} has no kl or gold_reward")
        out.append({"iter": w[-1]["iter"], "sqrt_kl": math.sqrt(max(0.0, mean["kl"])), **mean})
    return out


def read_run(run_dir: str, window: int) -> dict:
    """A finished train.py --reward-model run: its reward model, beta, summary.json and windows."""
    config, s = os.path.join(run_dir, "config.json"), plot.read_summary(run_dir)
    cfg = read_settings(config)
    if not cfg["reward_model"] or "gold_reward_policy" not in s:
        raise UsageError(f"{run_dir}: not a finished train.py --reward-model run")
    model = reward_model_file(cfg["reward_model"])
    if os.path.isfile(model) and os.path.getmtime(model) > os.path.getmtime(config):
        raise UsageError(f"{model}: trained again since {run_dir} started; run that again")
    run = dict(reward_model=cfg["reward_model"], accuracy=s.get("reward_model_accuracy"), summary=s)
    metrics = plot.read_metrics(run_dir)
    return {**run, "beta": cfg["beta"], "windows": windows(metrics, window, run_dir)}


def draw(results: list, path: str):
    """A panel per reward model, a colour per beta, from pi_ref at KL = 0: `path`, or None without matplotlib."""
    models = list(dict.fromkeys(r["reward_model"] for r in results))
    fig = plot.figure(1, len(models), (5.2 * len(models), 4.4))
    if fig is None:
        return None
    for ax, model in zip(fig.axes, models):
        for i, r in enumerate(r for r in results if r["reward_model"] == model):
            s, w = r["summary"], r["windows"]
            x = [0.0] + [p["sqrt_kl"] for p in w]
            gold = [s["gold_reward_reference"]] + [p["gold_reward"] for p in w]
            proxy = [s["reward_reference"]] + [p["proxy_reward"] for p in w]
            ax.plot(x, gold, "o-", ms=3, color=f"C{i}", label=f"gold, beta {r['beta']}")
            ax.plot(x, proxy, "x--", ms=3, color=f"C{i}", label=f"proxy r_phi, beta {r['beta']}")
        ax.set_title(f"r_phi {model} (held-out accuracy {cell(r['accuracy'])})", fontsize=10)
        ax.set_xlabel("sqrt(KL(pi_theta || pi_ref)), KL in nats per response")
        ax.set_ylabel(f"mean reward (gold {r['summary']['gold']!r}; proxy normalised)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle("PPO against a learned reward: the proxy it optimises, the gold it imitates")
    return plot.save(fig, path)


def cell(c) -> str:
    return "-" if c is None else f"{c:.3f}" if isinstance(c, float) else str(c)


def report(results: list, out: str, window: int) -> None:
    print(f"gold and proxy reward: means over {window} iterations; 'end': the final evaluation")
    head = "accuracy|beta|gold peak|at sqrtKL|at iter|proxy there|end sqrtKL|end proxy".split("|")
    width = max(len(r["reward_model"]) for r in results) + 2
    head += ["end gold", "grammatical"]
    print(f"{'reward model':<{width}}" + "".join(f"{h:>12}" for h in head))
    for r in results:
        peak, s = max(r["windows"], key=lambda p: p["gold_reward"]), r["summary"]
        cells = [r["accuracy"], str(r["beta"]), peak["gold_reward"], peak["sqrt_kl"], peak["iter"]]
        cells += [peak["proxy_reward"], math.sqrt(max(0.0, s["kl_policy"])), s["reward_policy"]]
        cells += [s["gold_reward_policy"], s.get("grammatical_policy")]
        print(f"{r['reward_model']:<{width}}" + "".join(f"{cell(c):>12}" for c in cells))
    text, columns = io.StringIO(), ["reward_model", "beta", "iter", *KEYS, "sqrt_kl"]
    writer = csv.DictWriter(text, columns, lineterminator="\n")     # (None: an empty cell)
    writer.writeheader()
    for r in results:
        writer.writerows({**p, **{k: r[k] for k in ("reward_model", "beta")}} for p in r["windows"])
    os.makedirs(out, exist_ok=True)
    files.save_lines([text.getvalue()], os.path.join(out, "overoptimisation.csv"))
    png = draw(results, os.path.join(out, "overoptimisation.png"))
    print(f"wrote {out}/overoptimisation.csv" + (f", {png}" if png else f"; {plot.NO_MATPLOTLIB}"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser("python -m minippo.extras.overoptimisation", allow_abbrev=False)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="finished --reward-model runs")
    p.add_argument("--out", default="overopt", help="for the CSV and plot [overopt]")
    p.add_argument("--window", type=int, default=10, help="iterations in each point [default: 10]")
    p.error = one_line_error
    return files.boundary(command, p.parse_args(argv))


def command(args) -> None:
    if args.window < 1:
        raise UsageError(f"--window={args.window}: must be at least 1")
    report([read_run(run_dir, args.window) for run_dir in args.run_dirs], args.out, args.window)


if __name__ == "__main__":
    raise SystemExit(main())
