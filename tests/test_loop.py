"""End-to-end invariants of one iteration of the loop (minippo/ppo.py), checked against an
independent computation: a naive per-response forward pass of each unpadded sequence.

- the KL the loop penalises is the teacher-forced KL of the sampled responses against the frozen
  reference, and it is not zero once the policy differs from pi_ref;
- the mask covers exactly the response tokens, through the EOS;
- the logged KL is per response (a sum over tokens, averaged over responses);
- between beta = 0 and beta > 0 the gradient of an update differs by exactly beta times the gradient
  of the KL term (PPO: the KL to go times grad log pi of each token; REINFORCE: the response's KL,
  less the others' mean, times grad log pi(y|x));
- the adaptive beta moves with the logged per-response KL;
- train() keeps pi_ref a frozen copy of the pretrained policy, returns it, and draws every prompt;
- the reward sees x and y as text: no EOS, no padding; a response cut at the limit: the penalty.
"""
import json

import pytest
import torch

from minippo import ppo
from minippo.config import Config
from minippo.data import Vocab
from minippo.evaluate import evaluate
from minippo.model import ModelConfig, Policy
from minippo.rewards import NO_EOS_PENALTY
from minippo.rl import update_beta

VOCAB = Vocab("\nab")  # EOS = 0, a = 1, b = 2, PAD = 3
PROMPTS = ["a", "ab", "bba"]  # prompts of different lengths: left padding is exercised
B, T = 12, 1.3
# one step on the whole batch, gamma = lambda = 1, no value loss, no entropy bonus, no clipping
BASE = dict(batch=B, minibatch=B, epochs=1, max_new_tokens=6, temperature=T, lam=1.0, gamma=1.0)
BASE.update(vf_coef=0.0, ent_coef=0.0, max_grad_norm=1e9)
# where the KL goes: "auto" puts it in the reward (PPO, REINFORCE) or k3 as a loss term (GRPO)
AUTO = [(algo, "auto") for algo in ("ppo", "reinforce", "grpo")]
AUTO_GOES = {"ppo": "reward", "reinforce": "reward", "grpo": "k3"}  # stated here, not read from ppo
AS_LOSS = [("ppo", "k2", "std"), ("reinforce", "k3", "std"), ("grpo", "k1", "std")]
AS_LOSS += [("grpo", "k2", "dr")]  # Dr. GRPO sums a response's KL terms, as its policy loss's
# the placements of other libraries (rl.KL_PENALTIES), each with GRPO and with PPO or REINFORCE
AS_LOSS += [("grpo", "k3_ratio", "std"), ("ppo", "k3_ratio", "std"), ("grpo", "k3_st", "no_std")]
AS_LOSS += [("reinforce", "k3_st", "std"), ("grpo", "ratio_k1", "std"), ("ppo", "ratio_k1", "std")]
AS_LOSS += [("grpo", "seq", "dr"), ("grpo", "seq", "std"), ("reinforce", "seq", "std")]
AS_LOSS += [("grpo", "k3_inverted", "std"), ("ppo", "k3_reward", "std"), ("reinforce", "k3_reward", "std"), ("grpo", "k3_reward", "dr")]


def reward(x, y):  # any bounded function of the two strings
    return (y.count("a") - y.count("b")) / (1 + len(y))


def tiny_policy(seed):
    torch.manual_seed(seed)
    model = Policy(ModelConfig(vocab_size=3, block_size=16, n_layer=1, n_head=2, d_model=16))
    for name, p in model.named_parameters():
        if p.dim() > 1 and not name.startswith("value_head"):  # V stays 0: its head starts at 0
            torch.nn.init.normal_(p, 0, 0.5)
    return model


@pytest.fixture(scope="module")
def models():
    policy, ref = tiny_policy(0), tiny_policy(0)
    with torch.no_grad():  # the policy has moved away from pi_ref
        policy.lm_head.weight.add_(0.8 * torch.randn_like(policy.lm_head.weight))
    return policy, ref.requires_grad_(False).eval()


