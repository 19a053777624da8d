"""`python -m minippo.extras.reevaluate`: a saved run measured again, its files untouched."""
import json
import shutil

from conftest import call, one_line, snapshot

from minippo.extras.launch import summary_table
from minippo.extras.reevaluate import main


def test_a_run_measured_again_gives_its_summary_and_changes_nothing(reference, tmp_path, capsys):
    """With the run's own --eval-samples, the same figures as its final evaluation, exactly (the same
    seed, samples and beta); with more, another file beside it; refusals are one line, nothing written."""
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    before = snapshot(run)
    read = lambda name: json.loads((run / name).read_text())
    assert call(main, capsys, run)[0] == 0
    summary, again = read("summary.json"), read("evaluation-16.json")
    shared = set(summary) & set(again)
    assert {k: summary[k] for k in shared} == {k: again[k] for k in shared}
    assert len(shared) > 20 and again["iter"] == 12
    assert call(main, capsys, run, "--eval-samples", 64)[0] == 0
    more = read("evaluation-64.json")
    assert more["eval_samples_per_prompt"] == 64
    assert more["objective_optimal"] != again["objective_optimal"]
    # 16 samples per prompt are too few to trust J* here (pi*'s weights rest on 2.9 of them), 64 are not
    assert again["optimality_gap"] is None and not again["objective_optimal_trusted"]
    ess, hint = again["objective_optimal_ess"], "python -m minippo.extras.reevaluate"
    says = f"n/a: J* rests on {ess:.1f} samples of a prompt; measure again: {hint} {run}"
    assert f"{says} --eval-samples 128" in summary_table(again, 0.1, str(run))
    assert 0 < more["optimality_gap"] < 1 and more["objective_optimal_ess"] >= 10
    assert {k: v for k, v in snapshot(run).items() if not k.startswith("evaluation-")} == before
    refused = [((run, "--eval-samples", 0), ["--eval-samples=0"])]
    refused += [((tmp_path / "none",), ["none", "no config.json"])]
    refused += [((run, "--eval-samples", "x"), ["--eval-samples", "'x'"])]
    for args, words in refused:
        one_line(*call(main, capsys, *args), *words)
    saved = sorted(p.name for p in run.iterdir() if p.name.startswith("evaluation-"))
    assert saved == ["evaluation-16.json", "evaluation-64.json"]
