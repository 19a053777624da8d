"""The same eager code on one CUDA GPU (skipped where there is none): the sampler, a short training
run and the benchmark with --device cuda."""
import json

import pytest
import torch

from conftest import TINY, run
from minippo.model import ModelConfig, Policy, sample
from test_model import check_against_teacher_forcing

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


def cuda_model(seed):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(seed)
    model = Policy(ModelConfig(vocab_size=11, block_size=40, n_layer=2, n_head=2, d_model=32))
    return model.cuda().eval()


def test_sampled_logprobs_equal_teacher_forced_on_cuda():
    model = cuda_model(0)
    prompts = torch.randint(1, 11, (32, 4), device="cuda")
    prompts[:8, :2] = 11                                   # left padding
    for temperature in (0.7, 1.0, 1.5):
        tokens, sampled = sample(model, prompts, 30, temperature, eos_id=0)
        check_against_teacher_forcing(model, prompts, tokens, sampled, temperature, atol=1e-4)


def test_draws_on_cuda_follow_softmax():
    """The first token's frequencies over 20,000 rows against softmax(logits / T), exactly known."""
    model, prompt, n = cuda_model(1), torch.tensor([[3, 1, 4]], device="cuda"), 20000
    with torch.no_grad():
        p = torch.softmax(model(prompt)[0][0, -1] / 1.3, -1).double().cpu()
    tokens, _ = sample(model, prompt.expand(n, 3), 1, 1.3, eos_id=0)
    freq = torch.bincount(tokens[:, 0].cpu(), minlength=11).double() / n
    assert ((freq - p).abs() <= 4 * (p * (1 - p) / n).sqrt() + 1e-3).all()   # 4 standard errors


def test_short_run_on_cuda_learns(tmp_path):
    run("--out", str(tmp_path), *TINY, "--iters", "12", "--device", "cuda")
    m = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert sum(r["reward"] for r in m[-3:]) / 3 > m[0]["reward"] + 0.3


def test_bench_on_cuda_splits_the_iteration():
    from minippo.extras.bench import Config, bench
    cfg = Config(algo="reinforce", batch=16, minibatch=16, max_new_tokens=16)
    r = bench(cfg, torch.device("cuda"), iters=1, warmup=1)
    assert r["device"].startswith("cuda") and r["peak_cuda_mb"] > 0
    seconds = sum(p["seconds"] for p in r["phases"].values())
    assert r["seconds_per_iteration"] == pytest.approx(seconds)
