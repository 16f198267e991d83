"""Where a run executes: device, DDP process group, bf16 autocast, peak memory."""

from __future__ import annotations

import contextlib
import os
import resource
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from graphs.cli import pick_device

__all__ = ["Runtime"]


@dataclass
class Runtime:
    """The device of this process and its place among ``world`` DDP ranks.

    Attributes:
        device: Where tensors and models go.
        rank: This process's rank (0 without torchrun).
        world: Number of processes.
        amp: bf16 autocast (CUDA only).
    """

    device: torch.device
    rank: int = 0
    world: int = 1
    amp: bool = False

    @classmethod
    def start(cls, device: str = "auto", backend: str = "auto", amp: bool = True, threads: int = 0) -> Runtime:
        """Pick the device; under torchrun, join the process group (NCCL on CUDA, Gloo on CPU by default).

        Ranks are spread over the visible GPUs (local rank modulo their count); several ranks on one
        GPU need ``backend="gloo"``, since NCCL refuses two ranks on one device.
        """
        if threads:
            torch.set_num_threads(threads)
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        if world == 1:
            dev = pick_device(device)
            return cls(dev, 0, 1, amp and dev.type == "cuda")
        cuda = torch.cuda.is_available() and device != "cpu"
        local = int(os.environ.get("LOCAL_RANK", 0))
        if cuda:
            local %= torch.cuda.device_count()
            torch.cuda.set_device(local)
        dist.init_process_group(backend if backend != "auto" else ("nccl" if cuda else "gloo"))
        return cls(torch.device(f"cuda:{local}" if cuda else "cpu"), rank, world, amp and cuda)

    @property
    def master(self) -> bool:
        """True on the rank that writes files and prints."""
        return self.rank == 0

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA when enabled; a no-op otherwise."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def distribute(self, module: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
        """``module`` wrapped in DistributedDataParallel under torchrun, else itself."""
        if self.world == 1:
            return module
        ids = [self.device] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids,
                                                   find_unused_parameters=find_unused_parameters)

    def peak_memory_mb(self) -> float:
        """Peak memory: allocated CUDA memory, or this process's peak RSS on CPU."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def describe(self) -> str:
        """``cpu``, ``cuda:0 x4`` ..."""
        return f"{self.device}{' x' + str(self.world) if self.world > 1 else ''}"

    def close(self) -> None:
        """Leave the process group (under torchrun)."""
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
