"""Rollouts: draw queries x, sample responses y ~ pi_theta(.|x), score them with r(x, y).

A prompt is fed as [EOS] + its characters: the newline that ends a line also marks where the next
one starts, just as in the pretraining text. Prompts of different lengths are left-padded, so all
responses start in the same column P and one batched KV-cache loop samples them together.
"""
import torch

from minippo.model import token_logprobs
from minippo.rewards import NO_EOS_PENALTY


def encode_prompts(vocab, prompts, device):
    """list of str -> (B, P) token ids, each row [PAD ...] EOS prompt."""
    rows = [[vocab.eos_id] + vocab.encode(p) for p in prompts]
    P = max(map(len, rows))
    return torch.tensor([[vocab.pad_id] * (P - len(r)) + r for r in rows], device=device)


def decode_responses(vocab, tokens):
    """(B, L) response tokens -> texts without EOS, and whether each reached EOS."""
    texts, finished = [], []
    for row in tokens.tolist():
        text = vocab.decode(row)
        finished.append(text.endswith("\n"))
        texts.append(text.rstrip("\n"))
    return texts, finished


def score(reward_fn, prompts, texts, finished, device):
    """r(x, y) for every response, or NO_EOS_PENALTY if it never ended; (B,) float tensor."""
    return torch.tensor([float(reward_fn(x, y)) if done else NO_EOS_PENALTY
                         for x, y, done in zip(prompts, texts, finished)], device=device)


def response_logprobs(model, prompt_ids, tokens, temperature: float):
    """Teacher-forced log pi(y_t | x, y_<t) at temperature T, V(s_t) and logits, for the response
    part of [prompt, response]: (B, P), (B, L) -> (B, L), (B, L), (B, L, V)."""
    P = prompt_ids.shape[1]
    logits, values = model(torch.cat([prompt_ids, tokens], 1))             # (B, P+L, V)
    logits, values = logits[:, P - 1:-1], values[:, P - 1:-1]              # predictions of y_t
    return token_logprobs(logits, tokens, temperature), values, logits
