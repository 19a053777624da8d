"""Run train.py once per value of one setting, pretraining once; compare them: table, sweep.csv, frontier.png.

    python -m minippo.extras.sweep --sweep beta=0,0.03,0.1,0.3,1 --out sweeps/beta [train.py flags]
    python -m minippo.extras.sweep --sweep temperature=0.7,1.0,1.3 --out sweeps/temperature --iters 50
    python -m minippo.extras.sweep --sweep algo=ppo,grpo,grpo+kl_penalty=k2 --out sweeps/algo  # +: more settings

Runs go to OUT/NAME=VALUE; the same command reuses finished runs and resumes an interrupted one (experiments.md)."""
import argparse
import csv
import io
import os
import re
import shutil
import sys
from dataclasses import asdict

from minippo.config import Config
from minippo.extras import files, launch, plot
from minippo.extras.cli import PRETRAIN_KEYS, flag, one_line_error, parse_config, read_settings
from minippo.extras.files import UsageError
from minippo.rewards import REWARDS

NOT_SWEPT = ("out", "resume", "force")
# (column, header on screen, summary.json key); gold: --reward-model runs only; seconds: pretraining + RL
COLUMNS = [("setting", "setting", None), ("reward", "reward", "reward_policy"), ("gold_reward", "gold",
           "gold_reward_policy"), ("kl", "KL", "kl_policy"), ("objective", "J", "objective_policy"),
           ("objective_optimal", "J*", "objective_optimal"), ("optimality_gap", "gap", "optimality_gap"),
           ("kl_to_optimum", "KL to pi*", "kl_to_optimum"),
           ("grammatical", "grammatical", "grammatical_policy"), ("distinct", "distinct", "distinct_policy"),
           ("distinct_2", "distinct-2", "distinct_2grams_policy"), ("seconds", "seconds", None)]


def setting_flags(name: str, value: str) -> list[str]:
    """The train.py flags for one value: --max-new-tokens 40, --whiten / --no-whiten, and those of the
    settings a value adds after "+" (grpo+kl_penalty=k2: --algo grpo --kl-penalty k2)."""
    value, *more = re.split(r"\+(?=[a-z_-]+=)", value)        # (1e+3 stays one number)
    where = f"{name}={value}" + "".join("+" + pair for pair in more)
    pairs = [setting(pair, where) for pair in more]
    if len({name, *(n for n, _ in pairs)}) != 1 + len(pairs):
        raise UsageError(f"--sweep={where}: a setting is given twice; give each once")
    extra = [f for pair in pairs for f in setting_flags(*pair)]
    if extra and not value:
        raise UsageError(f"--sweep: {name}=+{'+'.join(more)}: a value comes before its '+'")
    if Config.__dataclass_fields__[name].type is not bool:
        return [flag(name), value] + extra
    if value.lower() not in ("true", "false", "1", "0"):
        raise UsageError(f"--sweep: {name}={value}: expected true or false")
    return [flag(name) if value.lower() in ("true", "1") else "--no-" + flag(name)[2:]] + extra


def setting(text: str, where: str) -> tuple[str, str]:
    """NAME=VALUE -> (the Config field, the value), or UsageError."""
    name, _, value = text.partition("=")
    name = name.strip().lstrip("-").replace("-", "_")
    if name not in asdict(Config()) or name in NOT_SWEPT:
        raise UsageError(f"--sweep={where}: {name!r} is not a setting (see python train.py --help)")
    if not value.strip():
        raise UsageError(f"--sweep={where}: expected NAME=V1,V2,... with distinct values, e.g. beta=0,0.1,1")
    return name, value


