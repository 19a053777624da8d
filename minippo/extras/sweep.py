"""Run train.py once per value of one setting and compare the results: a table, a CSV, a frontier plot.

    python -m minippo.extras.sweep --sweep beta=0,0.03,0.1,0.3,1 --out sweeps/beta
    python -m minippo.extras.sweep --sweep temperature=0.7,1.0,1.3 --out sweeps/temperature --iters 50

Any other flag goes to every run unchanged (see `python train.py --help`). Each value runs in
OUT/NAME=VALUE, in this process, through train.py's main (minippo/extras/launch.py): the same checks, files and output as
`python train.py`. pi_ref is pretrained once: before a run starts, a reference.pt with the same
pretraining settings (from an earlier run of the sweep, or --reference) is copied into its folder.
Sweeping a pretraining setting (seed, d_model, ...) therefore pretrains once per value, as it must.
A run that already finished (summary.json) is reused, and one that was interrupted is resumed,
so running the same command again continues an interrupted sweep.

Results: a table on screen, OUT/sweep.csv with the same columns, and OUT/frontier.png (final reward
against KL, one point per setting) when matplotlib is installed.
"""
import argparse
import csv
import json
import os
import shutil
import sys
from dataclasses import asdict, fields

from minippo.extras import checkpoint as ckpt
from minippo.config import Config
from minippo.extras import launch, plot
from minippo.extras.cli import PRETRAIN_KEYS, UsageError, one_line_error, parse_config
from minippo.rewards import REWARDS

NOT_SWEPT = ("out", "resume", "force")
# (column, header on screen, summary.json key); `seconds` is pretraining + RL time of the run
COLUMNS = [("setting", "setting", None), ("reward", "reward", "reward_policy"),
           ("gold_reward", "gold", "gold_reward_policy"),       # --reward-model runs only
           ("kl", "KL", "kl_policy"), ("objective", "J", "objective_policy"),
           ("objective_optimal", "J*", "objective_optimal"), ("optimality_gap", "gap", "optimality_gap"),
           ("grammatical", "grammatical", "grammatical_policy"), ("distinct", "distinct", "distinct_policy"),
           ("distinct_2", "distinct-2", "distinct_2grams_policy"), ("seconds", "seconds", None)]


def parse_sweep(text: str):
    """'beta=0,0.1' -> ('beta', ['0', '0.1']); the name must be a field of Config."""
    name, _, values = text.partition("=")
    name = name.strip().lstrip("-").replace("-", "_")
    values = [v.strip() for v in values.split(",")]
    allowed = [f.name for f in fields(Config) if f.name not in NOT_SWEPT]
    if name not in allowed:
        raise UsageError(f"--sweep={text}: {name!r} is not a setting; one of {', '.join(allowed)}")
    if not all(values) or len(set(values)) != len(values):
        raise UsageError(f"--sweep={text}: expected NAME=V1,V2,... with distinct values, e.g. beta=0,0.1,1")
    return name, values


def setting_flags(name: str, value: str) -> list[str]:
    """The train.py flag for one value: --max-new-tokens 40, or --whiten / --no-whiten."""
    flag = "--" + name.replace("_", "-")
    if Config.__dataclass_fields__[name].type is bool:
        if value.lower() not in ("true", "false", "1", "0"):
            raise UsageError(f"--sweep: {name}={value}: expected true or false")
        return [flag if value.lower() in ("true", "1") else "--no-" + flag[2:]]
    return [flag, value]


def pretrain_settings(path: str):
    """The pretraining settings a reference.pt was made with, or None if it is missing or unreadable."""
    try:
        return ckpt.load(path, "reference")["pretrain"] if os.path.isfile(path) else None
    except UsageError:
        return None


def place_reference(cfg, candidates: list[str]) -> None:
    """Copy the first candidate reference.pt made with cfg's pretraining settings into cfg.out, unless
    the one there already matches. Without one, train.py pretrains (and the next run reuses it)."""
    want = {k: getattr(cfg, k) for k in PRETRAIN_KEYS}
    target = os.path.join(cfg.out, "reference.pt")
    if pretrain_settings(target) == want:
        return
    for path in candidates:
        if os.path.abspath(path) != os.path.abspath(target) and pretrain_settings(path) == want:
            os.makedirs(cfg.out, exist_ok=True)
            ckpt.atomic_write(target, lambda tmp: shutil.copyfile(path, tmp))
            print(f"sweep: reference pi_ref copied from {path}")
            return


def finished(cfg) -> bool:
    """True if cfg.out holds a finished run with these settings; UsageError if its settings differ."""
    summary, config = (os.path.join(cfg.out, f) for f in ("summary.json", "config.json"))
    if cfg.force or not os.path.isfile(summary) or not os.path.isfile(config):
        return False
    with open(config) as f:
        saved = json.load(f)
    defaults = asdict(Config())
    for key, value in asdict(cfg).items():      # (a setting newer than the run: it ran with the default)
        if key not in NOT_SWEPT and saved.get(key, defaults[key]) != value:
            raise UsageError(f"{cfg.out} holds a finished run made with --{key.replace('_', '-')}="
                             f"{saved.get(key, defaults[key])!r}, this sweep has {value!r}; use another --out "
                             f"or add --force")
    return True


