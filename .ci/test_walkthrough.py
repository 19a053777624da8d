"""docs/walkthrough.md cannot rot: every `file.py:function` it names exists, every code excerpt
it quotes still appears (line for line, in order) in the file it names, and its figures exist."""
import contextlib
import itertools
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


def indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def check_excerpt(source: str, code: str):
    """An excerpt quotes its file's lines as they stand, contiguous, with `...` wherever lines are left out:
    between runs, and at the start or end inside a block. So a truncated excerpt fails unless it says so."""
    lines = [line for line in source.splitlines() if line.strip()]       # blank lines do not count
    stripped = [line.strip() for line in lines]
    wanted = [line.strip() for line in code.splitlines() if line.strip()]
    elided_start, elided_end = wanted[0] == "...", wanted[-1] == "..."
    at, spans = 0, []
    for run in [list(run) for dots, run in itertools.groupby(wanted, lambda w: w == "...") if not dots]:
        starts = [i for i in range(at, len(lines)) if stripped[i:i + len(run)] == run]
        assert starts, f"not in the file as contiguous lines in this order: {run}"
        spans.append((starts[0], starts[0] + len(run)))
        at = starts[0] + len(run)
    first, last = spans[0][0], spans[-1][1]
    level = min(indent(lines[i]) for i in range(first, last))
    after = lines[last] if last < len(lines) else None
    before = lines[first - 1] if first > 0 else None
    if not elided_end:       # the excerpt must close its block: what follows is less indented
        assert after is None or indent(after) < level or after.strip().startswith(("def ", "class ", "@")), \
            f"the excerpt stops inside a block without `...`; next line: {after!r}"
    if not elided_start:     # ... and open it: what precedes is a header or less indented
        assert (before is None or indent(before) < level or before.rstrip().endswith((":", '"""'))
                or stripped[first].startswith(("def ", "class ", "@"))), \
            f"the excerpt starts inside a block without `...`; line before: {before!r}"


@pytest.mark.parametrize("path,code", EXCERPTS, ids=[f"{p}#{i}" for i, (p, _) in enumerate(EXCERPTS)])
def test_every_excerpt_is_still_in_its_file(path, code):
    check_excerpt((ROOT / path).read_text(encoding="utf-8"), code)


GAE = """def gae(rewards, values, mask, gamma, lam):
    values = values * mask
    advantages = torch.zeros_like(rewards)
    for t in reversed(range(rewards.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        next_adv = delta + gamma * lam * next_adv
        advantages[:, t] = next_adv
        next_value = values[:, t]
    return advantages
"""


G = GAE.splitlines(keepends=True)


@pytest.mark.parametrize("excerpt, ok", [
    (GAE, True),
    ("".join(G[3:7]), False),                                       # a truncated loop
    ("    ...\n" + "".join(G[3:5]) + "        ...\n", True),        # marked elisions
    (G[2] + "    ...\n" + G[8], False),                             # starts inside the function
    ("".join(G[:2]) + G[8], False),                                 # quoted runs not contiguous
])
def test_the_excerpt_check_catches_a_truncation(excerpt, ok):
    with contextlib.nullcontext() if ok else pytest.raises(AssertionError):
        check_excerpt(GAE, excerpt)


def test_figures_exist_and_readme_links_the_walkthrough():
    for png in re.findall(r"\]\((\S+\.png)\)", TEXT):
        assert (DOC.parent / png).is_file(), png
    first_screen = "\n".join((ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:30])
    assert "docs/walkthrough.md" in first_screen
