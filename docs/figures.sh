#!/usr/bin/env bash
# Regenerates the numbers and figures of docs/walkthrough.md and the README's experiments section:
# the default run, the beta and temperature sweeps, the toy bandit (about 8 minutes on a 2-core CPU).
# Plots need matplotlib (pip install matplotlib).
set -euo pipefail
cd "$(dirname "$0")/.."
python toy_bandit.py
python train.py --out out --force --plot          # reuses out/reference.pt when it is there
cp out/curves.png docs/curves.png
python -m minippo.sweep --sweep beta=0,0.03,0.1,0.3,1 --out sweeps/beta --reference out/reference.pt --force
cp sweeps/beta/frontier.png docs/frontier_beta.png
python -m minippo.sweep --sweep temperature=0.7,1.0,1.3 --out sweeps/temperature --reference out/reference.pt --force
