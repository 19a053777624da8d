"""Every setting of a run in one dataclass. `python train.py --help` lists them with their meaning.

The comment after each field is its help (with a typical range), continued on the comment lines
below it; the command line is generated from this class, and every value is checked before any
work starts (minippo/extras/cli.py).
"""
from dataclasses import dataclass


@dataclass
class Config:
    # --- the run
    out: str = "out"  # output folder (checkpoint.pt, metrics.jsonl, samples.txt, summary.json, ...)
    seed: int = 0  # random seed; on CPU the same seed gives the same run, bit for bit
    device: str = "auto"  # auto | cpu | cuda (auto picks cuda when present)
    data: str = ""  # UTF-8 text file, one sentence per line, to pretrain on instead of the corpus
    prompts: str = ""  # file with one query x per line; empty: each corpus line's first two words
    resume: str = ""  # continue the run saved in this folder (same settings as when it started)
    force: bool = False  # start afresh in --out even if it holds another run
    # --- the policy (a tiny GPT); changing these pretrains another reference
    n_layer: int = 2  # transformer blocks (1-4)
    n_head: int = 4  # attention heads; must divide d_model
    d_model: int = 64  # width of the residual stream (32-256); 64 gives ~110k parameters
    block_size: int = 68  # longest prompt + response, in characters
    # --- pretraining, whose result is the frozen reference pi_ref
    corpus_lines: int = 20000  # sentences the built-in grammar generates
    pretrain_steps: int = 600  # AdamW steps of next-character prediction (300-2000)
    pretrain_batch: int = 32  # windows of block_size characters per pretraining step
    pretrain_lr: float = 1e-2  # peak pretraining learning rate, cosine-decayed (1e-3 - 1e-2)
    # --- RL: maximise J = E[r(x,y)] - beta KL(pi_theta || pi_ref)
    algo: str = "ppo"  # ppo (clipped surrogate, value head, GAE) | reinforce (log-derivative
    #   trick) | grpo (--group responses per query, advantages relative to the group, no value head)
    group: int = 8  # GRPO: responses G to each query; must divide batch (4-16)
    kl_penalty: str = "auto"  # where beta KL goes, by name (minippo/rl.py's KL_PENALTIES): reward
    #   (k1 in the reward), k3 (a loss term per token), ...; auto: reward, or k3 with grpo
    variant: str = "std"  # GRPO: std (A = (R - mean) / std over the group, a response's tokens
    #   averaged) | no_std (A = R - mean) | dr (Dr. GRPO, Liu et al. 2025: no std, tokens summed)
    reward: str = "positive"  # reward function r(x, y), by name (see minippo/rewards.py); with
    #   --reward-model, the gold reward the learned one is measured against
    reward_model: str = ""  # optimise a learned reward instead: the folder (or file) written by
    #   python -m minippo.extras.reward_model
    iters: int = 70  # RL iterations (sample, score, update)
    batch: int = 64  # responses y sampled per iteration (16-512)
    max_new_tokens: int = 56  # response length limit; a response without EOS gets the penalty
    temperature: float = 1.0  # sampling temperature T (0.5-2): the policy optimised is pi at T
    beta: float = 0.1  # KL penalty coefficient (initial value when --target-kl is set) (0.01-1)
    target_kl: float = 0.0  # adaptive beta: target KL in nats per response; 0 keeps beta fixed
    kl_horizon: int = 1000  # adaptive beta horizon, in responses: each iteration moves beta by at
    #   most 20% x batch / horizon (Ziegler et al. 2019 use 10000 with far longer runs)
    lr: float = 3e-4  # RL learning rate (1e-5 - 1e-3)
    anneal_lr: bool = True  # decay the RL learning rate linearly to 0 over --iters, so the noisy
    #   steps shrink and the policy settles at the optimum instead of drifting
    epochs: int = 2  # PPO epochs over each batch (1-4); more reuse of a batch drifts past pi*
    minibatch: int = 32  # PPO minibatch size, in responses; must divide batch
    clip: float = 0.2  # PPO clip epsilon for the ratio and the value (0.1-0.3)
    vf_coef: float = 0.1  # weight of the value loss (0.05-1)
    gamma: float = 1.0  # discount; 1 makes the return the whole response's reward
    lam: float = 1.0  # GAE lambda: 1 = Monte Carlo returns (unbiased), 0 = one-step TD; below 1
    #   the learned V biases the advantages (0.9-1)
    ent_coef: float = 0.0  # entropy bonus on the mean per-token entropy, while the policy loss sums
    #   over a response's tokens (so ~40x weaker than CleanRL's per-token scale); it biases the
    #   optimum (0-0.01)
    max_grad_norm: float = 1.0  # clip the gradient's global norm to this
    whiten: bool = False  # normalise advantages to mean 0, std 1 over the batch; once the reward
    #   saturates it magnifies noise and the policy drifts past pi*
    # --- logging and evaluation
    sample_every: int = 25  # print a few prompt -> response samples every N iterations
    ckpt_every: int = 25  # save checkpoint.pt every N iterations (and on Ctrl-C)
    eval_samples: int = 128  # samples per evaluation prompt for J(theta), J(pi_ref) and J*
    plot: bool = False  # after training, draw curves.png from metrics.jsonl (needs matplotlib)
    human_eval: int = 0  # after training, judge N blind pairs of pi_ref / pi_theta responses,
    #   answers read from standard input (1 / 2 / t(ie) / s(kip))
