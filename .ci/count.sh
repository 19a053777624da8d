#!/usr/bin/env bash
# Formatted line counts: a copy of the tracked and untracked (not ignored) files, formatted by
# `ruff format --line-length 100` (pip install ruff), so that packing lines does not shrink a count.
# Prints "lesson N toy N extras N tests N" (lesson: minippo/*.py; tests: tests/*.py).
set -eu
cd "$(dirname "$0")/.."
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$T" 2>/dev/null || true
(cd "$T" && ruff format --line-length 100 -q .)
count() { cat "$@" | wc -l; }
echo "lesson $(count "$T"/minippo/*.py) toy $(count "$T"/toy_bandit.py)" \
     "extras $(count "$T"/minippo/extras/*.py) tests $(count "$T"/tests/*.py)"
