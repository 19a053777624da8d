"""Pretraining: next-character prediction on the corpus. Its result, frozen, is pi_ref.

The lecture starts from a model that already speaks (an instruction-tuned GPT). Here that model is
made in seconds: AdamW on cross-entropy over random windows of the corpus text, a short warm-up
and a cosine decay of the learning rate.

Signpost: real pretraining runs for weeks on thousands of GPUs, then supervised fine-tuning
teaches the model to answer. RL starts from that checkpoint exactly as it starts from this one.
"""
import math

import torch
import torch.nn.functional as F
from tqdm import tqdm


def line_starts(ids, eos_id: int, block_size: int):
    """Positions of the EOS tokens that begin a full window: every window starts a line."""
    return (ids[:-block_size - 1] == eos_id).nonzero().squeeze(1)


def get_batch(ids, starts, batch_size: int, block_size: int):
    """Random windows of the token stream, each beginning at a line start exactly as a prompt
    does in RL (EOS first, at position 0): inputs (B, T) and the next characters (B, T)."""
    pick = starts[torch.randint(len(starts), (batch_size,)).to(starts.device)]
    windows = ids[pick[:, None] + torch.arange(block_size + 1, device=ids.device)]  # (B, T+1)
    return windows[:, :-1], windows[:, 1:]


def lm_loss(model, x, y):
    logits, _ = model(x)                                        # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), y.flatten())   # -mean log p(next char)


def learning_rate(step: int, total: int, peak: float) -> float:
    warmup = max(1, total // 20)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))  # cosine down to peak/10


def pretrain(model, train_ids, eos_id: int, cfg):
    """cfg.pretrain_steps AdamW steps of next-character prediction on random line-aligned windows."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.pretrain_lr, betas=(0.9, 0.99))
    starts = line_starts(train_ids, eos_id, cfg.block_size)
    model.train()
    for step in tqdm(range(cfg.pretrain_steps), desc="pretrain", dynamic_ncols=True):
        optimizer.param_groups[0]["lr"] = learning_rate(step, cfg.pretrain_steps, cfg.pretrain_lr)
        x, y = get_batch(train_ids, starts, cfg.pretrain_batch, cfg.block_size)
        loss = lm_loss(model, x, y)
        optimizer.zero_grad()
        loss.backward()
        if not torch.isfinite(torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)):
            raise FloatingPointError("a pretraining gradient became non-finite (--pretrain-lr too high?)")
        optimizer.step()
    return model.eval()
