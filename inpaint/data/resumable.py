"""A training data order that survives a kill: resumable mid-epoch, the same with any number of workers.

Every training sample is a pure function of ``(seed, epoch, position in the epoch)``: the
:class:`ResumableSampler` shuffles with a generator seeded by ``(seed, epoch)`` and hands each position a
key, from which the dataset derives the crop, flip and mask (``InpaintDataset.__getitem__``). Nothing is
drawn from a worker's or the process's random state, so

* a run resumed from a mid-epoch checkpoint sees exactly the batches the uninterrupted run would have seen
  (:class:`ResumableDataLoader` is stateful in Lightning's sense: its ``state_dict`` is stored in the
  checkpoint under the fit loop, and on resume it skips the batches the epoch had already consumed);
* ``num_workers`` changes the speed of a run, not its numbers.

Lightning calls ``set_epoch`` on the sampler with the fit loop's epoch (restored from the checkpoint on
resume) and leaves a :class:`~torch.utils.data.DistributedSampler` subclass in place under DDP, so each
process takes its own shard of the same permutation.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

log = logging.getLogger(__name__)

#: the dataset receives ``(index, epoch, position)`` instead of a bare index for a training sample
SampleKey = tuple[int, int, int]


class ResumableSampler(DistributedSampler):
    """Shuffled indices of ``dataset`` as keys ``(index, epoch, position)``, sharded over processes.

    Outside a distributed job it is one shard (``num_replicas=1``). Each epoch's permutation comes from
    ``np.random.default_rng([seed, epoch])``; with ``drop_last`` the permutation is cut to a multiple of
    the number of processes, otherwise padded by wrapping around (as ``DistributedSampler`` does).
    ``skip(n)`` makes the next iteration start ``n`` keys into this process's shard."""

    def __init__(self, dataset: Dataset, seed: int = 0, drop_last: bool = False) -> None:
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        super().__init__(
            dataset,
            num_replicas=None if distributed else 1,
            rank=None if distributed else 0,
            shuffle=True,
            seed=int(seed),
            drop_last=drop_last,
        )
        self._skip = 0

    def skip(self, n: int) -> None:
        self._skip = int(n)

    def keys(self) -> list[SampleKey]:
        """This process's keys for the current epoch, before any skip."""
        n = len(self.dataset)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(n)
        if self.drop_last:
            order = order[: self.total_size]
        elif self.total_size > n:
            order = np.resize(order, self.total_size)  # wraps around
        positions = range(self.rank, self.total_size, self.num_replicas)
        return [(int(order[p]), int(self.epoch), int(p)) for p in positions]

    def __iter__(self) -> Iterator[SampleKey]:
        keys = self.keys()[self._skip :]
        self._skip = 0
        return iter(keys)


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over a :class:`ResumableSampler` whose position is part of the checkpoint.

    ``state_dict()`` is ``{"epoch", "batches"}``: the epoch being iterated and how many of its batches
    the training loop has taken. Lightning fetches batches without prefetching from a loader with a
    length, so at a checkpoint the count is exactly what was trained on. ``load_state_dict`` makes the
    next iteration of that epoch start after those batches."""

    def __init__(self, dataset: Dataset, *, sampler: ResumableSampler, **kwargs: Any) -> None:
        if not isinstance(sampler, ResumableSampler):
            raise TypeError("ResumableDataLoader needs a ResumableSampler")
        kwargs.setdefault("generator", torch.Generator().manual_seed(sampler.seed))
        super().__init__(dataset, sampler=sampler, **kwargs)
        self._epoch = 0
        self._batches = 0
        self._resume: dict[str, int] | None = None

    def __iter__(self) -> Iterator[Any]:
        # lazy: Lightning creates the iterator before it sets the epoch of a resumed run on the sampler
        return self._iterate()

    def _iterate(self) -> Iterator[Any]:
        sampler: ResumableSampler = self.sampler  # type: ignore[assignment]
        start = 0
        if self._resume is not None:
            state, self._resume = self._resume, None
            if state["epoch"] == sampler.epoch:
                start = state["batches"]
            elif state["batches"] < len(self):  # (a checkpoint at an epoch's last batch resumes in the next)
                log.warning(
                    "resuming data order: the checkpoint was taken in epoch %d but training continues in epoch "
                    "%d; starting that epoch from its first batch", state["epoch"], sampler.epoch,
                )
        sampler.skip(start * (self.batch_size or 1))
        self._epoch, self._batches = sampler.epoch, start
        for batch in super().__iter__():
            self._batches += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(self._epoch), "batches": int(self._batches)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = {"epoch": int(state["epoch"]), "batches": int(state["batches"])}


def train_sample_rng(seed: int, key: SampleKey) -> np.random.Generator:
    """The generator of training sample ``key = (index, epoch, position)``."""
    index, epoch, position = key
    return np.random.default_rng([int(seed), 0, int(epoch), int(position), int(index)])

