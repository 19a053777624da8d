"""The same code on one CUDA GPU (skipped where there is none)."""
import json

import pytest
import torch

from conftest import TINY, run
from minippo.model import ModelConfig, Policy, logprobs, sample

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


def test_sampled_logprobs_equal_teacher_forced_on_cuda():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    model = Policy(ModelConfig(vocab_size=11, block_size=40, n_layer=2, n_head=2, d_model=32)).cuda().eval()
    prompts = torch.randint(1, 11, (32, 4), device="cuda")
    prompts[:8, :2] = 11
    for temperature in (0.7, 1.0, 1.5):
        tokens, sampled = sample(model, prompts, 30, temperature, eos_id=0)
        forced = logprobs(model, torch.cat([prompts, tokens], 1), temperature)[:, 3:]
        mask = tokens != 11
        assert (forced - sampled)[mask].abs().max() <= 1e-4


def test_short_run_on_cuda_learns(tmp_path):
    run("--out", str(tmp_path), *TINY, "--iters", "12", "--device", "cuda")
    m = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert sum(r["reward"] for r in m[-3:]) / 3 > m[0]["reward"] + 0.3
