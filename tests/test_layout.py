"""The layout the reader relies on: the lesson in minippo/ runs alone, the tools around it live in
minippo/extras/, arrows point one way, and one iteration is one screen. (The project's own budgets
of lines and words are checked in .ci/, not here: a forker's change must not trip them.)"""
import ast
import inspect
import re
import subprocess
import sys

from conftest import ROOT
from minippo import ppo

CORE = sorted(p.stem for p in (ROOT / "minippo").glob("*.py") if p.stem != "__init__")
PLUMBING = r"\b(dist|rank|world|autocast|isfinite|signal|rng|checkpoint|save|resume|cuda)\b"


def imports(path):
    """Every module a file imports, as dotted names (from-imports also as module.name)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def test_the_lesson_imports_nothing_from_the_tools_around_it():
    for name in CORE:
        found = imports(ROOT / "minippo" / f"{name}.py")
        assert not [m for m in found if m.startswith("minippo.extras")], (name, found)


def test_the_math_and_the_model_stand_alone():
    assert not [m for m in imports(ROOT / "minippo" / "rl.py") if m.startswith("minippo")]
    assert not [m for m in imports(ROOT / "minippo" / "model.py") if m.startswith("minippo")]
    assert not [m for m in imports(ROOT / "minippo" / "rewards.py") if "torch" in m]


def test_no_module_imports_train_py():
    for path in [*(ROOT / "minippo").rglob("*.py"), *(ROOT / "tests").glob("*.py")]:
        found = imports(path)
        assert not [m for m in found if m == "train" or m.startswith("train.")], path


def test_the_import_check_has_teeth(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom minippo.extras import dist\nfrom train import main\n")
    assert {"minippo.extras", "minippo.extras.dist", "train", "train.main"} <= imports(bad)


def test_python_m_minippo_runs_the_lesson_alone_and_prints_the_gap():
    """The lesson end to end (tiny settings), importing nothing of minippo/extras/."""
    code = ("import sys; from minippo.__main__ import main; from minippo.config import Config; "
            "s = main(Config(corpus_lines=1000, pretrain_steps=30, iters=2, batch=8, minibatch=4, "
            "eval_samples=4)); print(sorted(m for m in sys.modules if m.startswith('minippo')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    modules = eval(out.stdout.strip().splitlines()[-1])
    assert "minippo.ppo" in modules and not [m for m in modules if m.startswith("minippo.extras")]
    assert "optimality gap (J* - J(theta)) / (J* - J(pi_ref)) = " in out.stdout
    assert "iteration   2  reward" in out.stdout


def test_one_iteration_is_one_screen_of_lesson():
    source = inspect.getsource(ppo.iteration)
    assert len(source.splitlines()) <= 60
    code = "\n".join(line.split("#")[0] for line in source.splitlines()[3:])   # code, not comments
    assert not re.findall(PLUMBING, code), re.findall(PLUMBING, code)
    steps = [source.index(f"# ---- {k}.") for k in range(1, 6)]           # the lecture's order
    assert steps == sorted(steps)


def test_pi_ref_is_made_in_the_loop_setup():
    source = inspect.getsource(ppo.train)
    assert re.search(r"ref = copy\.deepcopy\(policy\)\.requires_grad_\(False\)\.eval\(\)", source)


def test_every_mutant_of_the_mutation_tool_still_finds_its_line_once():
    """tests/mutants.py plants each bug by replacing one exact text: a change that moves or
    rewrites that text shows here, not when the mutants are next run (their ids are unique too)."""
    sys.path.insert(0, str(ROOT / "tests"))
    import mutants

    assert mutants.check_anchors() == [] and len(mutants.MUTANTS) > 100
