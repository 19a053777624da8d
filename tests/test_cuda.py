"""The same code on one CUDA GPU (skipped where there is none)."""
import json

import pytest
import torch

from conftest import TINY, run
from minippo.extras.cuda_graphs import graph_sample
from minippo.model import ModelConfig, Policy, sample
from test_cuda_graphs import check_draws_follow_softmax
from test_model import check_against_teacher_forcing

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


def cuda_model(seed):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(seed)
    return Policy(ModelConfig(vocab_size=11, block_size=40, n_layer=2, n_head=2, d_model=32)).cuda().eval()


@pytest.mark.parametrize("sampler", [sample, graph_sample], ids=["eager", "cuda-graphs"])
def test_sampled_logprobs_equal_teacher_forced_on_cuda(sampler):
    model = cuda_model(0)
    prompts = torch.randint(1, 11, (32, 4), device="cuda")
    prompts[:8, :2] = 11
    for temperature in (0.7, 1.0, 1.5):
        tokens, sampled = sampler(model, prompts, 30, temperature, eos_id=0)
        check_against_teacher_forcing(model, prompts, tokens, sampled, temperature, atol=1e-4)


def test_short_run_on_cuda_learns(tmp_path):
    run("--out", str(tmp_path), *TINY, "--iters", "12", "--device", "cuda")
    m = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert sum(r["reward"] for r in m[-3:]) / 3 > m[0]["reward"] + 0.3


def test_cuda_graph_replay_sees_updated_weights_and_exact_law():
    """Graphs record weight addresses, not values: after an in-place update (what optimizer.step()
    does) the replayed loop must sample from the new policy. And its draws follow softmax(logits/T)."""
    model = cuda_model(1)
    prompts = torch.randint(1, 11, (64, 5), device="cuda")
    for _ in range(2):
        tokens, sampled = graph_sample(model, prompts, 20, 1.0, eos_id=0)
        check_against_teacher_forcing(model, prompts, tokens, sampled, 1.0, atol=1e-4)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.5 * torch.randn_like(p))
    for n in (1, 8, 11):                                   # one-step graph, chunk graph, both
        tokens, _ = graph_sample(model, prompts, n, 1.0, eos_id=-1)
        assert tokens.shape == (64, n) and (tokens != 11).all()
    check_draws_follow_softmax(model, graph_sample, "cuda")


def test_bench_on_cuda_reports_graphs():
    from minippo.extras.bench import Config, bench
    r = bench(Config(algo="reinforce", batch=16, max_new_tokens=16), torch.device("cuda"), iters=1, warmup=1)
    assert r["cuda_graph_speedup"] > 0 and r["completions_per_s"] > 0


@pytest.mark.parametrize("algo", ["ppo", "reinforce"])
def test_short_bf16_run_on_cuda_learns(tmp_path, algo):
    run("--out", str(tmp_path), *TINY, "--iters", "12", "--device", "cuda", "--bf16", "--algo", algo)
    m = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert sum(r["reward"] for r in m[-3:]) / 3 > m[0]["reward"] + 0.3
