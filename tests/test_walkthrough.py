"""docs/walkthrough.md cannot rot: every `file.py:function` it names exists, every code excerpt
it quotes still appears (line for line, in order) in the file it names, and its figures exist."""
import re

import pytest

from conftest import ROOT

DOC = ROOT / "docs" / "walkthrough.md"
TEXT = DOC.read_text(encoding="utf-8")
NAMED = sorted(set(re.findall(r"`([\w/]+\.py):(\w+)`", TEXT)))
EXCERPTS = re.findall(r"```python ([\w/]+\.py)\n(.*?)```", TEXT, re.S)


def test_the_walkthrough_names_and_quotes_the_code():
    assert len(NAMED) >= 10 and len(EXCERPTS) >= 8


@pytest.mark.parametrize("path,name", NAMED, ids=[f"{p}:{n}" for p, n in NAMED])
def test_every_named_function_exists(path, name):
    source = (ROOT / path).read_text(encoding="utf-8")
    assert re.search(rf"^\s*(def|class) {name}\b", source, re.M), f"{path} has no {name}"


@pytest.mark.parametrize("path,code", EXCERPTS, ids=[f"{p}#{i}" for i, (p, _) in enumerate(EXCERPTS)])
def test_every_excerpt_is_still_in_its_file(path, code):
    lines = [line.strip() for line in (ROOT / path).read_text(encoding="utf-8").splitlines()]
    at = 0
    for want in (line.strip() for line in code.splitlines()):
        if not want or want == "...":            # "..." marks lines left out of the excerpt
            continue
        assert want in lines[at:], f"{path}: this line of the walkthrough is not in the file " \
                                   f"(or not in this order): {want!r}"
        at += lines[at:].index(want) + 1


def test_figures_exist_and_readme_links_the_walkthrough():
    for png in re.findall(r"\]\((\S+\.png)\)", TEXT):
        assert (DOC.parent / png).is_file(), png
    first_screen = "\n".join((ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:30])
    assert "docs/walkthrough.md" in first_screen
