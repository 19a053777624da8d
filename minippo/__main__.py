"""`python -m minippo`: the whole lesson in one run, and nothing but the lesson.

Build the corpus, pretrain pi_ref, tune it with KL-penalised PPO, and measure how close it came to
the exact optimum J*. Every setting is Config's default. `python train.py` runs the same steps
with the same seeds, with the command around them: flags, a run folder, checkpoints and resume,
Ctrl-C, torchrun, plots (minippo/extras/).
"""
import torch

from minippo.config import Config
from minippo.data import make_corpus, prepare
from minippo.evaluate import evaluate
from minippo.model import ModelConfig, Policy
from minippo.ppo import train
from minippo.pretrain import pretrain
from minippo.rewards import REWARDS


def main(cfg: Config = Config()) -> dict:
    # ---- pi_ref: a tiny GPT pretrained on the built-in corpus (pretraining uses --seed itself)
    device = "cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu"
    torch.manual_seed(cfg.seed)
    vocab, train_ids, _, prompts = prepare(make_corpus(cfg.corpus_lines, cfg.seed))
    model_cfg = ModelConfig(vocab.size, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.d_model)
    policy = Policy(model_cfg).to(device)
    n_params = sum(p.numel() for p in policy.parameters())
    print(f"policy: {n_params:,} parameters; {len(prompts)} prompts; {cfg.algo}, beta {cfg.beta}, "
          f"{cfg.batch} responses x <= {cfg.max_new_tokens} tokens per iteration")
    pretrain(policy, train_ids.to(device), vocab.eos_id, cfg)

    # ---- RL: maximise J = E[r(x, y)] - beta KL(pi_theta || pi_ref) (RL draws from seed + 1)
    torch.manual_seed(cfg.seed + 1)
    reward_fn = REWARDS[cfg.reward]
    ref, beta = train(cfg, policy, vocab, prompts, reward_fn)

    # ---- how close to the exact optimum J* = beta log E_{y ~ pi_ref}[exp(r / beta)]? (seed + 2)
    torch.manual_seed(cfg.seed + 2)
    s, ref_texts, texts = evaluate(policy, ref, vocab, prompts, reward_fn, cfg, device, beta)
    for a, b in list(zip(ref_texts, texts))[:: cfg.eval_samples][:4]:
        print(f"  pi_ref: {a:<44} pi_theta: {b}")
    print(f"J(pi_ref) = {s['objective_reference']:.3f}   J(theta) = {s['objective_policy']:.3f}   "
          f"J* = {s['objective_optimal']:.3f}   KL(pi_theta || pi_ref) = {s['kl_policy']:.2f} nats")
    print(f"optimality gap (J* - J(theta)) / (J* - J(pi_ref)) = {s['optimality_gap']:.3f}")
    return s


if __name__ == "__main__":
    main()
