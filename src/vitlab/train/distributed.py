"""Single- and multi-process execution: the process group ``torchrun`` sets up, and exact evaluation.

``torchrun --nproc_per_node=N -m vitlab train ...`` starts N processes with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment; :func:`init_distributed` reads them
and joins the process group (NCCL on CUDA, gloo on the CPU). Without them it returns a one-process context
and every collective below is a no-op, so the same training code serves both.

Evaluation is exact: each rank evaluates a contiguous shard ``[⌊rN/W⌋, ⌊(r+1)N/W⌋)`` of the N samples (no
padding, unlike ``DistributedSampler``, whose duplicated samples would bias accuracy), and
:meth:`DistContext.gather_rows` reassembles the full (N, ...) result on every rank in the original order.

Restarts (``torchrun --max-restarts``): by default torchrun's agent shares its rendezvous TCP store with the
workers' process group, and the keys one attempt wrote stay in it; a restarted worker can then read the
address of a dead worker of the previous attempt and fail to connect (seen here with gloo on 2 processes,
about half of the restarts; PyTorch issue #135712). Launching torchrun with
``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1`` gives each attempt a fresh store; :func:`init_distributed` warns
when restarts are allowed without it.
"""

from __future__ import annotations

import datetime
import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from vitlab.errors import ConfigError


@dataclass
class DistContext:
    """Where this process stands: its rank among ``world_size`` processes and its device."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, plots and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_sum(self, tensor: Tensor) -> Tensor:
        """Sum ``tensor`` over the ranks, in place; returns it."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_reduce_max(self, tensor: Tensor) -> Tensor:
        """Element-wise maximum of ``tensor`` over the ranks, in place; returns it."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return tensor

    def broadcast_object(self, value: object) -> object:
        """Rank 0's ``value`` on every rank."""
        if not self.distributed:
            return value
        holder = [value]
        dist.broadcast_object_list(holder, src=0)
        return holder[0]

    def all_gather_object(self, value: object) -> list[object]:
        """Every rank's ``value``, in rank order (``[value]`` in one process)."""
        if not self.distributed:
            return [value]
        gathered: list[object] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def shard_range(self, n: int) -> tuple[int, int]:
        """This rank's contiguous share ``[start, end)`` of ``n`` samples; the shares tile ``[0, n)``."""
        return self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size

    def gather_rows(self, local: Tensor, n: int) -> Tensor:
        """Concatenate every rank's shard (rows of ``local``, from :meth:`shard_range` of ``n``) in rank order."""
        if not self.distributed:
            return local
        sizes = [(r + 1) * n // self.world_size - r * n // self.world_size for r in range(self.world_size)]
        width = max(sizes)
        padded = local.new_zeros((width, *local.shape[1:]))
        padded[: local.shape[0]] = local
        buckets = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(buckets, padded.contiguous())
        return torch.cat([bucket[:size] for bucket, size in zip(buckets, sizes)])


def pick_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:LOCAL_RANK`` when CUDA is present, else the CPU; otherwise the named device (not ``mps``)."""
    if preference == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if preference == "cuda":
        preference = f"cuda:{local_rank}"
    if preference == "mps":  # refused rather than half-supported: float64 accumulators would fail mid-run

        raise ConfigError(
            "device 'mps' is not supported: training keeps float64 sums and samples mixing coefficients in float64, "
            "which MPS lacks; use --set device=cpu"
        )
    device = torch.device(preference)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but CUDA is not available; use --set device=cpu or auto")
    return device


def init_distributed(device_preference: str = "auto") -> DistContext:
    """Join the process group torchrun describes in the environment, or return a one-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_preference, local_rank)
    restarts = int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", "0"))
    if world_size > 1 and rank == 0 and restarts > 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        warnings.warn(
            "torchrun --max-restarts with its shared TCP store can make a restarted worker connect to a dead "
            "one (PyTorch issue #135712); launch torchrun with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1",
            RuntimeWarning,
            stacklevel=2,
        )
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=10))
    return DistContext(world_size=world_size, rank=rank, local_rank=local_rank, device=device)


def shutdown_distributed() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