def sweep(name: str, values: list[str], out: str, train_args: list[str], reference: str = "") -> list[dict]:
    """Run (or reuse) one run per value; return the table rows. A failed run raises SystemExit(its code)."""
    if reference:
        files.load(reference, "reference")       # a file that is not a reference is refused, not skipped
    argvs = [train_args + setting_flags(name, v) + ["--out", os.path.join(out, f"{name}={v}".replace(os.sep, "_"))]
             for v in values]
    runs = [parse_config(argv, rewards=tuple(REWARDS)) for argv in argvs]     # all checked before any work
    if len({os.path.realpath(c.out) for c in runs}) != len(runs):
        raise UsageError(f"--sweep: two of the values {values} map to one folder (a '/' becomes '_'); rename one")
    candidates = ([reference] if reference else []) + [os.path.join(c.out, "reference.pt") for c in runs]
    for i, (value, cfg, argv) in enumerate(zip(values, runs, argvs)):
        print(f"\nsweep {i + 1}/{len(runs)}: {name}={value} -> {cfg.out}", flush=True)
        if not cfg.force and os.path.isfile(os.path.join(cfg.out, "summary.json")):
            saved = read_settings(os.path.join(cfg.out, "config.json"))   # (a newer setting: its default)
            for key, (was, given) in list(files.differences(saved, asdict(cfg), NOT_SWEPT).items())[:1]:
                raise UsageError(f"{cfg.out} holds a finished run made with {flag(key)}={was!r}, this sweep has "
                                 f"{given!r}; use another --out or add --force")
            print("finished earlier; reusing its summary.json")
            continue
        target, want = os.path.join(cfg.out, "reference.pt"), {k: getattr(cfg, k) for k in PRETRAIN_KEYS}
        source = next((p for p in [target] + candidates if os.path.isfile(p)   # (the one there, if it fits)
                       and files.load(p, "reference").get("pretrain") == want), target)
        if os.path.abspath(source) != os.path.abspath(target):
            os.makedirs(cfg.out, exist_ok=True)
            files.atomic_write(target, lambda tmp: shutil.copyfile(source, tmp))
            print(f"sweep: reference pi_ref copied from {source}")
        interrupted = os.path.isfile(os.path.join(cfg.out, "config.json")) and not cfg.force
        code = launch.main(argv + (["--resume", cfg.out] if interrupted else []))
        if code:
            print(f"sweep stopped at {name}={value}: train.py exited with code {code}; run it again", file=sys.stderr)
            raise SystemExit(code)
    summaries = [plot.read_summary(c.out) for c in runs]
    return [{**{col: s.get(key) for col, _, key in COLUMNS}, "setting": f"{name}={v}",
             "seconds": s.get("pretrain_seconds", 0) + s.get("rl_seconds", 0)} for v, s in zip(values, summaries)]


def command(argv) -> None:
    p = argparse.ArgumentParser("python -m minippo.extras.sweep", description=__doc__.split(",")[0], allow_abbrev=False)
    p.add_argument("--sweep", required=True, metavar="NAME=V1,V2,...", help="e.g. beta=0,0.03,0.1,0.3,1")
    p.add_argument("--out", help="sweep folder; each run goes to OUT/NAME=VALUE [default: sweeps/NAME]")
    p.add_argument("--reference", default="", help="a reference.pt to start from, used if its pretraining fits")
    p.error = one_line_error
    args, train_args = p.parse_known_args(argv)
    name, values = setting(args.sweep, args.sweep)
    values = [v.strip() for v in values.split(",")]
    if not all(values) or len(set(values)) != len(values):
        raise UsageError(f"--sweep={args.sweep}: expected NAME=V1,V2,... with distinct values, e.g. beta=0,0.1,1")
    out = os.path.join("sweeps", name) if args.out is None else args.out
    if not out.strip():
        raise UsageError(f"--out={out!r}: must name a folder")
    rows = sweep(name, values, out, train_args, args.reference)
    columns = [(col, head) for col, head, _ in COLUMNS if any(r[col] is not None for r in rows)]   # measured ones
    width, text = max(len(r["setting"]) for r in rows) + 2, io.StringIO()
    print(f"\nsweep over {name} (final evaluation of each run; all figures in OUT/NAME=VALUE/summary.json)\n"
          f"{'setting':<{width}}" + "".join(f"{head:>12}" for _, head in columns[1:]))
    for r in rows:
        cells = ["-" if r[c] is None else f"{r[c]:.3f}" if isinstance(r[c], float) else r[c] for c, _ in columns[1:]]
        print(f"{r['setting']:<{width}}" + "".join(f"{cell:>12}" for cell in cells))
    table = [[col for col, _ in columns]] + [["" if r[col] is None else r[col] for col, _ in columns] for r in rows]
    csv.writer(text, lineterminator="\n").writerows(table)
    files.save_lines([text.getvalue()], os.path.join(out, "sweep.csv"))
    if plot.figure(1, 1, (1, 1)) is None:
        print(f"wrote {os.path.join(out, 'sweep.csv')}; plots skipped: {plot.NO_MATPLOTLIB}")
    else:
        path = plot.plot_frontier(rows, os.path.join(out, "frontier.png"), f"{name} sweep: final reward vs KL")
        print(f"wrote {path} and sweep.csv; the curves of each run: python -m minippo.extras.plot {out}/{name}=*")


def main(argv=None) -> int:
    try:
        return files.boundary(command, argv, after_stop=lambda: "run the same command again to continue")
    except SystemExit as e:             # a run that failed (train.py said why) or a bad flag: its exit code
        return e.code


if __name__ == "__main__":
    sys.exit(main())
