"""
Scale-out with PyTorch's own engine: `torch.distributed`, launched by `torchrun`.

- Certification: examples are sharded across ranks deterministically (rank r takes the r-th, (r+K)-th, ...
  example), each rank writes its own resumable shard file, and rank 0 merges the shards into one results file in
  index order. Each example's noise comes from a stream keyed by the seed and its index, so the merged file equals a
  single-process run. A resumed run checks the existing merged file on every rank as a single process would,
  certifies only the examples missing from it, and keeps its rows.
- Training: :class:`art_stn.STNTrainer` detects an initialised process group and trains with
  `DistributedDataParallel` (a `DistributedSampler` order, gradient all-reduce), checkpoints from rank 0 only and
  resumes on all ranks.

Outside `torchrun` (no `WORLD_SIZE` in the environment) everything runs as a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from art_stn.results import merge_results

__all__ = [
    "DistContext",
    "barrier",
    "init_from_env",
    "is_main",
    "merge_shards",
    "shard_indices",
    "shard_path",
    "unwrap",
]


@dataclass(frozen=True)
class DistContext:
    """
    Where this process stands in a `torchrun` job.

    :param rank: Global rank (0 for a single process).
    :param world_size: Number of processes (1 for a single process).
    :param local_rank: Rank on this node; the GPU this process uses.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        """
        True when more than one process takes part.
        """
        return self.world_size > 1


def init_from_env(device: str = "cpu") -> DistContext:
    """
    Join the process group described by `torchrun`'s environment (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
    `MASTER_ADDR`, `MASTER_PORT`): NCCL on CUDA, gloo on CPU. Each process uses GPU `LOCAL_RANK`.

    :param device: `"cpu"` or `"cuda"`.
    :return: The context; a single-process context when `WORLD_SIZE` is unset or 1.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local_rank)  # ART's device_type="gpu" then picks this GPU
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world, local_rank=local_rank)


def is_main() -> bool:
    """
    :return: True on rank 0 or outside a process group.
    """
    return not dist.is_initialized() or dist.get_rank() == 0


def barrier() -> None:
    """
    Wait for every rank (no-op outside a process group).
    """
    if dist.is_initialized():
        dist.barrier()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """
    :param model: A model, possibly wrapped in `DistributedDataParallel`.
    :return: The model itself.
    """
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def shard_path(out: str | Path, rank: int, world_size: int) -> Path:
    """
    The shard file of one rank.

    :param out: The merged results file.
    :param rank: The rank.
    :param world_size: The number of ranks.
    :return: `out` with `.rank<r>-of-<K>` appended to its name.
    """
    out = Path(out)
    return out.with_name(f"{out.name}.rank{rank}-of-{world_size}")


def merge_shards(out: str | Path, world_size: int, remove: bool = False, resume: bool = False) -> Path:
    """
    Merge the ranks' shard files into one results file, rows in index order (written to a temporary file, then
    renamed).

    :param out: The merged results file.
    :param world_size: The number of shards.
    :param remove: Delete the shard files afterwards.
    :param resume: Keep the rows (and header) of an existing `out`, which every rank checked before certifying
           (:func:`art_stn.evaluate.certify_to_file`'s `merged`); shard rows of examples it holds are left out.
    :return: The merged file.
    :raises ValueError: when the shards disagree on their settings or columns, or hold an index twice.
    """
    shards = [shard_path(out, r, world_size) for r in range(world_size)]
    return merge_results(out, shards, remove=remove, base=out if resume else None)


def shard_indices(indices: np.ndarray, ctx: DistContext) -> np.ndarray:
    """
    This rank's share of the examples: the r-th, (r+K)-th, ... entries.

    :param indices: All example indices.
    :param ctx: The distributed context.
    :return: The rank's indices.
    """
    return np.asarray(indices)[ctx.rank :: ctx.world_size]
