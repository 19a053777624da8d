"""The GPU sampler's static loop (minippo/extras/cuda_graphs.py), run on the CPU without graphs: the same
log-probs as teacher forcing, the same stopping as the eager loop, draws from the right law, and
buffers that carry nothing from one call to the next. Its CUDA-graph replay is checked in
test_cuda.py where a GPU is present."""
import copy
import gc
import weakref

import pytest
import torch

from minippo.extras.cuda_graphs import STEPS_PER_GRAPH, Sampler, graph_sample, static_decode
from conftest import logprobs

PAD, EOS = 11, 0


def static_loop(model, prompts, max_new_tokens, temperature, eos_id):
    """Through graph_sample, so one model's Sampler (and its buffers) serves repeated calls."""
    return graph_sample(model, prompts, max_new_tokens, temperature, eos_id)


def check_against_teacher_forcing(model, prompts, tokens, sampled, temperature):
    assert (tokens[:, 0] != PAD).all()                          # every row starts with a real token
    for row in tokens:                                          # PAD only after the first EOS
        eos = (row == EOS).nonzero()
        if len(eos):
            assert (row[eos[0, 0] + 1:] == PAD).all()
    P = prompts.shape[1]
    forced = logprobs(model, torch.cat([prompts, tokens], 1), temperature)[:, P - 1:]
    mask = tokens != PAD
    assert (forced - sampled)[mask].abs().max() <= 1e-5
    assert (sampled[~mask] == 0).all()


def eos_biased(model):
    """A copy whose EOS logit is about +10: every row ends within a few tokens."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.ln_f.bias.fill_(1.0)
        model.lm_head.weight[EOS] += 0.3
    return model


def test_static_decode_gives_the_eager_decode_logits(peaked_model):
    torch.manual_seed(2)
    prompts = torch.randint(1, 11, (4, 5))
    prompts[0, :2] = PAD                                        # a left-padded row
    rest = torch.randint(1, 11, (4, 12))
    rest[1, 6:] = PAD                                           # a row that ended
    with torch.inference_mode():
        eager = peaked_model.new_cache(4, 17)
        peaked_model(prompts, eager)
        s = Sampler(peaked_model, 4, 1.0, EOS).s
        cache = {"len": 0, "real": s["real"], "kv": s["kv"]}
        peaked_model(prompts, cache)
        s["pos"].copy_(cache["pos"])
        s["col"].fill_(5)
        for t in range(12):
            expect = peaked_model.next_logits(rest[:, t], eager)
            got = static_decode(peaked_model, rest[:, t], s)
            assert torch.allclose(got, expect, atol=1e-5)
        assert torch.equal(s["pos"], eager["pos"])


@pytest.mark.parametrize("temperature", [0.7, 1.0, 1.5])
def test_static_loop_logprobs_equal_teacher_forced(peaked_model, temperature):
    torch.manual_seed(3)
    prompts = torch.randint(1, 11, (32, 4))
    prompts[:8, :2] = PAD
    tokens, sampled = static_loop(peaked_model, prompts, 30, temperature, EOS)
    assert (tokens == EOS).any(1).float().mean() > 0.5          # most rows stopped at EOS
    check_against_teacher_forcing(peaked_model, prompts, tokens, sampled, temperature)


def test_length_is_the_step_where_the_last_row_ended(peaked_model):
    model = eos_biased(peaked_model)
    torch.manual_seed(4)
    for _ in range(3):
        prompts = torch.randint(1, 11, (16, 4))
        tokens, sampled = static_loop(model, prompts, 30, 1.0, EOS)
        first_eos = (tokens == EOS).int().argmax(1)
        assert (tokens == EOS).any(1).all() and tokens.shape[1] == int(first_eos.max()) + 1
        assert tokens.shape[1] < 30
        check_against_teacher_forcing(model, prompts, tokens, sampled, 1.0)


def test_buffers_carry_nothing_between_calls(peaked_model):
    """One Sampler, reused: a run whose rows all ended, then longer and shorter prompts."""
    model = eos_biased(peaked_model)
    torch.manual_seed(5)
    for P, n in ((6, 30), (3, 30), (4, 36)):                   # the last fills block_size (40)
        prompts = torch.randint(1, 11, (16, P))
        prompts[:4, :2] = PAD
        tokens, sampled = static_loop(model, prompts, n, 1.0, EOS)
        check_against_teacher_forcing(model, prompts, tokens, sampled, 1.0)
        tokens, sampled = static_loop(peaked_model, prompts, n, 1.0, EOS)
        check_against_teacher_forcing(peaked_model, prompts, tokens, sampled, 1.0)


def test_autocast_does_not_reach_the_sampler(peaked_model):
    prompts = torch.randint(1, 11, (8, 4))
    with torch.autocast("cpu", torch.bfloat16):
        tokens, sampled = static_loop(peaked_model, prompts, 20, 1.0, EOS)
    check_against_teacher_forcing(peaked_model, prompts, tokens, sampled, 1.0)   # fp32 numbers


def test_a_deleted_model_is_freed_with_its_samplers(peaked_model):
    model = copy.deepcopy(peaked_model)
    static_loop(model, torch.randint(1, 11, (4, 3)), 5, 1.0, EOS)
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None


@pytest.mark.parametrize("max_new_tokens", [1, STEPS_PER_GRAPH, STEPS_PER_GRAPH + 3])
def test_static_loop_runs_exactly_max_new_tokens_steps(peaked_model, max_new_tokens):
    prompts = torch.randint(1, 11, (6, 3))
    tokens, _ = static_loop(peaked_model, prompts, max_new_tokens, 1.0, eos_id=-1)   # never stops
    assert tokens.shape == (6, max_new_tokens) and (tokens != PAD).all()


def test_static_loop_draws_from_softmax(peaked_model):
    """The first token's frequencies over 20,000 rows against softmax(logits / T), exactly known."""
    torch.manual_seed(5)
    prompt = torch.tensor([[3, 1, 4]])
    T = 1.3
    with torch.no_grad():
        p = torch.softmax(peaked_model(prompt)[0][0, -1] / T, -1)
    tokens, _ = static_loop(peaked_model, prompt.expand(20000, 3), 1, T, EOS)
    freq = torch.bincount(tokens[:, 0], minlength=11).double() / 20000
    # 4 standard errors of a frequency, per token
    assert ((freq - p.double()).abs() <= 4 * (p.double() * (1 - p.double()) / 20000).sqrt() + 1e-3).all()


def test_graph_sample_refuses_to_overrun_the_position_table(peaked_model):
    with pytest.raises(ValueError, match="block_size"):
        graph_sample(peaked_model, torch.ones(2, 10, dtype=torch.long), 31, 1.0, EOS)

