"""Run train.py once per value of one setting and compare the runs: a table, sweep.csv, frontier.png.

    python -m minippo.extras.sweep --sweep beta=0,0.03,0.1,0.3,1 --out sweeps/beta [train.py flags]
    python -m minippo.extras.sweep --sweep temperature=0.7,1.0,1.3 --out sweeps/temperature --iters 50
    python -m minippo.extras.sweep --sweep algo=ppo,grpo,grpo+variant=dr --out sweeps/algo  # +: more

Runs go to OUT/NAME=VALUE, all checked before the first starts; pi_ref comes from reference.py's
cache. The same command reuses finished runs, resumes an interrupted one; --force reruns them all."""

import argparse
import csv
import io
import os
import re
import sys
from dataclasses import asdict

from minippo.config import Config
from minippo.extras import files, launch, plot, reward_model, runs
from minippo.extras.cli import RESUMABLE, flag, one_line_error, parse_config, read_settings
from minippo.extras.files import UsageError
from minippo.rewards import REWARDS

NOT_SWEPT = ("out", "resume", "force")
NAME_MAX = 255  # bytes in one file name, on most file systems
EXPECTED = "expected NAME=V1,V2,... with distinct values, e.g. beta=0,0.1,1"
# sweep.csv's column:its header on screen:its summary.json key; gold: --reward-model runs only;
# seconds: pretraining + RL
TABLE = """setting:setting:setting reward:reward:reward_policy
    gold_reward:gold:gold_reward_policy kl:KL:kl_policy objective:J:objective_policy
    objective_optimal:J*:objective_optimal optimality_gap:gap:optimality_gap
    kl_to_optimum:KL_to_pi*:kl_to_optimum grammatical:grammatical:grammatical_policy
    distinct:distinct:distinct_policy distinct_2:distinct-2:distinct_2grams_policy seconds:seconds:seconds"""
COLUMNS = [c.split(":") for c in TABLE.split()]


def setting_flags(name: str, value: str) -> list[str]:
    """The train.py flags for one value: --max-new-tokens 40, --whiten / --no-whiten, then those of
    the settings the value adds after "+" (grpo+kl_penalty=k2: --algo grpo --kl-penalty k2)."""
    value, *more = re.split(r"\+(?=[a-z_-]+=)", value)  # (1e+3 stays one number)
    where = "+".join([f"{name}={value}", *more])
    pairs = [setting(pair, where) for pair in more]
    if len({name, *(n for n, _ in pairs)}) != 1 + len(pairs):
        raise UsageError(f"--sweep={where}: a setting is given twice; give each once")
    if more and not value:
        raise UsageError(f"--sweep={where}: a value comes before its '+'")
    given = [flag(name), value]
    if Config.__dataclass_fields__[name].type is bool:
        if value.lower() not in ("true", "false", "1", "0"):
            raise UsageError(f"--sweep: {name}={value}: expected true or false")
        given = [flag(name) if value.lower() in ("true", "1") else flag("no_" + name)]
    return given + [f for pair in pairs for f in setting_flags(*pair)]


def setting(text: str, where: str) -> tuple[str, str]:
    """NAME=VALUE -> (the Config field, the value), or UsageError."""
    name, _, value = text.partition("=")
    name = name.strip().lstrip("-").replace("-", "_")
    if name not in asdict(Config()) or name in NOT_SWEPT:
        raise UsageError(f"--sweep={where}: {name!r} is not a setting (see python train.py --help)")
    if not value.strip():
        raise UsageError(f"--sweep={where}: {EXPECTED}")
    return name, value


def plan(name: str, values: list[str], out: str, train_args: list[str]) -> list[tuple]:
    """(value, Config, train.py's flags, what its folder holds) of each run, all checked (flags, files
    named, folders, earlier runs) before the first starts: a sweep is refused whole or not at all."""
    folders = [os.path.join(out, f"{name}={v}".replace(os.sep, "_")) for v in values]
    if len({os.path.realpath(f) for f in folders}) != len(folders):
        raise UsageError(f"--sweep: two of {values} map to one folder (a '/' becomes '_')")
    plans = []
    for value, folder in zip(values, folders):
        if len(os.fsencode(os.path.basename(folder))) > NAME_MAX:
            raise UsageError(f"--sweep: {name}={value[:20]}...: folder name over {NAME_MAX} bytes")
        argv = train_args + setting_flags(name, value) + ["--out", folder]
        cfg = parse_config(argv, rewards=tuple(REWARDS))
        run = runs.Run(cfg)  # --data, --prompts and the sizes, as train.py checks them
        run.cached_reference()  # a reference.pt left in the folder must load
        if cfg.reward_model:
            reward_model.load(cfg.reward_model, run.identity, run.device, run.pretrain)
        plans.append((value, cfg, argv, earlier(cfg)))
    return plans


