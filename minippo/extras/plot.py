"""Curves of a run, and the reward-versus-KL frontier of a sweep (an optional extra: needs matplotlib).

    python -m minippo.extras.plot out [out_beta0 ...]     # writes out/curves.png for each run folder
    python -m minippo.extras.plot --gap gap.png sweeps/s0/* sweeps/s1/*   # the gap of each run, seeds averaged"""
import argparse
import json
import math
import os
from pathlib import Path

from minippo.extras import files
from minippo.extras.cli import one_line_error
from minippo.extras.files import UsageError

NO_MATPLOTLIB = "plotting needs matplotlib: pip install matplotlib"
KL = "KL(pi_theta || pi_ref), nats per response"     # metrics.jsonl's "kl": what the objective pays
PANELS = [("reward", "reward r(x, y)"), ("gold_reward", "gold reward (--reward-model runs)"), ("kl", KL),
          ("approx_kl", "approx_kl: KL(pi_old || pi_theta), per token"), ("objective", "J = reward - beta KL"),
          ("grammatical", "grammatical fraction"), ("distinct", "distinct responses"), ("beta", "beta")]


def figure(nrows: int, ncols: int, size, required: bool = False):
    """A matplotlib Figure, not pyplot's (whose state stays alone); without matplotlib None (required: UsageError)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        if required:
            raise UsageError(NO_MATPLOTLIB) from None
        return None
    return Figure(figsize=size, layout="constrained").subplots(nrows, ncols, squeeze=False)[0, 0].figure


def save(fig, path: str) -> str:
    files.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    return path


def number(v) -> bool:
    """A finite JSON number (not a bool; an integer too large for a float is not one either)."""
    return type(v) in (int, float) and -1e300 < v < 1e300


def read_metrics(run_dir: str, keys=("iter", "reward")) -> list[dict]:
    """metrics.jsonl's lines, each a JSON object with a finite number at every one of `keys`."""
    path, rows = os.path.join(run_dir, "metrics.jsonl"), []
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such file; is {run_dir} a run folder (python train.py --out {run_dir})?")
    lines = Path(path).read_text(encoding="utf-8", errors="replace").split("\n")
    for n, line in [(n, line) for n, line in enumerate(lines, 1) if line.strip()]:
        try:
            m = json.loads(line)
        except (ValueError, RecursionError):     # (RecursionError: [[[[... nested too deep)
            m = None
        if not isinstance(m, dict) or not all(number(m.get(k)) for k in keys):
            raise UsageError(f"{path}: line {n} is not JSON with a numeric {' and '.join(map(repr, keys))}; "
                             f"not a metrics file of this run")
        rows.append(m)
    if not rows:
        raise UsageError(f"{path}: empty; the run has not finished an iteration yet")
    return rows


