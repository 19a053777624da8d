import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minippo.model import ModelConfig, Policy  # noqa: E402


@pytest.fixture
def peaked_model():
    """A small random policy whose next-token distributions are far from uniform."""
    torch.manual_seed(0)
    model = Policy(ModelConfig(vocab_size=11, block_size=40, n_layer=2, n_head=2, d_model=32))
    with torch.no_grad():
        model.lm_head.weight.normal_(0, 0.3)
        model.tok_emb.weight.normal_(0, 1.0)
    return model.eval()
