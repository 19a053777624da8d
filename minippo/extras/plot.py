"""Curves of a run, and the reward-versus-KL frontier of a sweep (an optional extra: needs matplotlib).

    python -m minippo.extras.plot out [out_beta0 ...]     # writes out/curves.png for each run folder

Panels against iteration, from metrics.jsonl: reward; the two KLs, named apart (`kl`: against pi_ref, per
response, what the objective pays; `approx_kl`: against pi_old, per token, how far one update moved);
J = reward - beta KL with the exact optimum J* from summary.json; grammatical and distinct fractions;
beta. matplotlib is imported only where a figure is drawn, by its Agg backend (no display needed).
"""
import argparse
import json
import math
import os

from minippo.extras import files
from minippo.extras.cli import one_line_error
from minippo.extras.files import UsageError

NO_MATPLOTLIB = "plotting needs matplotlib: pip install matplotlib"
# (key in metrics.jsonl, panel title); a panel is drawn when its key is logged
PANELS = [("reward", "reward r(x, y)"), ("gold_reward", "gold reward (--reward-model runs)"),
          ("kl", "KL(pi_theta || pi_ref), nats per response"),
          ("approx_kl", "approx_kl: KL(pi_old || pi_theta), per token"),
          ("objective", "objective J = reward - beta KL"), ("grammatical", "grammatical fraction"),
          ("distinct", "distinct responses"), ("beta", "beta")]


def figure(nrows: int, ncols: int, size):
    """A matplotlib Figure drawn by the Agg backend, or None when matplotlib is not installed.
    Using Figure directly (not pyplot) leaves the caller's global plotting state alone."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    fig.subplots(nrows, ncols, squeeze=False)
    return fig


def save(fig, path: str) -> str:
    files.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    return path


def read_metrics(run_dir: str) -> list[dict]:
    """The per-iteration records of a run, or UsageError naming what is wrong with the file."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such file; is {run_dir} a run folder (python train.py --out {run_dir})?")
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                m = json.loads(line)
            except (ValueError, RecursionError):     # (RecursionError: [[[[... nested too deep)
                raise UsageError(f"{path}: line {n} is not valid JSON; the file is corrupt") from None
            if not isinstance(m, dict) or not all(isinstance(m.get(k), (int, float)) for k in ("iter", "reward")):
                raise UsageError(f"{path}: line {n} has no numeric 'iter' and 'reward'; not a minippo metrics file")
            rows.append(m)
    if not rows:
        raise UsageError(f"{path}: empty; the run has not finished an iteration yet")
    return rows


def read_summary(run_dir: str) -> dict:
    """summary.json when the run finished and it is readable, else {} (the J* line is then left out)."""
    try:
        with open(os.path.join(run_dir, "summary.json")) as f:
            s = json.load(f)
        return s if isinstance(s, dict) else {}
    except (OSError, ValueError):
        return {}


def plot_run(run_dir: str) -> str:
    """Draw RUN_DIR/curves.png from metrics.jsonl (and J* from summary.json); return its path."""
    rows, summary = read_metrics(run_dir), read_summary(run_dir)
    panels = [(k, title) for k, title in PANELS if any(k in m for m in rows)]
    ncols = 3 if len(panels) > 4 else 2
    nrows = math.ceil(len(panels) / ncols)
    fig = figure(nrows, ncols, (4.2 * ncols, 2.8 * nrows))
    if fig is None:
        raise UsageError(NO_MATPLOTLIB)
    for ax, (key, title) in zip(fig.axes, panels):
        ax.plot(*zip(*[(m["iter"], m[key]) for m in rows if isinstance(m.get(key), (int, float))]), lw=1.2)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("iteration", fontsize=9)
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="y", useOffset=False)     # a constant beta reads 0.1, not 0.1 + 1e-8
        if key == "objective" and isinstance(summary.get("objective_optimal"), (int, float)):
            ax.axhline(summary["objective_optimal"], color="k", ls="--", lw=1,
                       label=f"J* = {summary['objective_optimal']:.3f} (exact optimum)")
            ax.legend(fontsize=8, loc="lower right")
    for ax in fig.axes[len(panels):]:
        ax.set_visible(False)
    gap = summary.get("optimality_gap")
    fig.suptitle(run_dir + (f"   optimality gap {gap:.3f}" if isinstance(gap, (int, float)) else ""), fontsize=11)
    return save(fig, os.path.join(run_dir, "curves.png"))


def plot_frontier(rows: list[dict], path: str, title: str = "") -> str:
    """Final reward against KL of a sweep's rows (dicts with 'setting', 'reward' and 'kl'); returns `path`."""
    fig = figure(1, 1, (6, 4.5))
    if fig is None:
        raise UsageError(NO_MATPLOTLIB)
    ax = fig.axes[0]                         # one point per setting, joined in sweep order
    ax.plot([r["kl"] for r in rows], [r["reward"] for r in rows], "o-", lw=1, ms=5)
    for r in rows:
        ax.annotate(r["setting"], (r["kl"], r["reward"]), textcoords="offset points", xytext=(5, -10), fontsize=8)
    ax.margins(0.2)                          # room for the labels
    ax.set_xlabel("KL(pi_theta || pi_ref), nats per response")
    ax.set_ylabel("reward r(x, y) of the tuned policy")
    ax.set_title(title or "reward vs KL frontier", fontsize=10)
    ax.grid(alpha=0.3)
    return save(fig, path)


def command(argv) -> None:
    p = argparse.ArgumentParser(prog="python -m minippo.extras.plot", description="Draw RUN_DIR/curves.png "
                                "for each run folder (needs matplotlib).")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="a folder written by train.py")
    p.error = one_line_error
    run_dirs = p.parse_args(argv).run_dirs
    if figure(1, 1, (1, 1)) is None:        # said before anything is read
        raise UsageError(NO_MATPLOTLIB)
    for run_dir in run_dirs:
        print(f"wrote {plot_run(run_dir)}")


def main(argv=None) -> int:
    return files.boundary(command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
