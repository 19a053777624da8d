"""Curves of a run, and the reward-versus-KL frontier of a sweep (an optional extra: needs matplotlib).

    python -m minippo.extras.plot out [out_beta0 ...]     # writes out/curves.png for each run folder
    python -m minippo.extras.plot --gap gap.png sweeps/s0/* sweeps/s1/*   # each run's gap, seeds averaged

Every figure is written by save(), which refuses a run folder's own files (what plots read)."""
import argparse
import itertools
import json
import math
import os
from pathlib import Path

from minippo.extras import files, runs
from minippo.extras.cli import one_line_error
from minippo.extras.files import UsageError

NO_MATPLOTLIB = "plotting needs matplotlib: pip install matplotlib"
RUN_FILES = {*runs.RUN_FILES, "reference.pt", "human_eval.jsonl"}  # a run's data; what plots read
KL = "KL(pi_theta || pi_ref), nats per response"  # metrics.jsonl's "kl": what the objective pays
PANELS = [
    ("reward", "reward r(x, y)"),
    ("gold_reward", "gold reward (--reward-model runs)"),
    ("kl", KL),
    ("approx_kl", "approx_kl: KL(pi_old || pi_theta), per token"),
    ("objective", "J = reward - beta KL"),
    ("grammatical", "grammatical fraction"),
    ("distinct", "distinct responses"),
    ("beta", "beta"),
]
# what the exact optimum pi* has (summary.json's KEY_optimal), dashed
OPTIMUM = {"objective": "J*", "reward": "E_pi*[r]", "kl": "KL(pi* || pi_ref)"}


def figure(nrows: int, ncols: int, size, required: bool = False):
    """A matplotlib Figure, not pyplot's global one; without matplotlib None (required: UsageError)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        if required:
            raise UsageError(NO_MATPLOTLIB) from None
        return None
    fig = Figure(figsize=size, layout="constrained")
    fig.subplots(nrows, ncols, squeeze=False)
    return fig


def output(path: str) -> str:
    """path, or UsageError where a figure would land on a folder or a run's file (what plots read)."""
    name = os.path.basename(os.path.normpath(path))
    if not path.strip() or os.path.isdir(path) or name in RUN_FILES:
        raise UsageError(f"{path!r}: a folder or a run's own file; give a figure its own .png path")
    return path


