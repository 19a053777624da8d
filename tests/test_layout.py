"""The layout the reader relies on: the lesson in minippo/, the tools around it in minippo/extras/,
arrows pointing one way, a reading path of at most 743 lines (683 for PPO and REINFORCE, at most 60 more for
GRPO and where the KL goes), and one iteration on one screen."""
import ast
import inspect
import re
import subprocess

from conftest import ROOT
from minippo import ppo

CORE = sorted(p.stem for p in (ROOT / "minippo").glob("*.py") if p.stem != "__init__")
PLUMBING = re.compile(r"\b(dist|rank|world|bf16|autocast|isfinite|signal|rng|checkpoint|malloc|"
                      r"release_memory|save|resume|cuda)\b")


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


def test_the_reading_path_is_the_lesson_and_at_most_743_lines():
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"`(wc -l [^`]*)`", readme).group(1)       # the README's own count of the reading path
    files = command.split()[2:]
    assert sorted(f.removeprefix("minippo/").removesuffix(".py") for f in files
                  if f.startswith("minippo/")) == sorted(set(CORE) - {"config"})
    out = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True, text=True, check=True)
    total = int(out.stdout.strip().splitlines()[-1].split()[0])
    assert total <= 743, out.stdout
    order = [readme.index(f"\n{f} ") for f in files]     # the reading order lists them, in order
    assert order == sorted(order)


def test_one_iteration_is_one_screen_of_lesson():
    source = inspect.getsource(ppo.iteration)
    assert len(source.splitlines()) <= 60
    code = "\n".join(line.split("#")[0] for line in source.splitlines()[3:])   # code, not comments
    assert not PLUMBING.findall(code), PLUMBING.findall(code)
    steps = [source.index(f"# ---- {k}.") for k in range(1, 6)]           # the lecture's order
    assert steps == sorted(steps)


def test_pi_ref_is_made_in_the_loop_setup():
    source = inspect.getsource(ppo.train)
    assert re.search(r"ref = copy\.deepcopy\(policy\)\.requires_grad_\(False\)\.eval\(\)", source)