def result_row(setting: str, run_dir: str) -> dict:
    """One row of the table from the run's summary.json (None where a figure was not measured)."""
    try:
        with open(os.path.join(run_dir, "summary.json")) as f:
            s = json.load(f)
        assert isinstance(s, dict)
    except (ValueError, AssertionError):
        raise UsageError(f"{run_dir}/summary.json: not a readable summary; remove {run_dir} and run the "
                         f"sweep again") from None
    row = {col: s.get(key) for col, _, key in COLUMNS if key}
    row.update(setting=setting, seconds=s.get("pretrain_seconds", 0) + s.get("rl_seconds", 0))
    return row


def table(rows: list[dict], columns) -> str:
    cell = lambda v: "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)
    width = max(len(r["setting"]) for r in rows) + 2
    lines = [f"{'setting':<{width}}" + "".join(f"{h:>12}" for col, h, _ in columns[1:])]
    for r in rows:
        lines.append(f"{r['setting']:<{width}}" + "".join(f"{cell(r[col]):>12}" for col, _, _ in columns[1:]))
    return "\n".join(lines)


def sweep(name: str, values: list[str], out: str, train_args: list[str], reference: str = "") -> list[dict]:
    """Run (or reuse) one run per value; return the table rows. Raises UsageError, or SystemExit with
    train.py's exit code when a run fails or is interrupted."""
    if reference and not os.path.isfile(reference):
        raise UsageError(f"--reference={reference}: no such file")
    if reference:
        ckpt.load(reference, "reference")       # a file that is not a reference is refused, not skipped
    settings = [f"{name}={v}" for v in values]
    argvs = [train_args + setting_flags(name, v) + ["--out", os.path.join(out, s.replace(os.sep, "_"))]
             for v, s in zip(values, settings)]
    runs = [parse_config(argv, rewards=tuple(REWARDS)) for argv in argvs]  # all, before any work
    candidates = ([reference] if reference else []) + [os.path.join(c.out, "reference.pt") for c in runs]
    for i, (setting, cfg, argv) in enumerate(zip(settings, runs, argvs)):
        if finished(cfg):
            print(f"sweep {i + 1}/{len(runs)}: {cfg.out} finished earlier; reusing its summary.json")
            continue
        print(f"\nsweep {i + 1}/{len(runs)}: {setting} -> {cfg.out}", flush=True)
        place_reference(cfg, candidates)
        interrupted = os.path.isfile(os.path.join(cfg.out, "config.json")) and not cfg.force
        code = launch.main(argv + (["--resume", cfg.out] if interrupted else []))
        if code:
            print(f"sweep stopped at {setting}: train.py exited with code {code}; run the same command "
                  f"again to continue (finished runs are reused)", file=sys.stderr)
            raise SystemExit(code)
    return [result_row(s, c.out) for s, c in zip(settings, runs)]


def report(rows: list[dict], name: str, out: str) -> None:
    """The table on screen, OUT/sweep.csv, and the plots when matplotlib is installed."""
    columns = [c for c in COLUMNS if any(r[c[0]] is not None for r in rows)]
    print(f"\nsweep over {name} (final evaluation of each run; all figures in OUT/NAME=VALUE/summary.json)")
    print(table(rows, columns))
    path = os.path.join(out, "sweep.csv")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow([col for col, _, _ in columns])
        writer.writerows([["" if r[col] is None else r[col] for col, _, _ in columns] for r in rows])
    print(f"wrote {path}")
    if plot.figure(1, 1, (1, 1)) is None:
        print(f"plots skipped: {plot.NO_MATPLOTLIB}")
        return
    path = plot.plot_frontier(rows, os.path.join(out, "frontier.png"), f"{name} sweep: final reward vs KL")
    print(f"wrote {path}; the curves of each run: python -m minippo.extras.plot {os.path.join(out, name)}=*")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minippo.extras.sweep", allow_abbrev=False,
                                description="Run train.py once per value of one setting; any other "
                                "flag goes to every run (see python train.py --help).")
    p.add_argument("--sweep", required=True, metavar="NAME=V1,V2,...", help="the setting and its values, "
                   "e.g. beta=0,0.03,0.1,0.3,1 or temperature=0.7,1.0,1.3")
    p.add_argument("--out", default="", help="sweep folder; each run goes to OUT/NAME=VALUE "
                   "[default: sweeps/NAME]")
    p.add_argument("--reference", default="", help="a reference.pt to start from (e.g. out/reference.pt); "
                   "used when its pretraining settings match")
    p.error = one_line_error
    args, train_args = p.parse_known_args(argv)
    try:
        given = [a.split("=")[0] for a in (sys.argv[1:] if argv is None else argv)]
        for flag in ("--sweep", "--out", "--reference"):
            if given.count(flag) > 1:
                raise UsageError(f"{flag}: given {given.count(flag)} times; give it once")
        if any(a.split("=")[0] == "--resume" for a in train_args):
            raise UsageError("--resume: not used by a sweep; run the same sweep command again to continue it")
        name, values = parse_sweep(args.sweep)
        out = args.out or os.path.join("sweeps", name)
        rows = sweep(name, values, out, train_args, args.reference)
        report(rows, name, out)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except SystemExit as e:               # parse_config's one-line error (2) or a failed run
        return e.code
    except KeyboardInterrupt:             # between runs: nothing half-done to save
        print("\nsweep interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    except OSError as e:
        print(f"error: {e.filename or args.out or 'sweeps'}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
