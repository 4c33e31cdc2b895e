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
import signal
import sys
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


# prctl(2) option: the signal this process gets when the thread that started it ends
PR_SET_PDEATHSIG = 1


def die_with_launcher() -> None:
    """Under torchrun (which sets TORCHELASTIC_RUN_ID) this process is killed when its launcher
    dies. torchrun starts each rank in a session of its own, so a launcher killed with SIGKILL (a
    killed `lakebert train` or `tune`, a lost executor) would leave the ranks running, or blocked
    in a collective on a store that is gone until its timeout, holding their memory and GPU.
    Linux only (prctl's PR_SET_PDEATHSIG); elsewhere nothing changes."""
    if "TORCHELASTIC_RUN_ID" not in os.environ or not sys.platform.startswith("linux"):
        return
    import ctypes

    launcher = os.getppid()
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return
    if os.getppid() != launcher:  # it died before the prctl: the signal will not come
        os.kill(os.getpid(), signal.SIGKILL)


def init_distributed(use_gpu: bool) -> DistEnv:
    die_with_launcher()
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
