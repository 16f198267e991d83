"""Loaders for training scripts: whole-batch reads, shuffled per epoch, sharded across DDP ranks."""

from __future__ import annotations

import torch
from torch.utils.data import DistributedSampler

from datasets.dataset import ZooDataset, ZooLoader

__all__ = ["make_loader", "set_epoch"]


def make_loader(dataset: ZooDataset, batch_size: int, shuffle: bool = False, seed: int = 0, rank: int = 0,
                world: int = 1, workers: int = 0, pin_memory: bool = False, drop_last: bool = False) -> ZooLoader:
    """A loader of PyG batches from ``dataset``.

    Args:
        dataset: The split to read.
        batch_size: Graphs per batch (per rank under DDP).
        shuffle: New order every epoch (call :func:`set_epoch` under DDP).
        seed: Seed of the order.
        rank: This process's rank; ``world`` ranks read disjoint shards.
        world: Number of DDP processes.
        workers: DataLoader worker processes (each opens its own read-only file handle).
        pin_memory: Pin batches for faster host-to-GPU copies.
        drop_last: Drop a last, smaller batch.
    """
    extra = {"num_workers": workers, "pin_memory": pin_memory, "persistent_workers": workers > 0}
    shard = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed,
                               drop_last=drop_last) if world > 1 else None
    gen = torch.Generator().manual_seed(seed) if shuffle else None
    return ZooLoader(dataset, batch_size, shuffle=shuffle, drop_last=drop_last, generator=gen, sampler=shard, **extra)


def set_epoch(loader: ZooLoader, epoch: int) -> None:
    """Reshuffle a sharded loader for ``epoch`` (no-op for single-process loaders)."""
    inner = getattr(loader.sampler, "sampler", None)
    if hasattr(inner, "set_epoch"):
        inner.set_epoch(epoch)