def config(algo, **kw):
    return Config(algo=algo, **{**BASE, **kw})


def one_iteration(models, cfg, beta):
    """ppo.iteration of (policy, ref) with a zero learning rate; returns its output, the batch it
    handed to update() (and the prompts, "xs", and the responses through their EOS, "ys") and the
    gradient of that update (left in .grad)."""
    policy, ref = models
    seen, real_update = {}, ppo.update

    def spy(policy, optimizer, batch, *rest):
        seen.update(batch)
        return real_update(policy, optimizer, batch, *rest)

    torch.manual_seed(1)
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.0)  # read the gradient, move nothing
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ppo, "update", spy)
        out = ppo.iteration(policy, ref, optimizer, VOCAB, PROMPTS, reward, cfg, beta)
    seen["xs"] = [x for x, _, _ in out["texts"]]
    seen["ys"] = [response(row) for row in seen["tokens"]]
    return out, seen, trunk_grad(policy)


def trunk_grad(policy):
    """The gradient of every parameter but the value head's (0 where there is none)."""
    trunk = [p for name, p in policy.named_parameters() if not name.startswith("value_head")]
    return torch.cat([(torch.zeros_like(p) if p.grad is None else p.grad).flatten() for p in trunk])


def response(row):
    """A row's response tokens through its first EOS (all of them when it never ended)."""
    row = row.tolist()
    if VOCAB.eos_id in row:
        return row[: row.index(VOCAB.eos_id) + 1]
    return [t for t in row if t != VOCAB.pad_id]


def naive(model, x, y):
    """log pi(y_t | x, y_<t) and log pi(. | x, y_<t) at T, and V(x, y_<t), of each y_t, from one unpadded sequence."""
    logits, values = model(torch.tensor([[VOCAB.eos_id] + VOCAB.encode(x) + y]))
    logp = torch.log_softmax(logits[0, -len(y) - 1 : -1] / T, -1)
    return logp.gather(1, torch.tensor(y)[:, None])[:, 0], logp, values[0, -len(y) - 1 : -1]


def naive_kl(models, seen):
    """Per token log pi - log pi_ref of each response, through its EOS; a list of (n_b,) tensors."""
    (policy, ref), pairs = models, zip(seen["xs"], seen["ys"])
    with torch.no_grad():
        return [naive(policy, x, y)[0] - naive(ref, x, y)[0] for x, y in pairs]


@pytest.mark.parametrize("algo, penalty", AUTO + [("ppo", "k3")])
def test_the_penalised_kl_is_the_kl_against_the_frozen_reference(models, algo, penalty):
    """The logged KL is the same measurement whichever algorithm and wherever the KL penalty goes."""
    beta = 0.5
    out, seen, _ = one_iteration(models, config(algo, kl_penalty=penalty, group=4), beta)
    kl, L = naive_kl(models, seen), seen["tokens"].shape[1]
    lengths = [len(k) for k in kl]
    through_eos = torch.arange(L) < torch.tensor(lengths)[:, None]
    assert torch.equal(seen["mask"], through_eos.float())  # the mask: each response through its EOS
    assert any(n < L for n in lengths)  # some responses ended early: PAD after
    for b, k in enumerate(kl):  # the penalised KL per token: the teacher-forced one against pi_ref
        assert torch.allclose(seen["kl"][b, : len(k)], k, atol=1e-5)
        assert (seen["kl"][b, len(k) :] == 0).all()
    kl_per_response = torch.stack([k.sum() for k in kl])
    assert kl_per_response.abs().min() > 1e-3  # not 0
    # logged: per response, mean over B
    assert out["kl"] == pytest.approx(kl_per_response.mean().item(), abs=1e-5)
    assert out["response_length"] == pytest.approx(sum(lengths) / B)
    if algo == "ppo" and penalty == "auto":  # V = 0, gamma = lambda = 1: G_0 = r(x, y) - beta KL
        first_return = seen["scores"] - beta * kl_per_response
        assert torch.allclose(seen["returns"][:, 0], first_return, atol=1e-5)
        assert torch.equal(seen["advantages"], seen["returns"])  # A_t = G_t - V(s_t), not whitened


