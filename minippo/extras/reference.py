"""pi_ref for train.py and the reward model: the pretrained policy, from the run folder's cache
(reference.pt, reused while its pretraining settings match) or pretrained now. Ctrl-C during
pretraining saves pretrain_state.pt, from which --resume continues bit for bit."""
import os
import time

import torch
from tqdm import tqdm

from minippo.extras import files
from minippo.extras.files import UsageError
from minippo.extras.grammar import grammatical_fraction
from minippo.extras.runs import FRESH
from minippo.model import Policy, sample
from minippo.pretrain import line_starts, lm_loss, pretrain
from minippo.rollout import decode_responses


def pretrained_policy(run, build: bool = True):
    """The pretrained policy (and the seconds pretraining took), from the cache or by pretraining
    now (build=False: from the cache only, which another process has just written). None when
    Ctrl-C interrupted pretraining (its state is saved)."""
    cfg, path = run.cfg, run.path("reference.pt")
    files.seed_everything(cfg.seed)         # the initial weights too: torch seeds itself randomly
    policy = Policy(run.model_config)
    if build:                               # (the other processes of a torchrun stay quiet)
        print(f"policy: {sum(p.numel() for p in policy.parameters()):,} parameters, vocabulary "
              f"{run.vocab.size} characters {run.vocab.chars!r} + PAD")
    cached = run.cached_reference()
    if cached is not None:
        files.load_model(policy, cached["model"], path)
        if build:
            print(f"reference: reusing {path} ({cached.get('stats')})")
        return policy.to(run.device).eval(), 0.0
    if not build:
        raise UsageError(f"{path}: not there for this process; with several machines --out must be a "
                         f"folder they all share")
    if os.path.exists(path):
        saved = files.load(path, "reference").get("pretrain")
        print(f"reference: {path} was pretrained with other settings "
              f"{files.differences(saved, run.pretrain)}; pretraining again")
    policy.to(run.device)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.pretrain_lr, betas=(0.9, 0.99))
    step, state_path = 0, run.path("pretrain_state.pt")
    if cfg.resume and os.path.exists(state_path):
        step = run.restore(state_path, "pretrain", policy, optimizer).get("step")
        if type(step) is not int or not 0 <= step <= cfg.pretrain_steps:
            raise UsageError(f"{state_path}: its step {step!r} is not one of 0 .. {cfg.pretrain_steps}; {FRESH}")
    t0, reached = time.time(), [step]

    def steps():                            # step numbers, with a progress bar, until Ctrl-C
        bar = tqdm(range(step, cfg.pretrain_steps), desc="pretrain", initial=step,
                   total=cfg.pretrain_steps, dynamic_ncols=True)
        for s in bar:
            if run.stop.requested:
                break
            yield s
            reached[0] = s + 1
        bar.close()
    pretrain(policy, optimizer, run.train_ids.to(run.device), run.vocab.eos_id, cfg, steps())
    if reached[0] < cfg.pretrain_steps:     # Ctrl-C: keep everything needed to continue exactly
        files.save({"kind": "pretrain", **run.identity, "step": reached[0], "model": policy.state_dict(),
                    "optimizer": optimizer.state_dict(), "rng": files.rng_state()}, state_path)
        files.say(f"interrupted: pretraining saved at step {reached[0]} in {cfg.out}; continue with "
                  f"`{run.resume_hint}`")
        return None, 0.0
    seconds = time.time() - t0
    lines = sample_lines(policy, run.vocab, 256)
    stats = {"val_loss": round(val_loss(policy, run.val_ids.to(run.device), run.vocab.eos_id, cfg.block_size), 4),
             "seconds": round(seconds, 1)}
    if run.grammar:
        stats["grammatical"] = grammatical_fraction(lines)
    print(f"reference: pretrained in {seconds:.1f} s, {stats}; samples:")
    print("".join(f"  {line}\n" for line in lines[:5]), end="")
    files.save({"kind": "reference", **run.identity, "pretrain": run.pretrain, "stats": stats,
                "model": policy.state_dict()}, path)
    if os.path.exists(state_path):
        os.remove(state_path)
    return policy.eval(), seconds


@torch.no_grad()
def val_loss(model, ids, eos_id: int, block_size: int, max_windows: int = 64) -> float:
    """Mean next-character loss over the first line-aligned windows of the held-out text."""
    starts = line_starts(ids, eos_id, block_size)[:max_windows]
    windows = ids[starts[:, None] + torch.arange(block_size + 1, device=ids.device)]
    return lm_loss(model, windows[:, :-1], windows[:, 1:]).item()


@torch.no_grad()
def sample_lines(model, vocab, n: int) -> list[str]:
    """n lines written by the model from scratch (each line begins after an EOS)."""
    start = torch.full((n, 1), vocab.eos_id, device=model.lm_head.weight.device)
    texts, finished = decode_responses(vocab, sample(model, start, 64, 1.0, vocab.eos_id)[0])
    return [y if done else y + " <no EOS>" for y, done in zip(texts, finished)]
