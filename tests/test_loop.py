"""End-to-end invariants of one iteration of the loop (minippo/ppo.py), checked against an
independent computation: a naive per-response forward pass of each unpadded sequence.

- the KL the loop penalises is the teacher-forced KL of the sampled responses against the frozen
  reference, and it is not zero once the policy differs from pi_ref;
- the mask covers exactly the response tokens, through the EOS;
- the logged KL is per response (a sum over tokens, averaged over responses);
- between beta = 0 and beta > 0 the gradient of an update differs by exactly beta times the gradient
  of the KL term (PPO: the KL to go times grad log pi of each token; REINFORCE: the response's KL,
  less the others' mean, times grad log pi(y|x));
- the adaptive beta moves with the logged per-response KL.
"""
import pytest
import torch

from minippo import ppo
from minippo.config import Config
from minippo.data import Vocab
from minippo.model import ModelConfig, Policy
from minippo.rl import update_beta

VOCAB = Vocab("\nab")                       # EOS = 0, a = 1, b = 2, PAD = 3
PROMPTS = ["a", "ab", "bba"]                # prompts of different lengths: left padding is exercised
B, T = 12, 1.3


def reward(x, y):                           # any bounded function of the two strings
    return (y.count("a") - y.count("b")) / (1 + len(y))


def tiny_policy(seed, scale):
    torch.manual_seed(seed)
    model = Policy(ModelConfig(vocab_size=3, block_size=16, n_layer=1, n_head=2, d_model=16))
    with torch.no_grad():                   # V stays 0 (its head is zero-initialised)
        for name, p in model.named_parameters():
            if p.dim() > 1 and not name.startswith("value_head"):
                p.normal_(0, scale)
    return model


@pytest.fixture(scope="module")
def models():
    policy = tiny_policy(0, 0.5)
    ref = tiny_policy(0, 0.5)
    with torch.no_grad():                   # the policy has moved away from pi_ref
        policy.lm_head.weight.add_(0.8 * torch.randn_like(policy.lm_head.weight))
    return policy, ref.requires_grad_(False).eval()


def config(algo, **kw):
    settings = dict(batch=B, minibatch=B, epochs=1, max_new_tokens=6, temperature=T, lam=1.0,
                    gamma=1.0, vf_coef=0.0, ent_coef=0.0, max_grad_norm=1e9)
    return Config(algo=algo, **{**settings, **kw})


def one_iteration(policy, ref, cfg, beta, monkeypatch, seed=1):
    """ppo.iteration with a zero learning rate; returns its output, the batch it handed to
    update() and the gradient of that update (left in .grad)."""
    seen = {}
    real_update = ppo.update

    def spy(policy, optimizer, batch, cfg, beta, average_gradients):
        seen.update(batch)
        return real_update(policy, optimizer, batch, cfg, beta, average_gradients)
    monkeypatch.setattr(ppo, "update", spy)
    torch.manual_seed(seed)
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.0)     # read the gradient, move nothing
    out = ppo.iteration(policy, ref, optimizer, VOCAB, PROMPTS, reward, cfg, beta)
    return out, seen, trunk_grad(policy)


def trunk_grad(policy):
    """The gradient of every parameter but the value head's (0 where there is none)."""
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten()
                      for name, p in policy.named_parameters() if not name.startswith("value_head")])


def response_length(row):
    """Tokens of a response through its first EOS (all of them when it never ended)."""
    eos = (row == VOCAB.eos_id).nonzero()
    return int(eos[0, 0]) + 1 if len(eos) else int((row != VOCAB.pad_id).sum())


def naive_logprobs(model, x, response):
    """log pi(y_t | x, y_<t) at T of each response token, from one unpadded sequence."""
    seq = torch.tensor([[VOCAB.eos_id] + VOCAB.encode(x) + response])
    logits, _ = model(seq)
    logp = torch.log_softmax(logits[0, :-1] / T, -1).gather(1, seq[0, 1:, None])[:, 0]
    return logp[-len(response):]


