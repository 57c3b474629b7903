"""Where a process computes: device auto-selection (CUDA, then Apple MPS, then CPU;
``MEDXAI_DEVICE`` overrides) and the rank, world size and device under ``torchrun``."""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

__all__ = ["Distributed", "select_device"]


def select_device(preferred: str | None = None) -> torch.device:
    """``preferred`` (or ``$MEDXAI_DEVICE``) if given, else the fastest device present."""
    choice = preferred or os.environ.get("MEDXAI_DEVICE")
    if choice:
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class Distributed:
    """Rank, world size and device of this process (a single process when not under torchrun).

    ``timeout`` bounds every collective (torch's default when ``None``); a batch run whose
    ranks finish far apart needs more than the default 30 minutes at its final barrier.
    """

    def __init__(self, device: str | None, timeout: timedelta | None = None) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = select_device(device)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", local_rank)
            torch.cuda.set_device(self.device)
        if self.world > 1:
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo",
                                    **({"timeout": timeout} if timeout else {}))

    @property
    def main(self) -> bool:
        """True on the process that logs and saves."""
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in DistributedDataParallel when there is more than one process."""
        if self.world == 1:
            return module
        return DistributedDataParallel(module, device_ids=[self.device] if self.device.type == "cuda" else None)

    def barrier(self) -> None:
        """Wait for every process (nothing to wait for in a single process)."""
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group."""
        if self.world > 1:
            dist.barrier()
            dist.destroy_process_group()
