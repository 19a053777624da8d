"""train.py end to end, as a user runs it: a short seeded run must learn; resume must be exact."""
import json

from conftest import TINY, metrics, run, with_reference


def test_short_seeded_run_raises_reward_and_keeps_kl_bounded(reference):
    m = metrics(reference)
    assert len(m) == 12 and [r["iter"] for r in m] == list(range(1, 13))
    first, last = m[0]["reward"], sum(r["reward"] for r in m[-3:]) / 3
    assert last > first + 0.3, (first, last)    # rewards lie in [-1, 1]: 0.3 is a clear rise, not noise
    assert all(r["kl"] < 10 for r in m)                      # bounded: no runaway from pi_ref
    assert m[0]["approx_kl"] > -1e-3 and m[0]["clipfrac"] < 0.5
    summary = json.load(open(reference / "summary.json"))
    for key in ("objective_optimal", "objective_policy", "objective_reference", "optimality_gap",
                "reward_policy", "kl_policy", "grammatical_policy", "pretrain_seconds", "rl_seconds"):
        assert key in summary
    assert summary["objective_optimal"] >= summary["objective_policy"] - 4 * summary["objective_policy_se"]
    assert (reference / "samples.txt").read_text().startswith("iteration 1\n")


def test_same_seed_gives_identical_metrics(reference, tmp_path):
    out = with_reference(reference, tmp_path, "again")
    assert "reusing" in run("--out", str(out), *TINY, "--iters", "4").stdout
    assert metrics(out) == metrics(reference)[:4]


def test_reinforce_learns_too(reference, tmp_path):
    out = with_reference(reference, tmp_path, "reinforce")
    run("--out", str(out), *TINY, "--iters", "12", "--algo", "reinforce")
    m = metrics(out)
    assert sum(r["reward"] for r in m[-3:]) / 3 > m[0]["reward"] + 0.2
    assert "clipfrac" not in m[0] and "vf_loss" not in m[0]


def test_help_lists_every_setting():
    out = run("--help").stdout
    for flag in ("--beta", "--target-kl", "--algo", "--reward", "--temperature", "--lam", "--clip",
                 "--resume", "--force", "--device", "--data"):
        assert flag in out
