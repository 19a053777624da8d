"""The command around the lesson: flags, run folder, checkpoints, torchrun and the extras (reward
model, sweeps, plots, benchmark, human evaluation). The lesson (minippo/*.py) never imports it."""
