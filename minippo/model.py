"""The policy pi_theta: a tiny decoder-only transformer over characters, with a value head.

GPT-2 shape (token + position embeddings, pre-LayerNorm blocks of causal self-attention and an MLP,
no dropout), about 110k parameters. It knows nothing of RL: tokens in, next-token logits out, and
for PPO a scalar value V(s_t) per position from the same hidden states. Prompts are *left*-padded
with PAD so responses start in one column; PAD is never attended to and positions count only real
tokens, so a sequence gives the same numbers alone or padded in a batch (tests check this).

Signpost: production LLMs are ~10^5-10^7 times larger and add rotary positions, grouped-query
attention and fused kernels; none of that changes what PPO does with the log-probs.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ModelConfig:
    vocab_size: int         # characters the model predicts; PAD = vocab_size is an input-only id
    block_size: int = 68    # longest sequence (prompt + response) the position table covers
    n_layer: int = 2
    n_head: int = 4
    d_model: int = 64


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        d = cfg.d_model
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x, mask, kv=None, start: int = 0):
        B, T, C = x.shape                                                    # (B, T, C)
        qkv = self.qkv(self.ln1(x)).view(B, T, 3, self.n_head, C // self.n_head)  # (B, T, 3, nh, hs)
        qkv = qkv.permute(2, 0, 3, 1, 4)                # (3, B, nh, T, hs)
        q, k, v = qkv                                   # (B, nh, T, hs) each
        if kv is not None:      # KV cache (2, B, nh, max_len, hs): add these keys/values, read all so far
            kv[:, :, :, start:start + T] = qkv[1:]
            k, v = kv[:, :, :, :start + T]              # (B, nh, S, hs) each
        # softmax(q k^T / sqrt(hs), over allowed keys only) v, in one fused torch kernel
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)          # (B, nh, T, hs)
        x = x + self.proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp(self.ln2(x))


def gpt2_init(m):
    if isinstance(m, (nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, std=0.02)
    if isinstance(m, nn.Linear) and m.bias is not None:
        nn.init.zeros_(m.bias)


class Policy(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size + 1, cfg.d_model)   # + PAD
        self.pos_emb = nn.Embedding(cfg.block_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)  # PAD is never predicted
        self.value_head = nn.Linear(cfg.d_model, 1)     # V(s_t), used by PPO only
        self.apply(gpt2_init)
        for block in self.blocks:       # GPT-2: scale residual projections by 1/sqrt(2 n_layer)
            nn.init.normal_(block.proj.weight, std=0.02 / math.sqrt(2 * cfg.n_layer))
        nn.init.zeros_(self.value_head.weight)          # V = 0 exactly at initialisation

    def forward(self, tokens, cache=None):
        """tokens (B, T) -> logits (B, T, V), values (B, T). With a `cache` (a dict, see sample()),
        the tokens continue the sequences it holds, and their keys and values are added to it."""
        B, T = tokens.shape
        real = tokens != self.cfg.vocab_size                                 # (B, T) True = not PAD
        if cache is not None:                       # every token so far: the cached ones, then these
            real = cache["real"] = torch.cat([cache["real"], real], 1)       # (B, S)
        S = real.shape[1]
        positions = ((real.cumsum(1) - 1).clamp(min=0))[:, S - T:]          # count real tokens only
        # query i sees key j when j <= i (causal) and j is not PAD; every query sees itself, so a
        # PAD query (whose output nobody reads) never has an empty row, which would give NaN.
        q_col = torch.arange(S - T, S, device=tokens.device)[:, None]        # (T, 1) query column
        k_col = torch.arange(S, device=tokens.device)[None, :]               # (1, S) key column
        mask = ((k_col <= q_col) & real[:, None, None, :]) | (k_col == q_col)  # (B, 1, T, S)
        x = self.tok_emb(tokens) + self.pos_emb(positions)                  # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, mask, None if cache is None else cache["kv"][i], S - T)
        x = self.ln_f(x)
        return self.lm_head(x), self.value_head(x).squeeze(-1)


def token_logprobs(logits, targets, temperature: float):
    """log pi(y_t | y_<t) of the chosen tokens, from logits divided by the sampling temperature.
    logits (..., V), targets (...) -> (...). A PAD target (id V) has no logit: it reads a dummy
    value that callers mask out."""
    targets = targets.clamp(max=logits.shape[-1] - 1).unsqueeze(-1)
    return torch.log_softmax(logits / temperature, dim=-1).gather(-1, targets).squeeze(-1)


@torch.inference_mode()
def sample(model, prompts, max_new_tokens: int, temperature: float, eos_id: int):
    """y ~ pi_theta(. | x) with a KV cache, each row stopping at its first EOS.

    prompts (B, P) left-padded -> tokens (B, L), logprobs (B, L) with L <= max_new_tokens.
    After a row's EOS its tokens are PAD and its log-probs 0. Each step feeds one new token per row
    and reads the keys/values of all earlier ones from the cache instead of recomputing them.
    """
    (B, P), c = prompts.shape, model.cfg
    hs, pad_id = c.d_model // c.n_head, c.vocab_size
    kv = model.lm_head.weight.new_zeros(c.n_layer, 2, B, c.n_head, P + max_new_tokens, hs)
    cache = {"real": prompts[:, :0] != pad_id, "kv": kv}   # nothing real yet; kv filled as it goes
    logits = model(prompts, cache)[0][:, -1]                                # (B, V) the whole prompt
    done = torch.zeros(B, dtype=torch.bool, device=prompts.device)
    tokens, lps = [], []
    for t in range(max_new_tokens):
        logp = torch.log_softmax(logits / temperature, dim=-1)              # log pi at temperature T
        nxt = torch.multinomial(logp.exp(), 1).squeeze(1)                   # (B,)
        lp = logp.gather(1, nxt[:, None]).squeeze(1)
        nxt = nxt.masked_fill(done, pad_id)
        tokens.append(nxt)
        lps.append(lp.masked_fill(done, 0.0))
        done = done | (nxt == eos_id)
        if bool(done.all()) or t == max_new_tokens - 1:    # every row ended, or no token left to draw
            break
        logits = model(nxt[:, None], cache)[0][:, -1]       # one new token per row, (B, V)
    return torch.stack(tokens, 1), torch.stack(lps, 1)