def naive_kl(policy, ref, xs, tokens):
    """Per token log pi - log pi_ref of each response, through its EOS; a list of (n_b,) tensors."""
    with torch.no_grad():
        return [naive_logprobs(policy, x, row[:response_length(row)].tolist())
                - naive_logprobs(ref, x, row[:response_length(row)].tolist())
                for x, row in zip(xs, tokens)]


@pytest.mark.parametrize("algo", ["ppo", "reinforce"])
def test_the_penalised_kl_is_the_kl_against_the_frozen_reference(models, monkeypatch, algo):
    policy, ref = models
    beta = 0.5
    out, seen, _ = one_iteration(policy, ref, config(algo), beta, monkeypatch)
    xs = [x for x, _, _ in out["texts"]]
    tokens, mask = seen["tokens"], seen["mask"]
    kl = naive_kl(policy, ref, xs, tokens)
    lengths = [len(k) for k in kl]
    # the mask is exactly the response tokens, through the EOS
    assert torch.equal(mask, (torch.arange(tokens.shape[1])[None] < torch.tensor(lengths)[:, None]).float())
    assert any(n < tokens.shape[1] for n in lengths)          # some responses ended early: PAD after
    # the penalised KL, per token, is the teacher-forced one against pi_ref, and not zero
    for b, k in enumerate(kl):
        assert torch.allclose(seen["kl"][b, :len(k)], k, atol=1e-5)
        assert (seen["kl"][b, len(k):] == 0).all()
    kl_per_response = torch.stack([k.sum() for k in kl])
    assert kl_per_response.abs().min() > 1e-3
    # what is logged is the KL per response, averaged over the batch
    assert out["kl"] == pytest.approx(kl_per_response.mean().item(), abs=1e-5)
    assert out["response_length"] == pytest.approx(sum(lengths) / B)
    if algo == "ppo":   # V = 0 and gamma = lambda = 1: the first return is r(x, y) - beta KL
        assert torch.allclose(seen["returns"][:, 0], seen["scores"] - beta * kl_per_response, atol=1e-5)
        assert torch.equal(seen["advantages"], seen["returns"])  # A_t = return - V(s_t), not whitened


def test_whitened_advantages_have_mean_0_and_variance_1_over_response_tokens(models, monkeypatch):
    policy, ref = models
    _, seen, _ = one_iteration(policy, ref, config("ppo", whiten=True), 0.5, monkeypatch)
    a, mask = seen["advantages"], seen["mask"]
    n = mask.sum()
    assert abs((a * mask).sum() / n) < 1e-5 and abs((a ** 2 * mask).sum() / n - 1) < 1e-3
    assert (a[mask == 0] == 0).all()


def kl_term_gradient(policy, xs, tokens, kl, algo):
    """The gradient of the KL term of the loss, computed on its own from unpadded sequences:
    PPO (ratio 1, V unchanged): d/dbeta of -1/B sum_b sum_t A_bt log pi_bt = 1/B sum_b sum_t
    (KL to go)_bt grad log pi_bt; REINFORCE: 1/B sum_b (KL_b - mean of the others' KL) grad log pi(y_b)."""
    policy.zero_grad()
    total = 0.0
    kl_sums = torch.stack([k.sum() for k in kl])
    for b, (x, row, k) in enumerate(zip(xs, tokens, kl)):
        logp = naive_logprobs(policy, x, row[:len(k)].tolist())
        if algo == "ppo":
            to_go = k.flip(0).cumsum(0).flip(0)                   # sum_{t' >= t} kl_t'
            total = total + (to_go * logp).sum()
        else:
            others = (kl_sums.sum() - kl_sums[b]) / (B - 1)
            total = total + (kl_sums[b] - others) * logp.sum()
    (total / B).backward()
    return trunk_grad(policy)


