#!/usr/bin/env bash
# Regenerates every training figure that the README and the docs quote, and the four figures: the
# toy bandit and toy_kl.py, the default run (seeds 0, 1, 2), REINFORCE (seeds 0, 1, 2), beta = 0,
# the beta and temperature sweeps, the reward models and their over-optimisation (seeds 0, 1, 2), and
# GRPO and where the KL goes, three seeds of seven variants at 140 iterations. (With the code of
# 2026-12-06 this took about 11 minutes on a 2-core CPU without GRPO, and about 10 minutes more for
# GRPO's 21 runs.) Plots need matplotlib. Every command writes into a new folder of its own,
# figures_out/TIME/NAME (NAME.txt and NAME.err beside it hold what it printed), so no command
# overwrites another's output; each figure is copied into docs/ once, from the run that drew it.
# pi_ref comes from the cache (MINIPPO_CACHE, default ~/.cache/minippo): each seed is pretrained
# once, by its first run, and every later run, sweep and reward model of that seed reuses it.
# The summary lines come at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
R=figures_out/$(date +%Y%m%d-%H%M%S)
mkdir -p figures_out && mkdir "$R"                  # mkdir refuses a folder that is already there
log() { local name=$1; shift; [ ! -e "$R/$name.txt" ] || { echo "$R/$name: used twice" >&2; exit 1; }
        echo "+ $*"; /usr/bin/time -f "$name: %e s wall, %M KB peak" "$@" \
          > "$R/$name.txt" 2> >(tr '\r' '\n' | grep -v "it/s\]$\|s/it\]$" > "$R/$name.err"); }
log bandit python toy_bandit.py
log toy_kl python toy_kl.py
log seed0 python train.py --out "$R/seed0" --plot
cp "$R/seed0/curves.png" docs/curves.png
for s in 1 2; do log seed$s python train.py --out "$R/seed$s" --seed $s; done
for s in 0 1 2; do log reinforce$s python train.py --out "$R/reinforce$s" --seed $s --algo reinforce; done
log beta0 python train.py --out "$R/beta0" --beta 0
log sweep_beta python -m minippo.extras.sweep --sweep beta=0,0.03,0.1,0.3,1 --out "$R/sweep_beta"
cp "$R/sweep_beta/frontier.png" docs/frontier_beta.png
log sweep_temperature python -m minippo.extras.sweep --sweep temperature=0.7,1.0,1.3 --out "$R/sweep_temperature"
log reward_model python -m minippo.extras.reward_model --pairs 2000 --out "$R/reward_model"
log ppo_reward_model python train.py --reward-model "$R/reward_model" --out "$R/ppo_reward_model"
# over-optimisation: a reward model of 250 and one of 2000 pairs, a beta sweep against each, the report
for s in 0 1 2; do
  O=$R/overopt_s$s && mkdir "$O"
  for n in 250 2000; do
    log rm_${n}_s$s python -m minippo.extras.reward_model --pairs $n --seed $s --out "$O/rm_$n"
    log ppo_${n}_s$s python -m minippo.extras.sweep --sweep beta=0,0.01 --reward-model "$O/rm_$n" \
        --iters 150 --seed $s --out "$O/ppo_$n"
  done
  log overoptimisation_s$s python -m minippo.extras.overoptimisation "$O"/ppo_250/beta=* \
      "$O"/ppo_2000/beta=* --out "$O"
done
cp "$R/overopt_s0/overoptimisation.png" docs/overoptimisation.png
# where the KL goes (docs/grpo.md, docs/kl_libraries.md): 28 runs a seed, one pi_ref a seed
V=ppo,reinforce,grpo,grpo+kl_penalty=k2,grpo+kl_penalty=reward,grpo+variant=dr,grpo+variant=no_std
for p in k3_ratio k3_st ratio_k1 k3_reward seq k3_inverted; do V=$V,grpo+kl_penalty=$p; done
for p in k3_reward k2 k3 k3_ratio k3_st ratio_k1 seq; do V=$V,ppo+kl_penalty=$p; done
for p in k3 k3_ratio k3_st ratio_k1 k2 reward k3_reward seq; do V=$V,grpo+kl_penalty=$p+epochs=1+minibatch=64; done
for s in 0 1 2; do log grpo_s$s python -m minippo.extras.sweep --iters 140 --seed $s --out "$R/grpo_s$s" \
    --sweep algo=$V; done
for s in 0 1 2; do log kl_on_s$s python -m minippo.extras.sweep --algo grpo --iters 560 --batch 16 --minibatch 16 \
    --epochs 1 --seed $s --out "$R/kl_on_s$s" --sweep kl_penalty=k3,k2,k3_ratio,seq,reward; done
N="ppo grpo grpo+kl_penalty=k2 grpo+kl_penalty=k3_ratio grpo+kl_penalty=k3_reward grpo+kl_penalty=seq grpo+kl_penalty=reward"
log grpo_gap python -m minippo.extras.plot --gap "$R/grpo_gap.png" \
    $(for s in 0 1 2; do for n in $N; do echo "$R/grpo_s$s/algo=$n"; done; done)
cp "$R/grpo_gap.png" docs/grpo_gap.png
for f in "$R"/*.txt; do echo "== $f"; grep -A2 "^pi_theta\|^optimality gap" "$f" || tail -8 "$f"; grep "wall" "${f%.txt}.err" || true; done
