"""Curves of a run, and the reward-versus-KL frontier of a sweep (an optional extra: needs matplotlib).

    python -m minippo.extras.plot out [out_beta0 ...]     # writes out/curves.png for each run folder

Panels against iteration, from metrics.jsonl: reward; KL(pi_theta || pi_ref); the objective
J = reward - beta KL with the exact optimum J* from summary.json as a horizontal line; the
grammatical and distinct fractions (when logged); beta. matplotlib is imported only inside the
functions that draw, and the figures are rendered by its Agg backend (no window, no display needed).
"""
import json
import math
import os
import sys

from minippo.extras.cli import UsageError

NO_MATPLOTLIB = "plotting needs matplotlib: pip install matplotlib"
# (key in metrics.jsonl, panel title); a panel is drawn when its key is logged
PANELS = [("reward", "reward r(x, y)"), ("gold_reward", "gold reward (--reward-model runs)"),
          ("kl", "KL(pi_theta || pi_ref), nats"),
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


def read_metrics(run_dir: str) -> list[dict]:
    """The per-iteration records of a run, or UsageError naming what is wrong with the file."""
    if not os.path.isdir(run_dir):
        raise UsageError(f"{run_dir}: no such folder")
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such file; is {run_dir} a run folder "
                         f"(python train.py --out {run_dir})?")
    rows = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                m = json.loads(line)
            except json.JSONDecodeError:
                raise UsageError(f"{path}: line {n} is not valid JSON; the file is corrupt") from None
            if not isinstance(m, dict) or not all(isinstance(m.get(k), (int, float)) for k in ("iter", "reward")):
                raise UsageError(f"{path}: line {n} has no numeric 'iter' and 'reward'; "
                                 f"not a minippo metrics file")
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
    fig = figure(math.ceil(len(panels) / ncols), ncols, (4.2 * ncols, 2.8 * math.ceil(len(panels) / ncols)))
    if fig is None:
        raise UsageError(NO_MATPLOTLIB)
    axes = fig.axes
    for ax, (key, title) in zip(axes, panels):
        points = [(m["iter"], m[key]) for m in rows if isinstance(m.get(key), (int, float))]
        ax.plot(*zip(*points), lw=1.2)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("iteration", fontsize=9)
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="y", useOffset=False)     # a constant beta reads 0.1, not 0.1 + 1e-8
        if key == "objective" and isinstance(summary.get("objective_optimal"), (int, float)):
            ax.axhline(summary["objective_optimal"], color="k", ls="--", lw=1,
                       label=f"J* = {summary['objective_optimal']:.3f} (exact optimum)")
            ax.legend(fontsize=8, loc="lower right")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    gap = summary.get("optimality_gap")
    fig.suptitle(f"{run_dir}" + (f"   optimality gap {gap:.3f}" if isinstance(gap, (int, float)) else ""),
                 fontsize=11)
    path = os.path.join(run_dir, "curves.png")
    fig.savefig(path, dpi=100)
    return path


def plot_frontier(rows: list[dict], path: str, title: str = "") -> str:
    """Final reward against KL, one labelled point per setting of a sweep, joined in sweep order.
    rows: dicts with 'setting', 'reward' and 'kl'. Returns `path`."""
    fig = figure(1, 1, (6, 4.5))
    if fig is None:
        raise UsageError(NO_MATPLOTLIB)
    ax = fig.axes[0]
    kl, reward = [r["kl"] for r in rows], [r["reward"] for r in rows]
    ax.plot(kl, reward, "o-", lw=1, ms=5)
    for r in rows:
        ax.annotate(r["setting"], (r["kl"], r["reward"]), textcoords="offset points", xytext=(5, -10),
                    fontsize=8)
    ax.margins(0.2)                          # room for the labels
    ax.set_xlabel("KL(pi_theta || pi_ref), nats per response")
    ax.set_ylabel("reward r(x, y) of the tuned policy")
    ax.set_title(title or "reward vs KL frontier", fontsize=10)
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100)
    return path


def main(argv=None) -> int:
    run_dirs = sys.argv[1:] if argv is None else argv
    usage = "usage: python -m minippo.extras.plot RUN_DIR [RUN_DIR ...]  (writes RUN_DIR/curves.png)"
    if any(a in ("-h", "--help") for a in run_dirs):
        print(usage)
        return 0
    if not run_dirs or any(a.startswith("-") for a in run_dirs):
        print(f"error: {usage}", file=sys.stderr)
        return 2
    if figure(1, 1, (1, 1)) is None:        # say so before reading anything
        print(f"error: {NO_MATPLOTLIB}", file=sys.stderr)
        return 2
    try:
        for run_dir in run_dirs:
            print(f"wrote {plot_run(run_dir)}")
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:                     # e.g. a read-only folder: one line, not a traceback
        print(f"error: {e.filename or run_dirs[0]}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