def earlier(cfg: Config) -> str:
    """What cfg.out holds: "finished" (reused), "interrupted" (resumed) or "" (a run starts there,
    always with --force). Its settings must be the sweep's, as far as a resume allows."""
    here = [f for f in runs.RUN_FILES if os.path.exists(os.path.join(cfg.out, f))]
    if here and "config.json" not in here:
        raise UsageError(f"{cfg.out} holds {', '.join(here)} but no config.json; remove them")
    saved = read_settings(os.path.join(cfg.out, "config.json")) if here else {}  # (or refused)
    if not here or cfg.force:
        return ""
    state = "finished" if "summary.json" in here else "interrupted"
    changed = files.differences(saved, asdict(cfg), NOT_SWEPT if state == "finished" else RESUMABLE)
    for key, (was, given) in list(changed.items())[:1]:
        why = f"holds an earlier run ({state}) made with {flag(key)}={was!r}, this sweep has {given!r}"
        raise UsageError(f"{cfg.out} {why}; use another --out or add --force")
    return state


def sweep(name: str, values: list[str], out: str, train_args: list[str]) -> list[dict]:
    """Run (or reuse) one run per value; the table rows. A failed run: SystemExit(its code)."""
    plans = plan(name, values, out, train_args)
    held = files.lock(out)  # one sweep per folder; one this user cannot write is refused here
    try:
        for i, (value, cfg, argv, state) in enumerate(plans):
            print(f"\nsweep {i + 1}/{len(plans)}: {name}={value} -> {cfg.out}", flush=True)
            if state == "finished":
                print("finished earlier; reusing its summary.json")
                continue
            code = launch.main(argv + ["--resume", cfg.out] * (state == "interrupted"))
            if code:
                files.say(f"sweep stopped at {name}={value}: train.py exited with code {code}")
                raise SystemExit(code)
    finally:
        files.unlock(out, held)
    rows = []
    for value, cfg, _, _ in plans:
        s, label = plot.read_summary(cfg.out), f"{name}={value}"
        s.update(setting=label, seconds=s.get("pretrain_seconds", 0) + s.get("rl_seconds", 0))
        rows.append({c: s.get(key) for c, _, key in COLUMNS})
    return rows


def command(argv) -> None:
    p = argparse.ArgumentParser("python -m minippo.extras.sweep", allow_abbrev=False)
    p.description = __doc__.splitlines()[0]
    p.add_argument("--sweep", required=True, metavar="NAME=V1,V2,...", help="e.g. beta=0,0.1,1")
    p.add_argument("--out", help="runs go to OUT/NAME=VALUE [default: sweeps/NAME]")
    p.error = one_line_error
    args, train_args = p.parse_known_args(argv)
    name, values = setting(args.sweep, args.sweep)
    values = [v.strip() for v in values.split(",")]
    if not all(values) or len(set(values)) != len(values):
        raise UsageError(f"--sweep={args.sweep}: {EXPECTED}")
    out = os.path.join("sweeps", name) if args.out is None else args.out
    if not out.strip():
        raise UsageError(f"--out={out!r}: must name a folder")
    rows = sweep(name, values, out, train_args)
    columns = [(c, head) for c, head, _ in COLUMNS if any(r[c] is not None for r in rows)]
    width = max(len(r["setting"]) for r in rows) + 2
    print(f"\nsweep over {name} (final evaluations; all figures in OUT/NAME=VALUE/summary.json)")
    print(f"{'setting':<{width}}" + "".join(f"{head:>12}" for _, head in columns[1:]))
    for r in rows:
        cells = ["-" if r[c] is None else f"{r[c]:.3f}" for c, _ in columns[1:]]
        print(f"{r['setting']:<{width}}" + "".join(f"{cell:>12}" for cell in cells))
    text = io.StringIO()
    table = [["" if r[c] is None else r[c] for c, _ in columns] for r in rows]
    csv.writer(text, lineterminator="\n").writerows([[c for c, _ in columns]] + table)
    files.save_lines([text.getvalue()], os.path.join(out, "sweep.csv"))
    if plot.figure(1, 1, (1, 1)) is None:
        print(f"wrote {os.path.join(out, 'sweep.csv')}; plots skipped: {plot.NO_MATPLOTLIB}")
        return
    path = plot.plot_frontier(rows, os.path.join(out, "frontier.png"), f"{name} sweep")
    print(f"wrote {path} and sweep.csv; the curves: python -m minippo.extras.plot {out}/{name}=*")


def main(argv=None) -> int:
    try:
        return files.boundary(command, argv, after_stop=lambda: "the same command continues it")
    except SystemExit as e:  # a run that failed (train.py said why) or a bad flag: its exit code
        return e.code


if __name__ == "__main__":
    sys.exit(main())
