"""The benchmark: its phases split the iteration's time where the time is spent, and --json's figures
follow from its timings (its refusals: test_experiments.py)."""
import json
import time

import pytest
import torch

from minippo import ppo
from minippo.extras import bench
from minippo.extras.bench import PROMPT_ROOM, Config, main


def test_json_figures_follow_from_the_phases(capsys):
    assert main(["--json", "--batch", "8", "--max-new-tokens", "8", "--iters", "1"]) == 0
    r, cfg = json.loads(capsys.readouterr().out), Config(batch=8, max_new_tokens=8)
    assert (r["algo"], r["batch"], r["max_new_tokens"], r["parameters"]) == ("ppo", 8, 8, 108_161)
    phases, S = r["phases"], PROMPT_ROOM + cfg.max_new_tokens     # S: prompt + response columns
    assert list(phases) == list(bench.PHASES)
    assert r["seconds_per_iteration"] == pytest.approx(sum(p["seconds"] for p in phases.values()))
    assert sum(p["share"] for p in phases.values()) == pytest.approx(1)
    assert r["completions_per_s"] == pytest.approx(8 / r["seconds_per_iteration"])
    tokens = {"sampling": 8 * 8, "scoring": 8 * 8, "update": cfg.epochs * 8 * S}
    tokens["log-probs, KL, GAE"] = 2 * 8 * S  # pi_theta, pi_ref
    for k, p in phases.items():
        assert p["seconds"] > 0 and p["tokens_per_s"] * p["seconds"] == pytest.approx(tokens[k])
    recompute_s, sampling_s = r["sampling_recompute_s"], phases["sampling"]["seconds"]
    assert r["kv_cache_speedup"] == pytest.approx(recompute_s / sampling_s)
    assert r["peak_rss_mb"] > 0


def test_a_pause_is_counted_in_its_own_phase_alone(monkeypatch):
    """A known pause in the sampler and one in decoding the responses (part of the remainder, between
    sampling and scoring): each of the two phases grows by its own pause, no other phase by either.
    And the sampler the iteration called gave every response exactly max_new_tokens, EOS last."""
    pause, responses = 0.5, []          # the work beside it: 0.02 s at load 4 on 2 cores; 0.5 s of room

    def paused(fn, record=False):
        def call(*args):
            time.sleep(pause)
            responses.extend([args[1]] if record else [])
            return fn(*args)
        return call
    monkeypatch.setattr(bench, "sample", paused(bench.sample))                   # inside fixed_length
    monkeypatch.setattr(ppo, "decode_responses", paused(ppo.decode_responses, record=True))
    cfg = Config(algo="reinforce", batch=8, minibatch=8, max_new_tokens=6)
    r = bench.bench(cfg, torch.device("cpu"), iters=2, warmup=1)
    seconds = {k: p["seconds"] for k, p in r["phases"].items()}
    assert pause <= seconds["sampling"] < 2 * pause, seconds           # counted once, in its phase
    assert pause <= seconds["log-probs, KL, GAE"] < 2 * pause, seconds
    assert seconds["scoring"] < pause and seconds["update"] < pause, seconds
    assert len(responses) == 3 and all(t.shape == (8, 6) for t in responses)
    eos, pad = bench.Vocab(bench.CHARS).eos_id, bench.Vocab(bench.CHARS).pad_id
    assert all((t[:, -1] == eos).all() and (t != pad).all() for t in responses)


def test_an_iteration_that_samples_its_own_way_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr(ppo, "iteration", lambda *args: None)     # never calls ppo.sample
    assert main(["--batch", "8", "--max-new-tokens", "8", "--iters", "1"]) == 1
    assert "did not call ppo.sample" in capsys.readouterr().err