def test_whitened_advantages_have_mean_0_and_variance_1_over_response_tokens(models):
    _, seen, _ = one_iteration(models, config("ppo", whiten=True), 0.5)
    a, mask = seen["advantages"], seen["mask"]
    mean, second_moment = (a * mask).sum() / mask.sum(), (a**2 * mask).sum() / mask.sum()
    assert abs(mean) < 1e-5 and abs(second_moment - 1) < 1e-3
    assert (a[mask == 0] == 0).all()


def kl_term_gradient(models, seen, algo, penalty="reward", variant="std"):
    """The gradient of the KL term of the loss, computed on its own from unpadded sequences.
    In the reward, c_t = k1 (d = log pi_old - log pi_ref) or k3 of d per token: PPO (ratio 1, V
    unchanged): d/dbeta of -1/B sum_b sum_t A_bt log pi_bt = 1/B sum_b sum_t (sum_{s>=t} c_bs) grad
    log pi_bt; REINFORCE: 1/B sum_b (C_b - mean of the others' C) grad log pi(y_b); Dr. GRPO: C_b less
    its group's mean. As a loss term (d = log pi - log pi_ref per token, the ratio pi_theta / pi_old
    = 1 with its gradient): 1/B sum_b sum_t grad k_bt, each response's sum divided by its length for
    GRPO (std, no_std; Dr. GRPO keeps the sum); k3_st's gradient is k2's, seq's (KL to come) grad log pi."""
    kl, policy = naive_kl(models, seen), models[0]
    cost = [torch.exp(-k) - 1 + k if penalty == "k3_reward" else k for k in kl]  # c_t in the reward
    sums = torch.stack([c.sum() for c in cost])
    policy.zero_grad()
    total = 0.0
    for i, (x, y, k, c, s) in enumerate(zip(seen["xs"], seen["ys"], kl, cost, sums)):
        logp = naive(policy, x, y)[0]
        if penalty not in ("reward", "k3_reward"):
            d, ratio = logp - (logp.detach() - k), torch.exp(logp - logp.detach())  # d, pi / pi_old
            term = {"k1": d, "k2": d**2 / 2, "k3": torch.exp(-d) - 1 + d, "k3_st": d**2 / 2,
                    "k3_ratio": ratio * (torch.exp(-d) - 1 + d), "ratio_k1": ratio * d,
                    "seq": k.flip(0).cumsum(0).flip(0) * logp, "k3_inverted": torch.exp(d) - 1 - d}[penalty].sum()
            total = total + (term / len(d) if algo == "grpo" and variant != "dr" else term)
            continue
        group = sums[i // 4 * 4 : i // 4 * 4 + 4]            # GRPO: the 4 responses to its query
        weight = {"ppo": c.flip(0).cumsum(0).flip(0), "reinforce": s - (sums.sum() - s) / (B - 1),
                  "grpo": s - group.mean()}[algo]
        total = total + (weight * logp).sum()
    (total / B).backward()
    return trunk_grad(policy)


@pytest.mark.parametrize("algo, penalty, variant", [(*a, "std") for a in AUTO] + AS_LOSS)
def test_beta_changes_the_gradient_by_exactly_the_kl_terms_gradient(models, algo, penalty, variant):
    beta, cfg = 0.7, config(algo, kl_penalty=penalty, group=4, variant=variant)
    _, seen, grad_beta = one_iteration(models, cfg, beta)
    _, seen0, grad_0 = one_iteration(models, cfg, 0.0)
    assert torch.equal(seen["tokens"], seen0["tokens"])  # the same samples at both betas
    placement = AUTO_GOES[algo] if penalty == "auto" else penalty
    expected = beta * kl_term_gradient(models, seen, algo, placement, variant)
    assert expected.norm() > 1e-3
    error = (grad_beta - grad_0 - expected).abs().max()
    assert torch.allclose(grad_beta - grad_0, expected, atol=1e-5, rtol=1e-4), error


def test_a_placement_added_to_the_table_is_a_choice_of_the_command_and_the_loop_s(models, monkeypatch):
    """A forker's placement is one line in rl.KL_PENALTIES: --kl-penalty offers it, and the loop's KL term
    follows it (here half of k2: the gradient of beta k is half k2's, exactly)."""
    from minippo import rl
    from minippo.extras.cli import parse_config

    monkeypatch.setitem(rl.KL_PENALTIES, "half_k2", ("loss", lambda d, ratio, lp: d**2 / 4))
    assert parse_config(["--kl-penalty", "half_k2"]).kl_penalty == "half_k2"
    grads = {}
    for name in ("k2", "half_k2"):
        grads[name] = one_iteration(models, config("ppo", kl_penalty=name), 0.7)[2] - one_iteration(
            models, config("ppo", kl_penalty=name), 0.0)[2]
    assert grads["k2"].norm() > 1e-3 and torch.allclose(grads["half_k2"], grads["k2"] / 2, atol=1e-6)


@pytest.mark.parametrize("variant", ["std", "no_std", "dr"])
def test_grpo_s_variants_scale_the_advantage_and_reduce_the_tokens_as_they_say(models, variant):
    """GRPO draws each query G times and scores each response against its group: A = R - mean R
    (R = r(x, y): GRPO's KL is a loss term), divided by std R + 1e-4 for std alone (not no_std, dr).
    At ratio 1 the policy loss is -A per token: GRPO and no_std average a response's tokens, Dr. GRPO
    sums them (so -mean_i A_i len_i)."""
    out, seen, _ = one_iteration(models, config("grpo", group=4, variant=variant), 0.5)
    xs, R, lengths = seen["xs"], seen["scores"].view(3, 4), seen["mask"].sum(1)
    assert all(len(set(xs[i : i + 4])) == 1 for i in range(0, B, 4))
    A = R - R.mean(1, keepdim=True)
    A = (A / (R.std(1, keepdim=True) + 1e-4) if variant == "std" else A).flatten()
    assert torch.allclose(seen["advantages"], A[:, None] * seen["mask"], atol=1e-6)
    expected = -(A * lengths).mean() if variant == "dr" else -A.mean()
    assert out["steps"][0]["pg_loss"] == pytest.approx(expected.item(), abs=1e-5)
    assert (lengths != lengths[0]).any() and A.abs().max() > 0.1  # the two reductions differ here


def test_grpo_with_the_kl_in_the_reward_scores_r_minus_beta_kl_against_its_group(models):
    """Dr. GRPO with the KL in the reward: A = R - mean R over each group, R = r(x, y) - beta KL."""
    dr_in_reward = config("grpo", group=4, kl_penalty="reward", variant="dr")
    _, seen, _ = one_iteration(models, dr_in_reward, 0.5)
    R = (seen["scores"] - 0.5 * torch.stack([k.sum() for k in naive_kl(models, seen)])).view(3, 4)
    A = (R - R.mean(1, keepdim=True)).flatten()
    assert torch.allclose(seen["advantages"], A[:, None] * seen["mask"], atol=1e-5)


def test_grpo_takes_epochs_times_minibatches_steps_and_its_ratio_moves_off_1():
    """GRPO keeps PPO's schedule (2 epochs x 2 minibatches: 4 steps) and its trust region: the ratio
    pi_theta / pi_old is 1 at the first step and not at the last (pi_old is the sampling policy)."""
    policy, ref = tiny_policy(0), tiny_policy(0).requires_grad_(False)
    cfg = config("grpo", group=4, epochs=2, minibatch=6)
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.5)
    torch.manual_seed(1)
    out = ppo.iteration(policy, ref, optimizer, VOCAB, PROMPTS, reward, cfg, 0.1)
    assert len(out["steps"]) == 4
    assert abs(out["steps"][0]["approx_kl"]) < 1e-6 and abs(out["steps"][-1]["approx_kl"]) > 1e-4


