"""The command around the lesson: flags, run folder, checkpoints, torchrun, CUDA graphs and the
extras (reward model, sweeps, plots, benchmark, human evaluation). The lesson never imports it.

Every command here is started with `python -m minippo.extras.NAME` (or train.py), so this file runs
before torch is imported, which takes seconds: Ctrl-C in that time ends the command with one line.
"""
import os
import sys


def _stopped_while_importing(exc_type, exc, tb, previous=sys.excepthook):
    if issubclass(exc_type, KeyboardInterrupt):
        print("\nstopped before anything was written", file=sys.stderr, flush=True)
        os._exit(130)
    previous(exc_type, exc, tb)


sys.excepthook = _stopped_while_importing
