"""The policy: causal masking, the KV cache, temperature-consistent log-probs, padding, value head."""
import pytest
import torch

from conftest import logprobs
from minippo.model import sample, token_logprobs

PAD, EOS = 11, 0


def test_value_head_is_exactly_zero_at_init(peaked_model):
    tokens = torch.randint(0, 11, (3, 10))
    _, values = peaked_model(tokens)
    assert torch.equal(values, torch.zeros(3, 10))


def test_causal_masking(peaked_model):
    torch.manual_seed(1)
    tokens = torch.randint(0, 11, (2, 16))
    logits, _ = peaked_model(tokens)
    for t in range(15):
        changed = tokens.clone()
        changed[:, t + 1] = (changed[:, t + 1] + 1) % 11
        new_logits, _ = peaked_model(changed)
        assert torch.equal(new_logits[:, :t + 1], logits[:, :t + 1])       # past untouched
        assert not torch.allclose(new_logits[:, t + 1], logits[:, t + 1])  # the change is seen


def test_kv_cache_gives_the_same_logits_as_recomputing(peaked_model):
    torch.manual_seed(2)
    prompts = torch.randint(1, 11, (4, 5))
    prompts[0, :2] = PAD                                        # a left-padded row
    rest = torch.randint(1, 11, (4, 12))
    full_logits, _ = peaked_model(torch.cat([prompts, rest], 1))
    cache = peaked_model.new_cache(4, 17)
    step_logits = [peaked_model(prompts, cache)[0]]
    for t in range(12):
        step_logits.append(peaked_model(rest[:, t:t + 1], cache)[0])
    cached = torch.cat(step_logits, 1)
    real = torch.cat([prompts, rest], 1) != PAD
    assert torch.allclose(cached[real], full_logits[real], atol=1e-5)


@pytest.mark.parametrize("temperature", [0.7, 1.0, 1.5])
def test_sampled_logprobs_equal_teacher_forced(peaked_model, temperature):
    torch.manual_seed(3)
    prompts = torch.randint(1, 11, (32, 4))
    prompts[:8, :2] = PAD
    tokens, sampled = sample(peaked_model, prompts, 30, temperature, eos_id=EOS)
    assert (tokens == EOS).any(1).float().mean() > 0.5          # most rows stopped at EOS
    for row in tokens:                                          # PAD only after the first EOS
        eos = (row == EOS).nonzero()
        if len(eos):
            assert (row[eos[0, 0] + 1:] == PAD).all()
    forced = logprobs(peaked_model, torch.cat([prompts, tokens], 1), temperature)[:, 3:]
    mask = tokens != PAD
    assert (forced - sampled)[mask].abs().max() <= 1e-5
    assert (sampled[~mask] == 0).all()


def test_temperature_divides_the_logits():
    logits = torch.randn(5, 7)
    targets = torch.randint(0, 7, (5,))
    for t in (0.5, 2.0):
        expect = torch.log_softmax(logits / t, -1)[torch.arange(5), targets]
        assert torch.allclose(token_logprobs(logits, targets, t), expect)


def test_logprobs_unaffected_by_padding_in_the_batch(peaked_model):
    torch.manual_seed(4)
    seq = torch.randint(0, 11, (1, 12))
    alone = logprobs(peaked_model, seq, 1.0)
    other = torch.randint(0, 11, (1, 17))
    padded = torch.cat([torch.full((1, 5), PAD), seq], 1)       # left-padded beside a longer row
    batch = logprobs(peaked_model, torch.cat([padded, other]), 1.0)
    assert torch.allclose(batch[0, 5:], alone[0], atol=1e-6)


def test_a_rescored_sampler_gives_the_same_tokens_and_teacher_forced_logprobs(peaked_model):
    """What train.py --bf16 passes REINFORCE on a GPU: log pi_old recomputed by teacher forcing."""
    from minippo.extras.launch import rescored
    prompts = torch.randint(1, 11, (16, 4), generator=torch.Generator().manual_seed(5))
    torch.manual_seed(6)
    tokens, sampled = sample(peaked_model, prompts, 20, 1.3, eos_id=EOS)
    torch.manual_seed(6)
    tokens2, forced = rescored(sample)(peaked_model, prompts, 20, 1.3, EOS)
    assert torch.equal(tokens, tokens2) and (tokens == PAD).any()
    assert (forced - sampled).abs().max() <= 1e-5 and (forced[tokens == PAD] == 0).all()
