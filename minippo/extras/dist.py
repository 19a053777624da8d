"""More than one process: data parallelism with torch.distributed, in plain functions that do
nothing in a single process. The lesson never calls them; the command does (runs.py, launch.py).

    torchrun --standalone --nproc_per_node 2 train.py ...

torchrun starts N copies of train.py with their RANK and WORLD_SIZE in the environment. Each runs
the loop on batch/N responses from its own random stream; after every backward the loop calls
run.average_gradients, so all copies take the same step and keep identical weights. Logged figures
and the KL fed to the adaptive beta are reduced over the global batch. Advantage whitening and the
REINFORCE baseline use each process's own share (still unbiased; tests/test_distributed.py).
Backend: gloo on CPU, nccl on CUDA.
"""
import contextlib
import os
from datetime import timedelta

import torch
import torch.distributed as dist


# a process that stops is noticed by the others within this; rank 0's pretraining must fit in it
# (else pretrain once alone: it is cached)
PEER_TIMEOUT_MINUTES = 10


def setup(device_name: str) -> tuple[int, int]:
    """(rank, world size) of this process; joins the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        if device_name == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))   # one GPU per process
        backend = "nccl" if device_name == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(minutes=PEER_TIMEOUT_MINUTES))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))  # no core oversubscription
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_mean(x: float) -> float:
    """Mean of a number over all processes (every process holds an equal share of the batch)."""
    if not active():
        return x
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"   # nccl reduces GPU tensors only
    t = torch.tensor(float(x), dtype=torch.float64, device=device)
    dist.all_reduce(t)              # the sum, in place, on every process
    return t.item() / dist.get_world_size()


def average_gradients(model) -> None:
    """Replace every gradient by its mean over the processes: the gradient of the loss averaged over
    the global batch, which is what DistributedDataParallel does (here as one all-reduce of one flat
    buffer after backward). All processes run one graph, so the same gradients exist everywhere."""
    if not active():
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for g, mean in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(mean.view_as(g))


def gather(items: list) -> list:
    """Python objects from every process, concatenated in rank order (all processes get all)."""
    if not active():
        return items
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, items)
    return [x for part in out for x in part]


def any_process(flag: bool) -> bool:
    """True if the flag is set in any process (Ctrl-C reaches the processes at different steps)."""
    return all_mean(float(flag)) > 0 if active() else flag


def close() -> None:
    """Leave together: a process that tears gloo down while a peer still holds its connection (rank 0
    evaluating, say) can abort ("terminate called without an active exception")."""
    if active():
        with contextlib.suppress(RuntimeError):     # a peer is gone: nothing left to wait for
            dist.barrier()
        dist.destroy_process_group()