def test_each_epoch_splits_the_batch_into_minibatches_in_a_fresh_random_order(monkeypatch):
    """update(), 3 epochs of 3 minibatches: each epoch's minibatches partition the batch, each in an
    order of its own, not the identity (seed 0; for a right shuffle, chance < 6 / 12! ~ 1e-8)."""
    order, real = [], ppo.response_logprobs

    def spy(model, prompt_ids, tokens, T):  # the batch's row i holds i's base-3 digits: read them
        order.extend((tokens * torch.tensor([9, 3, 1])).sum(1).tolist())
        return real(model, prompt_ids, tokens, T)

    tokens, z = torch.tensor([[i // 9, i // 3 % 3, i % 3] for i in range(B)]), torch.zeros(B, 3)
    batch = dict(prompt_ids=tokens[:, :1], tokens=tokens, mask=z + 1, old_logprobs=z, advantages=z)
    monkeypatch.setattr(ppo, "response_logprobs", spy)
    policy, cfg = tiny_policy(0), config("grpo", epochs=3, minibatch=4, kl_penalty="reward")
    torch.manual_seed(0)
    ppo.update(policy, torch.optim.SGD(policy.parameters(), lr=0.0), batch, cfg, 0.0)
    epochs = [tuple(order[i : i + B]) for i in range(0, 3 * B, B)]
    assert len(order) == 3 * B and all(sorted(e) == list(range(B)) for e in epochs)  # partitions
    assert len(set(epochs) | {tuple(range(B))}) == 4  # three different orders, none the identity


@pytest.mark.parametrize("algo", ["ppo", "grpo"])
def test_the_entropy_bonus_adds_exactly_its_gradient(models, algo):
    """loss = ... - c H, H the mean per-token entropy of pi_theta at T over response tokens."""
    policy, c = models[0], 0.3
    _, seen, with_bonus = one_iteration(models, config(algo, ent_coef=c, group=4), 0.5)
    _, _, without = one_iteration(models, config(algo, group=4), 0.5)
    policy.zero_grad()
    logp = torch.cat([naive(policy, x, y)[1] for x, y in zip(seen["xs"], seen["ys"])])
    (-c * -(logp.exp() * logp).sum(-1).mean()).backward()  # H: the mean over all response tokens
    assert torch.allclose(with_bonus - without, trunk_grad(policy), atol=1e-6, rtol=1e-4)


def test_the_gradient_is_clipped_to_max_grad_norm(models):
    _, _, free = one_iteration(models, config("ppo"), 0.5)
    _, _, clipped = one_iteration(models, config("ppo", max_grad_norm=1e-3), 0.5)
    assert free.norm() > 1e-2
    assert clipped.norm() == pytest.approx(1e-3, rel=1e-4)
    assert torch.allclose(clipped, free * (clipped.norm() / free.norm()), atol=1e-9)


def test_the_policy_gradient_uses_the_advantages_return_minus_value():
    """With a value head that is not zero, PPO's first step (ratio 1, lambda = 1) has the gradient
    -1/B sum_b sum_t (G_bt - V_bt) grad log pi_bt, G the reward to go of r_t = -beta kl_t (+ r(x, y)
    at the last token), all computed here from unpadded sequences."""
    policy, ref = tiny_policy(0), tiny_policy(1).requires_grad_(False).eval()
    torch.nn.init.normal_(policy.value_head.weight, 0, 1.0)
    torch.nn.init.constant_(policy.value_head.bias, 0.3)
    beta = 0.4
    _, seen, grad = one_iteration((policy, ref), config("ppo"), beta)
    kl = naive_kl((policy, ref), seen)
    policy.zero_grad()
    total = 0.0
    for x, y, k, r in zip(seen["xs"], seen["ys"], kl, seen["scores"]):
        logp, _, values = naive(policy, x, y)
        rewards = -beta * k
        rewards[-1] += r
        advantages = rewards.flip(0).cumsum(0).flip(0) - values.detach()  # A = G - V
        total = total - (advantages * logp).sum()
    (total / B).backward()
    expected = trunk_grad(policy)
    assert seen["old_values"].abs().max() > 0.1
    assert torch.allclose(grad, expected, atol=1e-5, rtol=1e-4), (grad - expected).abs().max()


class FakeRun:
    """The calls the loop makes to the command's Run, recording the (beta, KL, learning rate) of each iteration."""

    def __init__(self, beta):
        self.beta, self.logged = beta, []

    def start(self, policy, optimizer):
        self.optimizer = optimizer
        return 0, self.beta

    def log(self, it, beta, out):
        self.logged.append((beta, out["kl"], self.optimizer.param_groups[0]["lr"]))
        return {"kl": out["kl"], "responses": len(out["texts"])}

    def save(self, it, policy, optimizer, beta):  # True: stopped (Ctrl-C)
        return False

    def average_gradients(self, model):  # one process: nothing to average
        pass


def test_the_adaptive_beta_moves_with_the_per_response_kl():
    policy = tiny_policy(0)  # not the module's: this test takes real steps
    cfg = config("ppo", iters=4, target_kl=0.05, kl_horizon=24, beta=0.2, lr=1e-2)
    run = FakeRun(cfg.beta)
    torch.manual_seed(3)
    _, final = ppo.train(cfg, policy, VOCAB, PROMPTS, reward, run)
    betas = [b for b, _, _ in run.logged] + [final]
    for (beta, kl, _), following in zip(run.logged, betas[1:]):
        assert following == pytest.approx(update_beta(beta, kl, cfg.target_kl, B, cfg.kl_horizon))
    assert len(set(betas)) > 1  # it did move
    # and the learning rate anneals linearly to 0: lr (1 - it / iters) at iteration it = 0, 1, ...
    annealed = [cfg.lr * (1 - it / cfg.iters) for it in range(cfg.iters)]
    assert [lr for _, _, lr in run.logged] == pytest.approx(annealed)


def test_the_command_logs_the_iterations_figures(tmp_path, models):
    """minippo/extras/runs.py:Run.log in one process: the metrics line holds the iteration's
    reward and per-response KL, J = reward - beta KL, and the number of responses."""
    from minippo.extras.runs import Run

    cfg = Config(out=str(tmp_path / "run"), corpus_lines=400, batch=B, minibatch=B, device="cpu")
    run = Run(cfg)
    run.open()
    policy = Policy(run.model_config)
    run.start(policy, torch.optim.SGD(policy.parameters(), lr=0.0))
    texts = [("the food", " is good.", True)] * (B - 1) + [("the food", " is", False)]
    steps = [dict(pg_loss=0.5, entropy=1.0, tokens=100.0)]
    steps += [dict(pg_loss=0.25, entropy=2.0, tokens=50.0)]
    out = dict(texts=texts, scores=[1.0] * B, reward=0.75, kl=1.25, response_length=9.0)
    out.update(explained_variance=None, steps=steps)
    m = run.log(1, 0.2, out)
    assert m["kl"] == 1.25 and m["reward"] == 0.75 and m["beta"] == 0.2 and m["responses"] == B
    assert m["objective"] == pytest.approx(0.75 - 0.2 * 1.25)  # J = reward - beta KL
    assert m["no_eos"] == pytest.approx(1 / B) and m["pg_loss"] == pytest.approx(0.375)
    assert m["entropy"] == pytest.approx(1.5)
    assert m["distinct"] == pytest.approx(2 / B) and m["grammatical"] == pytest.approx((B - 1) / B)
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text()) == m
    run.close_bar()
    run.close()


def test_train_keeps_a_frozen_copy_of_the_pretrained_policy_as_pi_ref_and_draws_every_prompt():
    """train(): pi_ref is a frozen copy of the pretrained weights, not the policy (else the KL is 0
    throughout), it is what train() returns, the logged KL against it grows once the policy moves,
    and the queries drawn over the iterations cover every prompt."""
    policy, xs, refs, real_iteration = tiny_policy(0), [], [], ppo.iteration
    pretrained = {k: v.clone() for k, v in policy.state_dict().items()}
    cfg = config("ppo", iters=4, beta=0.2, lr=0.1, target_kl=0.0)
    run, scored = FakeRun(cfg.beta), lambda x, y: xs.append(x) or reward(x, y)

    def iteration(policy, ref, *rest):  # ppo.iteration, remembering the pi_ref it is given
        refs.append(ref)
        return real_iteration(policy, ref, *rest)

    torch.manual_seed(3)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ppo, "iteration", iteration)
        ref, beta = ppo.train(cfg, policy, VOCAB, PROMPTS, scored, run)
    assert all(r is ref for r in refs) and ref is not policy and beta == cfg.beta
    unchanged = [torch.equal(v, pretrained[k]) for k, v in ref.state_dict().items()]
    moved = [not torch.equal(v, pretrained[k]) for k, v in policy.state_dict().items()]
    assert all(unchanged) and any(moved)  # pi_ref bit-identical, frozen; the policy moved
    kls = [kl for _, kl, _ in run.logged]
    assert kls[0] == 0.0 and min(kls[1:]) > 0.01  # the first batch is sampled from pi_ref itself
    assert sorted(set(xs)) == sorted(PROMPTS)  # 4 x 12 draws (the finished ones scored) miss none


def test_the_reward_gets_the_query_and_the_response_text_without_eos_or_padding(monkeypatch):
    """r(x, y) receives x as typed (no EOS before it, no PAD) and y the sampled tokens before EOS, for
    responses ending early or at the last allowed token; one cut at the limit is logged whole and
    gets the penalty, not the reward."""
    # "ab", "", "aab" ended; "abba" cut
    rows = [[1, 2, 0, 3], [0, 3, 3, 3], [1, 1, 2, 0], [1, 2, 2, 1]]
    ys, done, calls, prompts_seen = ["ab", "", "aab", "abba"], [True, True, True, False], [], []

    def stub(policy, prompt_ids, max_new_tokens, temperature, eos_id):  # the sampler: chosen tokens
        for row in prompt_ids.tolist():  # [PAD...] EOS x -> x
            prompts_seen.append("".join(VOCAB.chars[t] for t in row if t != VOCAB.pad_id)[1:])
        tokens = torch.tensor(rows[: len(prompt_ids)])
        return tokens, torch.zeros(tokens.shape)

    recording = lambda x, y: calls.append((x, y)) or float(len(y))  # the reward, remembering it
    cfg = config("ppo", batch=4, minibatch=4, max_new_tokens=4)
    policy, ref = tiny_policy(0), tiny_policy(0).requires_grad_(False)
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.0)
    monkeypatch.setattr(ppo, "sample", stub)
    out = ppo.iteration(policy, ref, optimizer, VOCAB, PROMPTS, recording, cfg, 0.1)
    assert set(prompts_seen) <= set(PROMPTS) and len(set(prompts_seen)) > 1
    assert out["texts"] == list(zip(prompts_seen, ys, done))
    assert calls == [(x, y) for x, y, d in out["texts"] if d]
    assert out["scores"] == [2.0, 0.0, 3.0, NO_EOS_PENALTY]  # the one cut gets the penalty


def test_a_short_seeded_grpo_run_improves_j():
    """GRPO with k3 as a loss term, 30 iterations of 12 queries x 4 responses: J = E[r] - beta KL of the
    tuned policy, evaluated on 1,500 fresh samples, is above pi_ref's (by 0.14-0.68 over seeds 0-4,
    standard errors <= 0.02)."""
    policy = tiny_policy(0)
    settings = dict(iters=30, lr=1e-2, epochs=2, batch=48, minibatch=24, beta=0.05)
    cfg = config("grpo", group=4, eval_samples=500, **settings)
    torch.manual_seed(0)
    ref, beta = ppo.train(cfg, policy, VOCAB, PROMPTS, reward, FakeRun(cfg.beta))
    out, _, _ = evaluate(policy, ref, VOCAB, PROMPTS, reward, cfg, "cpu", beta)
    assert out["objective_policy"] > out["objective_reference"] + 0.1, out
