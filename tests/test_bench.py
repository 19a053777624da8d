"""The benchmark: --json's figures follow from its timings and the FLOP formula (refusals: test_experiments.py)."""
import json

import pytest

from minippo.extras.bench import PROMPT_ROOM, Config, main


def test_json_figures_are_consistent_with_the_formula(capsys):
    assert main(["--json", "--batch", "8", "--max-new-tokens", "8", "--iters", "1", "--profile"]) == 0
    r, cfg = json.loads(capsys.readouterr().out), Config(batch=8, max_new_tokens=8)
    S = PROMPT_ROOM + cfg.max_new_tokens                            # prompt + response columns
    assert (r["algo"], r["batch"], r["parameters"]) == ("ppo", 8, 108_161)
    n_weights = r["parameters"] - 29 * 64 - cfg.block_size * 64     # embeddings excluded
    flops = 3 * (2 * n_weights + 4 * cfg.n_layer * S * cfg.d_model) * cfg.epochs * cfg.batch * S
    update = r["phases"]["update"]
    assert r["update_flops_per_s"] * update["seconds"] == pytest.approx(flops)
    assert update["tokens_per_s"] * update["seconds"] == pytest.approx(cfg.epochs * cfg.batch * S)
    assert r["seconds_per_iteration"] == pytest.approx(sum(p["seconds"] for p in r["phases"].values()))
    assert r["completions_per_s"] == pytest.approx(cfg.batch / r["seconds_per_iteration"])
    assert r["kv_cache_speedup"] == pytest.approx(r["sampling_recompute_s"] / r["sampling_kv_cache_s"])
    for ops in r["profile"].values():
        shares = [o["share"] for o in ops]
        assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1 + 1e-9
    assert any("mm" in o["op"] for o in r["profile"]["iteration"])  # matmuls show up where expected
