"""The project's own budgets, checked in CI only (a forker's change to tests/ never trips them):
sizes counted on a copy formatted by `ruff format --line-length 100`, so that packing lines does
not shrink a count; the README a learner's first page. (That every mutant of tests/mutants.py finds its line is a test
of tests/test_layout.py: a forker's change that moves a guarded line should show.)"""
import re
import shutil
import subprocess

import pytest

from conftest import ROOT

# tests: 4,000 at "The lesson alone"; 4,050 since "Numbers a forker can trust" added 38 mutants of
# planted bugs (117 lines of tests/mutants.py) and the tests that kill them, 213 lines cut elsewhere;
# 4,350 since "Every library's KL": 7 placements' terms and gradients by hand, the loop's exact KL
# gradient for each, toy_kl.py's new part 7 against autograd (about 150 lines) and 13 mutants
BUDGETS = {"lesson": 950, "toy": 400, "extras": 2300, "tests": 4350}
PER_FILE = {"extras": 400}
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def formatted(tmp_path_factory):
    """A formatted copy of the tracked and untracked (not ignored) files."""
    ruff = shutil.which("ruff") or pytest.fail("CI installs ruff (.ci/run)")
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    copy = tmp_path_factory.mktemp("formatted")
    for name in listed:
        if (ROOT / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, copy / name)
    subprocess.run([ruff, "format", "--line-length", "100", "-q", "."], cwd=copy, check=True)
    return copy


def lines(files) -> int:
    return sum(len(f.read_text(encoding="utf-8").splitlines()) for f in files)


def test_sizes_formatted_are_within_the_budgets(formatted):
    parts = {"lesson": sorted(formatted.glob("minippo/*.py")), "toy": [formatted / "toy_bandit.py"],
             "extras": sorted(formatted.glob("minippo/extras/*.py")),
             "tests": sorted(formatted.glob("tests/*.py"))}
    sizes = {k: lines(v) for k, v in parts.items()}
    assert all(sizes[k] <= BUDGETS[k] for k in BUDGETS), sizes
    for part, most in PER_FILE.items():
        assert all(lines([f]) <= most for f in parts[part]), {f.name: lines([f]) for f in parts[part]}


def test_no_formatting_is_switched_off():
    for path in [*ROOT.glob("minippo/**/*.py"), *ROOT.glob("tests/*.py"), ROOT / "toy_bandit.py"]:
        assert "fmt: off" not in path.read_text(encoding="utf-8"), path


def test_the_readme_counts_the_lesson_as_the_budget_does(formatted):
    """The README's count of the lesson is every file of minippo/*.py, formatted."""
    counts = re.findall(r"the lesson is\s+([\d,]+)\s+lines", README)
    assert counts and {int(c.replace(",", "")) for c in counts} == {lines(sorted(formatted.glob("minippo/*.py")))}


def test_the_readme_is_a_first_page():
    words = len(README.split())                     # as wc -w counts them
    assert words <= 2200, words
    assert "../shared" not in README and "shared/" not in README
    order = ["## Install and run", "## What you see", "## Read the code", "## What it shows",
             "## Add a reward", "## Studies"]
    assert [README.index(h) for h in order] == sorted(README.index(h) for h in order)

