"""More than one process: data parallelism with torch.distributed, in plain functions that do
nothing at all in a single process (so the single-process reading path can skip them).

    torchrun --standalone --nproc_per_node 2 train.py ...

torchrun starts N copies of train.py and tells each its RANK and the WORLD_SIZE through the
environment. Each copy samples batch/N responses from its own random stream; before every
optimizer step the gradients are averaged over the copies (what DistributedDataParallel does, in
one loop), so all copies take the same step and keep identical weights. Every statistic that
steers the algorithm (advantage whitening, the REINFORCE baseline, the KL controller) or is
logged is reduced over the global batch, so the numbers mean what they mean in one process.
Backend: gloo on CPU, nccl on CUDA.
"""
import os
from datetime import timedelta

import torch
import torch.distributed as dist


def setup(device_name: str) -> tuple[int, int]:
    """(rank, world size) of this process; joins the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        if device_name == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))   # one GPU per process
        dist.init_process_group("nccl" if device_name == "cuda" else "gloo",
                                timeout=timedelta(hours=1))     # the others wait out pretraining
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))  # no core oversubscription
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def is_first_process() -> bool:
    """Rank 0, or the only process: the one that prints."""
    return os.environ.get("RANK", "0") == "0"


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of a tensor over all processes (itself in one process)."""
    if active():
        t = t.detach().clone()
        dist.all_reduce(t)          # in place, on every process
    return t


def all_mean(x: float) -> float:
    """Mean of a number over all processes (every process holds an equal share of the batch)."""
    if not active():
        return x
    return all_sum(torch.tensor(float(x), dtype=torch.float64, device=_device())).item() / dist.get_world_size()


def average_gradients(model) -> None:
    """grad <- mean over processes of grad: the gradient of the loss averaged over the global batch."""
    if active():
        for p in model.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= dist.get_world_size()


def gather(items: list) -> list:
    """Python objects from every process, concatenated in rank order (all processes get all)."""
    if not active():
        return items
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, items)
    return [x for part in out for x in part]


def barrier() -> None:
    if active():
        dist.barrier()


def any_process(flag: bool) -> bool:
    """True if the flag is set in any process (Ctrl-C reaches the processes at different steps)."""
    return bool(all_sum(torch.tensor(float(flag), device=_device())).item() > 0) if active() else flag


def _device() -> str:
    return "cuda" if dist.get_backend() == "nccl" else "cpu"   # nccl reduces GPU tensors only


def close() -> None:
    if active():
        dist.destroy_process_group()
