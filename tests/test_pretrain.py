"""A seeded pretraining (seed 0: torch, corpus) must learn the grammar. Seeds 0-3: the loss falls from 3.33 (log 28) to
0.42 (0.8: room for another CPU's rounding); 48-68% of 36 draws of 128 lines parse (30%: 5 binomial sd below 53%)."""
import pytest
import torch

from minippo.extras.files import seed_everything
from minippo.config import Config
from minippo.data import make_corpus, prepare
from minippo.model import ModelConfig, Policy
from minippo.extras.grammar import grammatical_fraction
from minippo.extras.reference import sample_lines, val_loss
from minippo.pretrain import learning_rate, pretrain


def test_pretraining_lowers_val_loss_and_raises_grammaticality():
    cfg = Config(pretrain_steps=250, pretrain_lr=1e-2, corpus_lines=4000)
    seed_everything(0)
    vocab, train_ids, val_ids, _ = prepare(make_corpus(cfg.corpus_lines, seed=0))     # 200 held out
    model = Policy(ModelConfig(vocab.size, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.d_model))
    before_loss = val_loss(model, val_ids, vocab.eos_id, cfg.block_size)
    before_gram = grammatical_fraction(sample_lines(model, vocab, 128))
    pretrain(model, train_ids, vocab.eos_id, cfg)
    after_loss = val_loss(model, val_ids, vocab.eos_id, cfg.block_size)
    after_gram = grammatical_fraction(sample_lines(model, vocab, 128))
    assert before_loss > 3.0 and after_loss < 0.8, (before_loss, after_loss)  # 3.33, 0.42
    assert before_gram == 0.0 and after_gram > 0.3, (before_gram, after_gram)  # 0, 0.53


def test_learning_rate_schedule():
    lrs = [learning_rate(s, 100, 1.0) for s in range(100)]
    assert lrs[0] < lrs[4] == 1.0 and abs(lrs[-1] - 0.1) < 0.01
    assert all(a >= b for a, b in zip(lrs[5:], lrs[6:]))


def test_a_nan_never_reaches_the_pretrained_weights(monkeypatch):
    import minippo.pretrain as P
    cfg = Config(corpus_lines=400, pretrain_steps=2)
    vocab, ids, _, _ = prepare(make_corpus(cfg.corpus_lines, seed=0))
    model = Policy(ModelConfig(vocab.size, cfg.block_size, cfg.n_layer, cfg.n_head, cfg.d_model))
    loss = P.lm_loss
    monkeypatch.setattr(P, "lm_loss", lambda m, x, y: loss(m, x, y) * float("nan"))
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(FloatingPointError, match="non-finite"):
        P.pretrain(model, ids, vocab.eos_id, cfg)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
