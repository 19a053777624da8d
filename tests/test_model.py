"""The policy: causal masking, the KV cache, temperature-consistent log-probs, padding, value head."""
import math
from types import SimpleNamespace

import pytest
import torch

from minippo.config import Config
from minippo.model import Block, ModelConfig, Policy, sample, token_logprobs
from minippo.ppo import update
from minippo.rollout import response_logprobs

PAD, EOS = 11, 0


def logprobs(model, tokens, temperature: float):
    """Teacher-forced log-probs of tokens[:, 1:] given their prefixes: (B, T) -> (B, T-1)."""
    return response_logprobs(model, tokens[:, :1], tokens[:, 1:], temperature)[0]


@pytest.fixture
def peaked_model():
    """A small random policy whose next-token distributions are far from uniform."""
    torch.manual_seed(0)
    model = Policy(ModelConfig(vocab_size=11, block_size=40, n_layer=2, n_head=2, d_model=32))
    with torch.no_grad():
        model.lm_head.weight.normal_(0, 0.3)
        model.tok_emb.weight.normal_(0, 1.0)
    return model.eval()


def test_value_head_is_exactly_zero_at_init(peaked_model):
    assert torch.equal(peaked_model(torch.randint(0, 11, (3, 10)))[1], torch.zeros(3, 10))


def test_the_value_loss_trains_the_shared_trunk():
    """Zero advantages, no entropy bonus: one PPO step moves a transformer block through the value loss alone
    (0.5 (V - R)^2 = 0.5 per token, 5 tokens), so V reads the trunk's hidden states, not a detached copy."""
    torch.manual_seed(0)
    policy = Policy(ModelConfig(vocab_size=3, block_size=12, n_layer=1, n_head=2, d_model=16))
    torch.nn.init.normal_(policy.value_head.weight)
    prompt_ids, tokens = torch.randint(0, 3, (4, 2)), torch.randint(0, 3, (4, 5))
    with torch.no_grad():
        old_logprobs, old_values, _ = response_logprobs(policy, prompt_ids, tokens, 1.0)
    ones = torch.ones(4, 5)
    batch = dict(prompt_ids=prompt_ids, tokens=tokens, mask=ones, old_logprobs=old_logprobs)
    batch.update(old_values=old_values, advantages=0 * ones, returns=old_values + 1)
    before = policy.blocks[0].mlp[0].weight.clone()
    cfg = Config(algo="ppo", epochs=1, minibatch=4, ent_coef=0.0)
    # plain SGD, not torch.optim: its first use imports torch._dynamo
    sgd = SimpleNamespace(zero_grad=policy.zero_grad)
    sgd.step = lambda: [p.data.sub_(p.grad / 10) for p in policy.parameters() if p.grad is not None]
    steps = update(policy, sgd, batch, cfg, beta=0.1)
    assert steps[0]["vf_loss"] == pytest.approx(2.5) and steps[0]["pg_loss"] == 0
    assert (policy.blocks[0].mlp[0].weight - before).abs().max() > 1e-6


def test_attention_is_the_softmax_of_q_k_over_the_square_root_of_the_head_size_times_v():
    """A block's output against its attention by hand, softmax(q k^T / sqrt(hs)) v, hs = 16 / 2 heads
    = 8, where the scale 1, 1 / sqrt(16) or 1 / 8 moves the output by more than 0.2 (seed 5)."""
    torch.manual_seed(5)
    block = Block(ModelConfig(3, n_head=2, d_model=16))
    x, causal = torch.randn(1, 5, 16), torch.ones(5, 5).tril() > 0
    with torch.no_grad():  # q k^T / sqrt(hs) of std 2.5 (GPT-2's init, 0.02: ~0, any scale alike)
        block.qkv.weight.normal_(0, 0.4)
    q, k, v = block.qkv(block.ln1(x)).view(1, 5, 3, 2, 8).permute(2, 0, 3, 1, 4)  # (1, 2, 5, 8)

    def attend(scale):  # the rest of the block as it is
        w = torch.softmax((scale * q @ k.transpose(2, 3)).masked_fill(~causal, -math.inf), -1)
        h = x + block.proj((w @ v).transpose(1, 2).reshape(1, 5, 16))
        return h + block.mlp(block.ln2(h))

    out = block(x, causal)
    assert torch.allclose(out, attend(8**-0.5), atol=1e-6)
    assert min((out - attend(s)).abs().max() for s in (1.0, 16**-0.5, 1 / 8)) > 0.2


def test_causal_masking(peaked_model):
    torch.manual_seed(1)
    tokens = torch.randint(0, 11, (2, 16))
    logits, _ = peaked_model(tokens)
    for t in range(15):
        changed = (tokens + (torch.arange(16) == t + 1).long()) % 11         # token t + 1 changed
        new_logits, _ = peaked_model(changed)
        assert torch.equal(new_logits[:, :t + 1], logits[:, :t + 1])       # past untouched
        assert not torch.allclose(new_logits[:, t + 1], logits[:, t + 1])  # the change is seen


