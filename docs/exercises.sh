#!/usr/bin/env bash
# The walkthrough's exercises, measured: seed 0, 70 iterations each, one folder each under
# exercises/, all from the default settings' pi_ref, which the cache holds (MINIPPO_CACHE, default
# ~/.cache/minippo: pretrained by the first run that needs it, `python train.py` or docs/figures.sh,
# and reused by every other). Exercise 1 edits a copy of the code (exercises/no_baseline_code/).
# Prints each run's final line and the figures the walkthrough quotes. (About 3 minutes on a 2-core
# CPU with the code of 2026-12-06.)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p exercises
ex() {   # ex NAME FLAGS...: one run from the default pi_ref
  local name=$1; shift
  mkdir -p "exercises/$name"
  python train.py --out "exercises/$name" --force "$@" > "exercises/$name.log" 2>&1
  python - "exercises/$name" "$*" <<'PY'
import json, sys
d, flags = sys.argv[1], sys.argv[2]
s = json.load(open(f"{d}/summary.json"))
m = [json.loads(line) for line in open(f"{d}/metrics.jsonl")]
betas = ", ".join("%.3f" % m[i - 1]["beta"] for i in (8, 21, 41, 70) if i <= len(m))
print(f"{flags or '(default)':<40} reward {s['reward_policy']:.3f} (pi_ref {s['reward_reference']:.3f})  "
      f"KL {s['kl_policy']:.2f}  gap {s['optimality_gap']:.3f}  grammatical {s.get('grammatical_policy', float('nan')):.3f}  "
      f"distinct {s['distinct_policy']:.3f}  beta {s['beta']:.3f}")
print(f"{'':<40} clipfrac at iterations 1, 8, max from 22: {m[0]['clipfrac'] if 'clipfrac' in m[0] else '-'}, "
      f"{m[7].get('clipfrac', '-')}, {max(x.get('clipfrac', 0) for x in m[21:])};  "
      f"max approx_kl_k3 {max(x.get('approx_kl_k3', 0) for x in m):.3f} at iteration "
      f"{max(m, key=lambda x: x.get('approx_kl_k3', 0))['iter']};  batch KL range after 10: "
      f"{min(x['kl'] for x in m[10:]):.2f}-{max(x['kl'] for x in m[10:]):.2f};  "
      f"explained variance {min(x.get('explained_variance', 0) for x in m):.3f}..{max(x.get('explained_variance', 0) for x in m):.3f};  "
      f"beta at 8, 21, 41, 70: {betas}")
PY
}
# 1. REINFORCE without its baseline: (R - b) -> R in a copy of the code
rm -rf exercises/no_baseline_code && mkdir -p exercises/no_baseline_code
cp -r train.py minippo exercises/no_baseline_code/
sed -i 's/return -((R - b).detach() \* seq_logprob).mean()/return -(R.detach() * seq_logprob).mean()/' \
    exercises/no_baseline_code/minippo/rl.py
grep -q "return -(R.detach() \* seq_logprob).mean()" exercises/no_baseline_code/minippo/rl.py
mkdir -p exercises/no_baseline
(cd exercises/no_baseline_code && python train.py --out ../no_baseline --force --algo reinforce > ../no_baseline.log 2>&1)
python -c "import json; s = json.load(open('exercises/no_baseline/summary.json')); print(f\"1. no baseline (reinforce)                 reward {s['reward_policy']:.3f}  gap {s['optimality_gap']:.3f}\")"
ex default
ex reinforce --algo reinforce
ex beta0 --beta 0
ex epochs4 --epochs 4 --minibatch 16
ex epochs4_noclip --epochs 4 --minibatch 16 --clip 0.99
ex whiten --whiten
ex t2 --temperature 2
ex short --reward short
ex staff --reward staff
ex target_kl --target-kl 1.1 --kl-horizon 2000
