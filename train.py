"""minippo: pretrain a tiny character-level GPT, then tune it with KL-penalised PPO (or REINFORCE).

    python train.py                      # pretrain (or reuse) pi_ref, then 70 PPO iterations
    python train.py --algo reinforce     # the log-derivative trick, one step per batch
    torchrun --standalone --nproc_per_node 2 train.py   # the same, data-parallel
    python train.py --help               # every setting, with its meaning and typical range

It maximises the lecture's objective
    J(theta) = E_x E_{y ~ pi_theta(.|x)}[ r(x, y) ] - beta KL(pi_theta(.|x) || pi_ref(.|x))
and at the end measures how close it came to the exact optimum J* (minippo/evaluate.py).

This file only starts the command. The lesson is in minippo/ (`python -m minippo` runs it alone),
read in this order: config.py, model.py, data.py, pretrain.py, rewards.py, rollout.py, rl.py,
ppo.py (the loop), evaluate.py. The command around it (flags, run folder, resume, Ctrl-C,
torchrun) is minippo/extras/launch.py.
"""
import sys

from minippo.extras.launch import main

if __name__ == "__main__":
    sys.exit(main())