def save(fig, path: str) -> str:
    files.atomic_write(output(path), lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    return path


def number(v) -> bool:
    """A finite JSON number (not a bool; an integer too large for a float is not one either)."""
    return type(v) in (int, float) and -1e300 < v < 1e300


def read_metrics(run_dir: str, keys=("iter", "reward")) -> list[dict]:
    """metrics.jsonl's lines, each a JSON object with a finite number at every one of `keys`."""
    path, rows = os.path.join(run_dir, "metrics.jsonl"), []
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such file; is {run_dir} a folder of train.py --out?")
    lines = Path(path).read_text(encoding="utf-8", errors="replace").split("\n")
    for n, line in [(n, line) for n, line in enumerate(lines, 1) if line.strip()]:
        try:
            m = json.loads(line)
        except (ValueError, RecursionError):  # (RecursionError: [[[[... nested too deep)
            m = None
        if not isinstance(m, dict) or not all(number(m.get(k)) for k in keys):
            need = " and ".join(map(repr, keys))
            raise UsageError(f"{path}: line {n} is not JSON with a numeric {need}; not a run's")
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
    nrows = math.ceil(len(panels) / ncols)
    fig = figure(nrows, ncols, (4.2 * ncols, 2.8 * nrows), required=True)
    for ax, (key, title) in zip(fig.axes, panels):
        ax.plot(*zip(*[(m["iter"], m[key]) for m in rows if number(m.get(key))]), lw=1.2)
        ax.set(title=title, xlabel="iteration")
        ax.grid(alpha=0.3)
        ax.ticklabel_format(axis="y", useOffset=False)  # a constant beta reads 0.1, not 0.1 + 1e-8
        best = summary.get(f"{key}_optimal")
        if key in OPTIMUM and number(best):
            label = f"{OPTIMUM[key]} = {best:.3f} (exact optimum)"
            ax.axhline(best, color="k", ls="--", lw=1, label=label)
            ax.legend(fontsize=8, loc="lower right")
        betas = {m["beta"] for m in rows if number(m.get("beta"))}
        if key == "beta" and len(betas) == 1:
            ax.set_title(f"beta: fixed at {betas.pop():g}")
    for ax in fig.axes[len(panels) :]:
        ax.set_visible(False)
    gap = summary.get("optimality_gap")
    fig.suptitle(run_dir + (f"   optimality gap {gap:.3f}" if number(gap) else ""))
    return save(fig, os.path.join(run_dir, "curves.png"))


def plot_frontier(rows: list[dict], path: str, title: str = "") -> str:
    """Final reward against KL of a sweep's rows (dicts with 'setting', 'reward' and 'kl')."""
    ax = figure(1, 1, (6, 4.5), required=True).axes[0]
    ax.plot([r["kl"] for r in rows], [r["reward"] for r in rows], "o-", lw=1, ms=5)
    for r in rows:  # joined in sweep order, each point named
        ax.annotate(r["setting"], (r["kl"], r["reward"]), (5, -10), textcoords="offset points")
    ax.margins(0.2)  # room for the labels
    ax.set(xlabel=KL, ylabel="reward r(x, y) of the tuned policy", title=title or "reward vs KL")
    ax.grid(alpha=0.3)
    return save(ax.figure, path)


def gap_curves(run_dirs, window: int = 10) -> dict:
    """{folder name: (responses drawn, gap, seeds)}: each batch's optimality gap (J* - J) / (J* -
    J(pi_ref)), averaged over the runs of that name (seeds; the shortest's length), then `window`."""
    if len({os.path.realpath(d) for d in run_dirs}) != len(run_dirs):
        raise UsageError("--gap: a run folder is given twice (seeds are folders of one name)")
    why = "a run not finished, with no room to improve, or measured on too few --eval-samples"
    seeds = {}
    for run_dir in run_dirs:
        rows, s = read_metrics(run_dir, ("iter", "objective", "responses")), read_summary(run_dir)
        best, ref = s.get("objective_optimal"), s.get("objective_reference")
        if not (number(best) and number(ref) and best > ref) or s.get("objective_optimal_trusted") is False:
            raise UsageError(f"{run_dir}/summary.json: no J* above J(pi_ref) ({why}); leave it out")
        drawn = list(itertools.accumulate(m["responses"] for m in rows))
        gaps = [(best - m["objective"]) / (best - ref) for m in rows]
        seeds.setdefault(os.path.basename(os.path.normpath(run_dir)), []).append((drawn, gaps))
    curves = {}
    for name, group in seeds.items():
        mean = [sum(g) / len(g) for g in zip(*(gaps for _, gaps in group))]  # (zip: the shortest)
        first = [max(0, i + 1 - window) for i in range(len(mean))]  # of each window
        smooth = [sum(mean[a : i + 1]) / (i + 1 - a) for i, a in enumerate(first)]
        curves[name] = (group[0][0][: len(mean)], smooth, len(group))
    return curves


def plot_gaps(run_dirs, path: str) -> str:
    """The gap curves of gap_curves(), one line per folder name, into one figure."""
    curves = gap_curves(run_dirs)  # (every run checked before matplotlib is asked for)
    ax = figure(1, 1, (7, 4.5), required=True).axes[0]
    for name, (drawn, gap, seeds) in curves.items():
        ax.plot(drawn, gap, lw=1.3, label=f"{name} ({seeds} seed{'s' * (seeds > 1)})")
    ax.axhline(0, color="k", ls="--", lw=1)
    ax.set(xlabel="responses drawn", ylabel="optimality gap (0 = pi*)", ylim=(-0.2, 1.1))
    ax.set_title("distance to the exact optimum (mean over seeds, over 10 iterations)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(ax.figure, path)


def command(args) -> None:
    if args.gap is not None:
        print(f"wrote {plot_gaps(args.run_dirs, output(args.gap))}")  # (refused before any reading)
        return
    for run_dir in args.run_dirs:
        print(f"wrote {plot_run(run_dir)}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser("python -m minippo.extras.plot")
    p.description = __doc__.splitlines()[0]
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="a folder written by train.py")
    p.add_argument("--gap", metavar="PNG", help="draw the optimality gap of all the runs into it")
    p.error = one_line_error
    return files.boundary(command, p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