def read_summary(run_dir: str) -> dict:
    """summary.json when the run finished and it is readable, else {} (the J* line is then left out)."""
    try:
        s = json.loads(Path(run_dir, "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return s if isinstance(s, dict) else {}


def plot_run(run_dir: str) -> str:
    rows, summary = read_metrics(run_dir), read_summary(run_dir)
    panels = [(k, title) for k, title in PANELS if any(k in m for m in rows)]
    ncols = 3 if len(panels) > 4 else 2
    nrows, best, gap = math.ceil(len(panels) / ncols), summary.get("objective_optimal"), summary.get("optimality_gap")
    fig = figure(nrows, ncols, (4.2 * ncols, 2.8 * nrows), required=True)
    for ax, (key, title) in zip(fig.axes, panels):
        ax.plot(*zip(*[(m["iter"], m[key]) for m in rows if isinstance(m.get(key), (int, float))]), lw=1.2)
        ax.set(title=title, xlabel="iteration")
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="y", useOffset=False)     # a constant beta reads 0.1, not 0.1 + 1e-8
        optimum = {"objective": ("J*", best), "reward": ("E_pi*[r]", summary.get("reward_optimal")),
                   "kl": ("KL(pi* || pi_ref)", summary.get("kl_optimal"))}.get(key, (None, None))
        if isinstance(optimum[1], (int, float)):     # what the exact optimum pi* has, dashed
            ax.axhline(optimum[1], color="k", ls="--", lw=1, label=f"{optimum[0]} = {optimum[1]:.3f} (exact optimum)")
            ax.legend(fontsize=8, loc="lower right")
        betas = {m["beta"] for m in rows if isinstance(m.get("beta"), (int, float))}
        if key == "beta" and len(betas) == 1:
            ax.set_title(f"beta: fixed at {betas.pop():g}")
    for ax in fig.axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(run_dir + (f"   optimality gap {gap:.3f}" if isinstance(gap, (int, float)) else ""))
    return save(fig, os.path.join(run_dir, "curves.png"))


def plot_frontier(rows: list[dict], path: str, title: str = "") -> str:
    """Final reward against KL of a sweep's rows (dicts with 'setting', 'reward' and 'kl'); returns `path`."""
    ax = figure(1, 1, (6, 4.5), required=True).axes[0]     # one point per setting, joined in sweep order
    ax.plot([r["kl"] for r in rows], [r["reward"] for r in rows], "o-", lw=1, ms=5)
    for r in rows:
        ax.annotate(r["setting"], (r["kl"], r["reward"]), textcoords="offset points", xytext=(5, -10), fontsize=8)
    ax.margins(0.2)                          # room for the labels
    ax.set(xlabel=KL, ylabel="reward r(x, y) of the tuned policy", title=title or "reward vs KL frontier")
    ax.grid(alpha=0.3)
    return save(ax.figure, path)


def gap_curves(run_dirs, window: int = 10) -> dict:
    """{folder name: (responses drawn, gap)}: the optimality gap (J* - J) / (J* - J(pi_ref)) of each
    iteration's batch, averaged over the runs of that name (seeds) and over `window` iterations."""
    runs = {}
    if len({os.path.realpath(d) for d in run_dirs}) != len(run_dirs):
        raise UsageError("--gap: a run folder is given twice; give each once (seeds are folders of one name)")
    for run_dir in run_dirs:
        rows, s = read_metrics(run_dir, ("iter", "objective", "responses")), read_summary(run_dir)
        j_star, j_ref = s.get("objective_optimal"), s.get("objective_reference")
        if not (number(j_star) and number(j_ref) and j_star > j_ref):    # else the gap is not defined
            raise UsageError(f"{run_dir}/summary.json: no J* above J(pi_ref) (a run that has not finished, "
                             f"or one with no room to improve); leave it out")
        room = j_star - j_ref
        gaps = [(s["objective_optimal"] - m["objective"]) / room for m in rows]
        drawn = [sum(m["responses"] for m in rows[:i + 1]) for i in range(len(rows))]
        runs.setdefault(os.path.basename(os.path.normpath(run_dir)), []).append((drawn, gaps))
    curves = {}
    for name, seeds in runs.items():
        n = min(len(gaps) for _, gaps in seeds)          # the iterations every seed has
        mean = [sum(gaps[i] for _, gaps in seeds) / len(seeds) for i in range(n)]
        curves[name] = (seeds[0][0][:n], [sum(mean[max(0, i - window + 1):i + 1]) / min(i + 1, window)
                                          for i in range(n)], len(seeds))
    return curves


def plot_gaps(run_dirs, path: str) -> str:
    """The gap curves of gap_curves(), one line per folder name, into one figure."""
    curves = gap_curves(run_dirs)                         # (every run checked before matplotlib is asked for)
    ax = figure(1, 1, (7, 4.5), required=True).axes[0]
    for name, (drawn, gap, seeds) in curves.items():
        ax.plot(drawn, gap, lw=1.3, label=f"{name} ({seeds} seed{'s' * (seeds > 1)})")
    ax.axhline(0, color="k", ls="--", lw=1)
    ax.set(xlabel="responses drawn", ylabel="optimality gap of the batch (0 = pi*)", ylim=(-0.2, 1.1),
           title="distance to the exact optimum (mean over seeds, over 10 iterations)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(ax.figure, path)


def command(args) -> None:
    if args.gap is not None:
        if not args.gap.strip():
            raise UsageError("--gap: give the path of the PNG to write")
        print(f"wrote {plot_gaps(args.run_dirs, args.gap)}")
        return
    for run_dir in args.run_dirs:
        print(f"wrote {plot_run(run_dir)}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minippo.extras.plot", description=__doc__.splitlines()[0])
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="a folder written by train.py")
    p.add_argument("--gap", metavar="PNG", help="draw the optimality gap of all the runs into this one figure")
    p.error = one_line_error
    return files.boundary(command, p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