@pytest.mark.parametrize("algo", ["ppo", "reinforce"])
def test_beta_changes_the_gradient_by_exactly_the_kl_terms_gradient(models, monkeypatch, algo):
    policy, ref = models
    beta = 0.7
    out, seen, grad_beta = one_iteration(policy, ref, config(algo), beta, monkeypatch)
    _, seen0, grad_0 = one_iteration(policy, ref, config(algo), 0.0, monkeypatch)
    assert torch.equal(seen["tokens"], seen0["tokens"])       # the same samples at both betas
    xs = [x for x, _, _ in out["texts"]]
    expected = beta * kl_term_gradient(policy, xs, seen["tokens"], naive_kl(policy, ref, xs, seen["tokens"]), algo)
    assert expected.norm() > 1e-3
    assert torch.allclose(grad_beta - grad_0, expected, atol=1e-5, rtol=1e-4), \
        (grad_beta - grad_0 - expected).abs().max()


def test_the_entropy_bonus_adds_exactly_its_gradient(models, monkeypatch):
    """loss = ... - c H, H the mean per-token entropy of pi_theta at T over response tokens."""
    policy, ref = models
    c = 0.3
    out, seen, with_bonus = one_iteration(policy, ref, config("ppo", ent_coef=c), 0.5, monkeypatch)
    _, _, without = one_iteration(policy, ref, config("ppo"), 0.5, monkeypatch)
    policy.zero_grad()
    entropies = []
    for (x, _, _), row in zip(out["texts"], seen["tokens"]):
        n = response_length(row)
        seq = torch.tensor([[VOCAB.eos_id] + VOCAB.encode(x) + row[:n].tolist()])
        logp = torch.log_softmax(policy(seq)[0][0, -n - 1:-1] / T, -1)     # the n predictions of y
        entropies.append(-(logp.exp() * logp).sum(-1))
    (-c * torch.cat(entropies).mean()).backward()
    assert torch.allclose(with_bonus - without, trunk_grad(policy), atol=1e-6, rtol=1e-4)


def test_the_gradient_is_clipped_to_max_grad_norm(models, monkeypatch):
    policy, ref = models
    _, _, free = one_iteration(policy, ref, config("ppo"), 0.5, monkeypatch)
    _, _, clipped = one_iteration(policy, ref, config("ppo", max_grad_norm=1e-3), 0.5, monkeypatch)
    assert free.norm() > 1e-2
    assert clipped.norm() == pytest.approx(1e-3, rel=1e-4)
    assert torch.allclose(clipped, free * (clipped.norm() / free.norm()), atol=1e-9)


def test_the_policy_gradient_uses_the_advantages_return_minus_value(monkeypatch):
    """With a value head that is not zero, PPO's first step (ratio 1, lambda = 1) has the gradient
    -1/B sum_b sum_t (G_bt - V_bt) grad log pi_bt, G the reward to go of r_t = -beta kl_t (+ r(x, y)
    at the last token), all computed here from unpadded sequences."""
    policy, ref = tiny_policy(0, 0.5), tiny_policy(1, 0.5).requires_grad_(False).eval()
    with torch.no_grad():
        policy.value_head.weight.normal_(0, 1.0)
        policy.value_head.bias.fill_(0.3)
    beta = 0.4
    out, seen, grad = one_iteration(policy, ref, config("ppo"), beta, monkeypatch)
    xs = [x for x, _, _ in out["texts"]]
    kl = naive_kl(policy, ref, xs, seen["tokens"])
    policy.zero_grad()
    total = 0.0
    for x, row, k, r in zip(xs, seen["tokens"], kl, seen["scores"]):
        n = len(k)
        seq = torch.tensor([[VOCAB.eos_id] + VOCAB.encode(x) + row[:n].tolist()])
        logits, values = policy(seq)
        logp = torch.log_softmax(logits[0, -n - 1:-1] / T, -1).gather(1, seq[0, -n:, None])[:, 0]
        rewards = -beta * k
        rewards[-1] += r
        advantages = rewards.flip(0).cumsum(0).flip(0) - values[0, -n - 1:-1].detach()
        total = total - (advantages * logp).sum()
    (total / B).backward()
    expected = trunk_grad(policy)
    assert seen["old_values"].abs().max() > 0.1
    assert torch.allclose(grad, expected, atol=1e-5, rtol=1e-4), (grad - expected).abs().max()


