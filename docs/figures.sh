#!/usr/bin/env bash
# Regenerates every training figure that the README and the docs quote, and the four figures: the
# toy bandit, the default run (seeds 0, 1, 2), REINFORCE (seeds 0, 1, 2), beta = 0, the beta and
# temperature sweeps, the reward models' over-optimisation (about 11 minutes on a 2-core CPU), and
# GRPO and where the KL goes, three seeds of seven variants at 140 iterations (about 10 minutes more).
# Plots need matplotlib. Every command writes into a new folder of its own, figures_out/TIME/NAME
# (NAME.txt and NAME.err beside it hold what it printed), so no command overwrites another's output;
# each figure is copied into docs/ once, from the run that drew it. The summary lines come at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
R=figures_out/$(date +%Y%m%d-%H%M%S)
mkdir -p figures_out && mkdir "$R"                  # mkdir refuses a folder that is already there
log() { local name=$1; shift; [ ! -e "$R/$name.txt" ] || { echo "$R/$name: used twice" >&2; exit 1; }
        echo "+ $*"; /usr/bin/time -f "$name: %e s wall, %M KB peak" "$@" \
          > "$R/$name.txt" 2> >(tr '\r' '\n' | grep -v "it/s\]$\|s/it\]$" > "$R/$name.err"); }
reuse() { mkdir "$R/$2" && cp "$R/$1/reference.pt" "$R/$2/"; }   # the same seed's pi_ref, not pretrained again
log bandit python toy_bandit.py
log seed0 python train.py --out "$R/seed0" --plot
cp "$R/seed0/curves.png" docs/curves.png
for s in 1 2; do log seed$s python train.py --out "$R/seed$s" --seed $s; done
for s in 0 1 2; do reuse seed$s reinforce$s; log reinforce$s python train.py --out "$R/reinforce$s" --seed $s --algo reinforce; done
reuse seed0 beta0; log beta0 python train.py --out "$R/beta0" --beta 0
log sweep_beta python -m minippo.extras.sweep --sweep beta=0,0.03,0.1,0.3,1 --out "$R/sweep_beta" --reference "$R/seed0/reference.pt"
cp "$R/sweep_beta/frontier.png" docs/frontier_beta.png
log sweep_temperature python -m minippo.extras.sweep --sweep temperature=0.7,1.0,1.3 --out "$R/sweep_temperature" --reference "$R/seed0/reference.pt"
log reward_model python -m minippo.extras.reward_model --pairs 2000 --out "$R/reward_model" --reference "$R/seed0/reference.pt"
reuse seed0 ppo_reward_model; log ppo_reward_model python train.py --reward-model "$R/reward_model" --out "$R/ppo_reward_model"
log overoptimisation python -m minippo.extras.overoptimisation --out "$R/overoptimisation"   # reward models, PPO against them
cp "$R/overoptimisation/overoptimisation.png" docs/overoptimisation.png
for s in 1 2; do log overoptimisation_s$s python -m minippo.extras.overoptimisation --out "$R/overoptimisation_s$s" --seed $s; done
for s in 0 1 2; do log grpo_s$s python -m minippo.extras.sweep --iters 140 --seed $s --out "$R/grpo_s$s" --reference "$R/seed$s/reference.pt" \
    --sweep algo=ppo,reinforce,grpo,grpo+kl_penalty=k2,grpo+kl_penalty=reward,grpo+dr_grpo=true,grpo+group_std=false; done
log grpo_gap python -m minippo.extras.plot --gap "$R/grpo_gap.png" "$R"/grpo_s*/algo=*
cp "$R/grpo_gap.png" docs/grpo_gap.png
for f in "$R"/*.txt; do echo "== $f"; grep -A2 "^pi_theta\|^optimality gap" "$f" || tail -8 "$f"; grep "wall" "${f%.txt}.err" || true; done
