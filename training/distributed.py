"""The process group, as the launchers (torchrun, TorchDistributor) describe it in the environment.

    env = init_distributed(use_gpu=True)   # RANK, WORLD_SIZE, LOCAL_RANK; NCCL on CUDA, else gloo
    plan = broadcast(env, plan_or_exception)
    states = all_gather(env, torch.get_rng_state())
    teardown(env)

A single process (no WORLD_SIZE) needs no process group: every helper here then works on
its own value.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0  # this process logs and writes checkpoints

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def init_distributed(use_gpu: bool) -> DistEnv:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = use_gpu and torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return DistEnv(rank, world, local_rank, device)


def broadcast(env: DistEnv, value):
    """Rank 0's `value` on every rank; an exception on rank 0 is raised on every rank, so no
    rank waits forever for one that gave up."""
    if env.world_size > 1:
        box = [value if env.is_main else None]
        dist.broadcast_object_list(box, src=0)
        value = box[0]
    if isinstance(value, BaseException):
        raise value
    return value


def all_gather(env: DistEnv, value) -> list:
    """Every rank's (small, picklable) `value`, in rank order, on every rank."""
    if env.world_size == 1:
        return [value]
    values = [None] * env.world_size
    dist.all_gather_object(values, value)
    return values


def barrier(env: DistEnv) -> None:
    if env.world_size > 1:
        dist.barrier()


def teardown(env: DistEnv) -> None:
    """Leave the process group once every rank got here (or a peer is gone already)."""
    if env.world_size > 1 and dist.is_initialized():
        try:
            dist.barrier()  # no rank tears gloo down while another still talks to it
        except Exception:
            pass  # a peer is gone already; tear down anyway
        finally:
            dist.destroy_process_group()