def test_prefill_then_cached_steps_give_the_logits_of_one_pass(peaked_model):
    """model(prompts, cache), then one token at a time through the cache (what sample() runs), against
    one pass over the whole sequence, with a left-padded row and a row that ended (PAD)."""
    torch.manual_seed(2)
    prompts = torch.randint(1, 11, (4, 5))
    prompts[0, :2] = PAD                                        # a left-padded row
    rest = torch.randint(1, 11, (4, 12))
    rest[1, 6:] = PAD                                           # a row that ended
    seq = torch.cat([prompts, rest], 1)                         # (4, 17)
    with torch.inference_mode():
        kv = torch.zeros(2, 2, 4, 2, 40, 16)                    # (layers, k/v, B, nh, longer than used, hs)
        cache = {"real": prompts[:, :0] != PAD, "kv": kv}
        steps = [peaked_model(prompts, cache)[0]]               # (4, 5, V) the prompt
        steps += [peaked_model(rest[:, t:t + 1], cache)[0] for t in range(12)]
        full = peaked_model(seq)[0]                             # (4, 17, V)
    real = seq != PAD
    assert torch.allclose(torch.cat(steps, 1)[real], full[real], atol=1e-5)
    assert torch.equal(cache["real"], real) and (kv[..., 17:, :] == 0).all()


@pytest.mark.parametrize("temperature", [0.7, 1.0, 1.5])
def test_sampled_logprobs_equal_teacher_forced(peaked_model, temperature):
    torch.manual_seed(3)
    prompts = torch.randint(1, 11, (32, 4))
    prompts[:8, :2] = PAD
    tokens, sampled = sample(peaked_model, prompts, 30, temperature, eos_id=EOS)
    assert (tokens == EOS).any(1).float().mean() > 0.5          # most rows stopped at EOS
    check_against_teacher_forcing(peaked_model, prompts, tokens, sampled, temperature)


def check_against_teacher_forcing(model, prompts, tokens, sampled, temperature, atol=1e-5):
    """model.sample()'s log-probs equal teacher-forced ones; PAD (log-prob 0) exactly after a row's
    first EOS."""
    eos = tokens == EOS
    assert torch.equal(tokens == PAD, eos.cumsum(1) - eos.long() > 0)
    forced = logprobs(model, torch.cat([prompts, tokens], 1), temperature)
    forced = forced[:, prompts.shape[1] - 1 :]
    assert (forced - sampled)[tokens != PAD].abs().max() <= atol
    assert (sampled[tokens == PAD] == 0).all()


@pytest.mark.parametrize("max_new_tokens", [1, 11])
def test_rows_that_never_end_get_exactly_max_new_tokens(peaked_model, max_new_tokens):
    tokens, _ = sample(peaked_model, torch.randint(1, 11, (6, 3)), max_new_tokens, 1.0, eos_id=-1)
    assert tokens.shape == (6, max_new_tokens) and (tokens != PAD).all()


@pytest.mark.parametrize("temperature", [0.7, 1.3])
def test_sampler_draws_from_softmax_of_logits_over_temperature(peaked_model, temperature):
    """sample()'s first token over 20,000 copies of one prompt: each token's frequency within 5 binomial standard
    errors of softmax(logits / T), a distribution more than 10 standard errors from softmax(logits) (T ignored)."""
    n, prompt = 20000, torch.tensor([[5]])
    logits = peaked_model(prompt)[0][0, -1].detach().double()
    p = torch.softmax(logits / temperature, -1)
    torch.manual_seed(7)
    tokens, _ = sample(peaked_model, prompt.repeat(n, 1), 1, temperature, eos_id=EOS)
    se = (p * (1 - p) / n).sqrt()
    assert ((torch.bincount(tokens[:, 0], minlength=11) / n - p).abs() <= 5 * se).all()
    assert ((torch.softmax(logits, -1) - p).abs() > 10 * se).any()


def test_temperature_divides_the_logits():
    logits, y = torch.randn(5, 7), torch.randint(0, 7, (5,))
    for t in (0.5, 2.0):
        expected = torch.log_softmax(logits / t, -1)[torch.arange(5), y]
        assert torch.allclose(token_logprobs(logits, y, t), expected)


def test_logprobs_unaffected_by_padding_in_the_batch(peaked_model):
    torch.manual_seed(4)
    seq, other = torch.randint(0, 11, (1, 12)), torch.randint(0, 11, (1, 17))
    padded = torch.cat([torch.full((1, 5), PAD), seq], 1)       # left-padded beside a longer row
    batch = logprobs(peaked_model, torch.cat([padded, other]), 1.0)
    assert torch.allclose(batch[0, 5:], logprobs(peaked_model, seq, 1.0)[0], atol=1e-6)