def test_a_response_without_eos_gets_the_penalty_not_the_reward():
    from minippo.rewards import NO_EOS_PENALTY
    from minippo.rollout import score
    calls = []
    scores = score(lambda x, y: calls.append(y) or 0.5, ["a", "b"], ["ab", "abab"], [True, False], "cpu")
    assert scores.tolist() == [0.5, NO_EOS_PENALTY] and calls == ["ab"]


class FakeRun:
    """The calls the loop makes to the command's Run, recording what it is told."""

    def __init__(self, beta):
        self.beta, self.logged = beta, []

    def start(self, policy, optimizer):
        self.optimizer, self.lrs = optimizer, []
        return 0, self.beta

    def log(self, it, beta, out):
        self.logged.append((beta, out["kl"]))
        self.lrs.append(self.optimizer.param_groups[0]["lr"])
        return {"kl": out["kl"], "responses": len(out["texts"])}

    def save(self, it, policy, optimizer, beta):
        self.final_beta = beta
        return False

    def average_gradients(self, model):      # one process: nothing to average
        pass


def test_the_adaptive_beta_moves_with_the_per_response_kl(models):
    policy, ref = models
    policy = tiny_policy(0, 0.5)                 # a copy: this test takes real steps
    cfg = config("ppo", iters=4, target_kl=0.05, kl_horizon=24, beta=0.2, lr=1e-2)
    run = FakeRun(cfg.beta)
    torch.manual_seed(3)
    _, final = ppo.train(cfg, policy, VOCAB, PROMPTS, reward, run)
    betas = [b for b, _ in run.logged] + [final]
    for (beta, kl), following in zip(run.logged, betas[1:]):
        assert following == pytest.approx(update_beta(beta, kl, cfg.target_kl, B, cfg.kl_horizon))
    assert len(set(betas)) > 1                   # it did move
    # and the learning rate anneals linearly to 0: lr (1 - it / iters) at iteration it = 0, 1, ...
    assert run.lrs == pytest.approx([cfg.lr * (1 - it / cfg.iters) for it in range(cfg.iters)])


def test_the_command_logs_the_iterations_figures(tmp_path, models):
    """minippo/extras/runs.py:Run.log in one process: the metrics line holds the iteration's
    reward and per-response KL, J = reward - beta KL, and the number of responses."""
    import json
    from minippo.extras.runs import Run
    cfg = Config(out=str(tmp_path / "run"), corpus_lines=400, batch=B, minibatch=B, device="cpu")
    run = Run(cfg)
    run.open()
    policy = Policy(run.model_config)
    run.start(policy, torch.optim.SGD(policy.parameters(), lr=0.0))
    out = {"texts": [("the food", " is good.", True)] * (B - 1) + [("the food", " is", False)],
           "scores": [1.0] * B, "reward": 0.75, "kl": 1.25, "response_length": 9.0,
           "explained_variance": None,
           "steps": [{"pg_loss": 0.5, "entropy": 1.0, "tokens": 100.0},
                     {"pg_loss": 0.25, "entropy": 2.0, "tokens": 50.0}]}
    m = run.log(1, 0.2, out)
    assert m["kl"] == 1.25 and m["reward"] == 0.75 and m["objective"] == pytest.approx(0.75 - 0.2 * 1.25)
    assert m["responses"] == B and m["no_eos"] == pytest.approx(1 / B) and m["beta"] == 0.2
    assert m["pg_loss"] == pytest.approx(0.375) and m["entropy"] == pytest.approx(1.5)
    assert m["distinct"] == pytest.approx(2 / B) and m["grammatical"] == pytest.approx((B - 1) / B)
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text()) == m
    run.close_bar()
    run.close()
