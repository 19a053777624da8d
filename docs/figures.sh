#!/usr/bin/env bash
# Regenerates every training figure that the README and the docs quote, and the three figures: the
# toy bandit, the default run (seeds 0, 1, 2), REINFORCE (seeds 0, 1, 2), beta = 0, the beta and
# temperature sweeps, and the reward models' over-optimisation (about 11 minutes on a 2-core CPU).
# Plots need matplotlib. Each command's output is kept in figures_out/, and the summary lines are
# printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p figures_out
log() { local name=$1; shift; echo "+ $*"; /usr/bin/time -f "$name: %e s wall, %M KB peak" "$@" \
          > "figures_out/$name.txt" 2> >(tr '\r' '\n' | grep -v "it/s\]$\|s/it\]$" > "figures_out/$name.err"); }
log bandit python toy_bandit.py
log seed0 python train.py --out out --force --plot          # reuses out/reference.pt when it is there
cp out/curves.png docs/curves.png
for s in 1 2; do log seed$s python train.py --out out_s$s --seed $s --force; done
reuse() { mkdir -p "$2"; cp "$1/reference.pt" "$2/"; }   # the same seed's pi_ref, not pretrained again
reuse out out_r0; reuse out_s1 out_r1; reuse out_s2 out_r2; reuse out out_b0
log reinforce0 python train.py --out out_r0 --algo reinforce --force
for s in 1 2; do log reinforce$s python train.py --out out_r$s --seed $s --algo reinforce --force; done
log beta0 python train.py --out out_b0 --beta 0 --force
log sweep_beta python -m minippo.extras.sweep --sweep beta=0,0.03,0.1,0.3,1 --out sweeps/beta --reference out/reference.pt --force
cp sweeps/beta/frontier.png docs/frontier_beta.png
log sweep_temperature python -m minippo.extras.sweep --sweep temperature=0.7,1.0,1.3 --out sweeps/temperature --reference out/reference.pt --force
log reward_model python -m minippo.extras.reward_model --pairs 2000 --out rm --force --reference out/reference.pt
reuse out out_rm
log ppo_reward_model python train.py --reward-model rm --out out_rm --force
log overoptimisation python -m minippo.extras.overoptimisation --out overopt   # reward models, PPO against them
cp overopt/overoptimisation.png docs/overoptimisation.png
log overoptimisation100 python -m minippo.extras.overoptimisation --out overopt --pairs 100,2000
for s in 1 2; do log overoptimisation_s$s python -m minippo.extras.overoptimisation --out overopt_s$s --seed $s; done
for f in figures_out/*.txt; do echo "== $f"; grep -A2 "^pi_theta\|^optimality gap" "$f" || tail -8 "$f"; grep "wall" "${f%.txt}.err" || true; done
