"""The training batches of one rank: micro-batch m is a pure function of (seed, m), so a resumed run
reads from where it stopped; and a background thread that reads the next ones while the step runs."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass

import numpy as np
import torch

from fastmask.data.shards import Permutation, RowSet


@dataclass
class Batch:
    data_epoch: int  # the passes over the training rows before this batch: the masks' epoch
    sample_ids: torch.Tensor  # int64 (B,): the rows' numbers in the training set (the masks' row ids)
    rows: torch.Tensor  # int32 (B, seq_len); in pinned memory when the prefetcher was asked to pin


class Batches:
    """Micro-batch m of this rank. Each data epoch shuffles the training rows by a
    :class:`~fastmask.data.shards.Permutation` keyed by (seed, epoch), evaluated only at the batch's
    positions (O(batch) per step, nothing per epoch); rank r of W takes positions r, r + W, ...
    (disjoint shards of one order, as DistributedSampler does). A pass ends after the whole batches
    every rank can take; the rest of that epoch's order is dropped."""

    def __init__(self, rows: RowSet, batch_size: int, seed: int, rank: int, world: int):
        self.rows, self.batch_size, self.seed, self.rank, self.world = rows, batch_size, seed, rank, world
        self.per_epoch = len(rows) // world // batch_size
        if self.per_epoch < 1:
            raise ValueError(f"{len(rows)} training sequences are too few for --batch-size {batch_size} on {world} rank(s)")

    def sample_ids(self, micro_step: int) -> tuple[int, np.ndarray]:
        data_epoch, offset = divmod(micro_step, self.per_epoch)
        order = Permutation(len(self.rows), self.seed * 100_003 + data_epoch)
        positions = np.arange(offset * self.batch_size, (offset + 1) * self.batch_size) * self.world + self.rank
        return data_epoch, order(positions)

    def __call__(self, micro_step: int, pin: bool = False) -> Batch:
        data_epoch, ids = self.sample_ids(micro_step)
        rows = torch.from_numpy(self.rows.numpy(ids))
        sample_ids = torch.from_numpy(ids)
        if pin:  # page-locked, so the copy to the GPU is asynchronous (non_blocking) and at full speed
            rows, sample_ids = rows.pin_memory(), sample_ids.pin_memory()
        return Batch(data_epoch, sample_ids, rows)


class Prefetcher:
    """Batches `first`, `first + 1`, ... read by a daemon thread up to `depth` ahead (the memory-map
    reads and the pinning happen while the model computes). An error in the thread is raised by the
    next ``next()``. A context manager: leaving it stops the thread."""

    def __init__(self, batches: Batches, first: int, depth: int = 2, pin: bool = False):
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(batches, first, pin), daemon=True,
                                        name="fastmask-prefetch")
        self._thread.start()

    def _run(self, batches: Batches, first: int, pin: bool) -> None:
        micro_step = first
        while not self._stop.is_set():
            try:
                item = batches(micro_step, pin)
            except BaseException as e:  # handed to the training thread, which raises it
                item = e
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return
            micro_step += 1

    def __next__(self) -> Batch:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
