"""The GPU sampler's static loop (minippo/extras/cuda_graphs.py), run on the CPU without graphs: the same
stopping as the eager loop, draws from the right law, and buffers that carry nothing from one call to
the next. Its log-probs against teacher forcing and its length are checked beside model.sample()'s in
test_model.py, its decode step (model.decode_step) there too, and its CUDA-graph replay in test_cuda.py
where a GPU is present."""
import copy
import gc
import weakref

import pytest
import torch

from minippo.extras.cuda_graphs import graph_sample
from test_model import check_against_teacher_forcing

PAD, EOS = 11, 0


def eos_biased(model):
    """A copy whose EOS logit is about +10: every row ends within a few tokens."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        model.ln_f.bias.fill_(1.0)
        model.lm_head.weight[EOS] += 0.3
    return model


def check_draws_follow_softmax(model, sampler, device="cpu"):
    """The first token's frequencies over 20,000 rows against softmax(logits / T), exactly known."""
    prompt = torch.tensor([[3, 1, 4]], device=device)
    with torch.no_grad():
        p = torch.softmax(model(prompt)[0][0, -1] / 1.3, -1).double().cpu()
    tokens, _ = sampler(model, prompt.expand(20000, 3), 1, 1.3, EOS)
    freq = torch.bincount(tokens[:, 0].cpu(), minlength=11).double() / 20000
    assert ((freq - p).abs() <= 4 * (p * (1 - p) / 20000).sqrt() + 1e-3).all()   # 4 standard errors


def test_length_is_the_step_where_the_last_row_ended(peaked_model):
    model = eos_biased(peaked_model)
    torch.manual_seed(4)
    for _ in range(3):
        prompts = torch.randint(1, 11, (16, 4))
        tokens, sampled = graph_sample(model, prompts, 30, 1.0, EOS)
        first_eos = (tokens == EOS).int().argmax(1)
        assert (tokens == EOS).any(1).all() and tokens.shape[1] == int(first_eos.max()) + 1
        assert tokens.shape[1] < 30
        check_against_teacher_forcing(model, prompts, tokens, sampled, 1.0)


def test_buffers_carry_nothing_between_calls(peaked_model):
    """One model's Sampler, reused: a run whose rows all ended, then longer and shorter prompts."""
    model = eos_biased(peaked_model)
    torch.manual_seed(5)
    for P, n in ((6, 30), (3, 30), (4, 36)):                   # the last fills block_size (40)
        prompts = torch.randint(1, 11, (16, P))
        prompts[:4, :2] = PAD
        for m in (model, peaked_model):
            tokens, sampled = graph_sample(m, prompts, n, 1.0, EOS)
            check_against_teacher_forcing(m, prompts, tokens, sampled, 1.0)


def test_autocast_does_not_reach_the_sampler(peaked_model):
    prompts = torch.randint(1, 11, (8, 4))
    with torch.autocast("cpu", torch.bfloat16):
        tokens, sampled = graph_sample(peaked_model, prompts, 20, 1.0, EOS)
    check_against_teacher_forcing(peaked_model, prompts, tokens, sampled, 1.0)   # fp32 numbers


def test_a_deleted_model_is_freed_with_its_samplers(peaked_model):
    model = copy.deepcopy(peaked_model)
    graph_sample(model, torch.randint(1, 11, (4, 3)), 5, 1.0, EOS)
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None


def test_static_loop_draws_from_softmax(peaked_model):
    torch.manual_seed(5)
    check_draws_follow_softmax(peaked_model, graph_sample)


def test_graph_sample_refuses_to_overrun_the_position_table(peaked_model):
    with pytest.raises(ValueError, match="block_size"):
        graph_sample(peaked_model, torch.ones(2, 10, dtype=torch.long), 31, 1.0, EOS)
