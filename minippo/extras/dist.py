"""More than one process: data parallelism with torch.distributed, in plain functions that do
nothing at all in a single process. The lesson (minippo/ppo.py) never calls them: the command does.

    torchrun --standalone --nproc_per_node 2 train.py ...

torchrun starts N copies of train.py and tells each its RANK and the WORLD_SIZE through the
environment. Each copy runs the loop on batch/N responses from its own random stream; hooks average
the gradients over the copies before every optimizer step, so all copies take the same step and
keep identical weights. The logged figures and the KL fed to the adaptive beta are reduced over the
global batch, so beta follows the same trajectory everywhere. Advantage whitening and the REINFORCE
leave-one-out baseline use each process's own share (still unbiased; see tests/test_distributed.py).
Backend: gloo on CPU, nccl on CUDA.
"""
import os
from datetime import timedelta

import torch
import torch.distributed as dist


PEER_TIMEOUT_MINUTES = 10   # a process that stops is noticed by the others within this; rank 0's
                            # pretraining must fit in it (else pretrain once alone: it is cached)


def setup(device_name: str) -> tuple[int, int]:
    """(rank, world size) of this process; joins the process group when started by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        if device_name == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))   # one GPU per process
        dist.init_process_group("nccl" if device_name == "cuda" else "gloo",
                                timeout=timedelta(minutes=PEER_TIMEOUT_MINUTES))
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


def average_gradients_in_backward(model) -> None:
    """From now on, as soon as backward() has accumulated a parameter's gradient, it is replaced by
    its mean over the processes: the gradient of the loss averaged over the global batch, which is
    what DistributedDataParallel does (without its bucketing). Every process runs the same graph,
    so the hooks fire in the same order everywhere. Nothing happens in a single process."""
    if not active():
        return

    def average(p):
        dist.all_reduce(p.grad)
        p.grad /= dist.get_world_size()

    for p in model.parameters():
        if p.requires_grad:
            p.register_post_accumulate_grad_hook(average)


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
