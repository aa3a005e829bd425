"""Background batch prefetching shared by the data layers (Caffe's BasePrefetchingDataLayer).

A `Prefetcher` runs `source.load(buffers)` in a daemon thread, filling `depth` reusable batches
ahead of the net: the thread takes a free batch, fills it, queues it; `next()` hands the oldest full
batch to the layer, which copies it into its tops and gives it back with `release()`. A PclError
raised while loading (an undecodable record, a size mismatch) is passed on and raised by `next()`
in the net's thread. The thread holds no reference to the layer, so the layer (and with it the
prefetcher) can be garbage collected; that stops the thread.

The thread reads ahead, so the source's own position is not the net's. After filling a batch the
thread asks the source for its `position()` (where the next batch would start: a record key, a
generator state...) and queues it with the batch; `position` is that of the last batch `next()`
handed out, i.e. what the net has consumed, and `restart(position)` discards the batches read
ahead and continues from there (a solver resuming from a snapshot).

`source` provides:
    load(batch)        fills `batch` (a list of numpy arrays, one per top; reshaped as needed by
                       assigning new arrays into the list) and returns nothing
    position()         a small value saying where the next `load` starts (taken after each load,
                       in the thread; it must not change when the source moves on)
    seek(position)     continue from a `position()` value (called while no thread runs)
    close()            releases files (called when the prefetcher ends)
"""
import os
import queue
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

_POLL_SECONDS = 0.1
_pool = None
_pool_lock = threading.Lock()


def decode_pool():
    """A process-wide thread pool for decoding images in parallel (OpenCV releases the GIL)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1),
                                       thread_name_prefix="pcl-decode")
        return _pool


class _Failure:
    def __init__(self, exc, batch):
        self.exc = exc
        self.batch = batch


class _Control:
    """The events a thread obeys: `halt` (a new one per thread) stops it; `finished` (set when the
    prefetcher is closed or collected) also makes it close the source on the way out."""

    def __init__(self):
        self.halt = threading.Event()
        self.finished = threading.Event()

    def finish(self):
        self.finished.set()
        self.halt.set()


def _run(source, free, full, halt, finished):
    """The thread: fill free batches and queue them with the source's position after each. After a
    failure it waits to be halted (a restart may retry)."""
    try:
        while not halt.is_set():
            try:
                batch = free.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            try:
                source.load(batch)
                item = (batch, source.position())
            except Exception as exc:  # noqa: BLE001 - handed to the consumer thread
                item = _Failure(exc, batch)
            if not _put(full, item, halt):
                free.put(batch)  # halted meanwhile: the batch is refilled after a restart
            if isinstance(item, _Failure):
                halt.wait()
                return
    finally:
        if finished.is_set():
            source.close()


def _put(q, item, halt):
    """Queue `item` unless halted first; whether it was queued."""
    while not halt.is_set():
        try:
            q.put(item, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


class Prefetcher:
    def __init__(self, source, first_batch, depth=4, name="prefetch"):
        depth = max(1, int(depth))
        self._source = source
        self._name = name
        self._free = queue.Queue()
        self._full = queue.Queue(maxsize=depth)
        for i in range(depth):
            self._free.put([array.copy() for array in first_batch] if i else list(first_batch))
        self._failed = None
        self._control = _Control()
        weakref.finalize(self, self._control.finish)
        self.position = source.position()
        self._start()

    def _start(self):
        control = self._control
        control.halt = threading.Event()
        self._thread = threading.Thread(
            target=_run, args=(self._source, self._free, self._full, control.halt, control.finished),
            name=f"pcl-{self._name}", daemon=True)
        self._thread.start()

    def next(self):
        """The next full batch (a list of arrays); blocks until the thread has made it."""
        if self._failed is not None:
            raise self._failed
        while True:
            try:
                item = self._full.get(timeout=_POLL_SECONDS)
                break
            except queue.Empty:
                if not self._thread.is_alive():
                    raise RuntimeError("the prefetch thread ended without producing a batch") from None
        if isinstance(item, _Failure):
            self._failed = item.exc
            self._free.put(item.batch)
            raise item.exc
        batch, self.position = item
        return batch

    def release(self, batch):
        """Give a batch back for refilling."""
        self._free.put(batch)

    def restart(self, position):
        """Drop the batches read ahead and continue from `position` (a `source.position()`)."""
        self._control.halt.set()
        self._thread.join()
        while not self._full.empty():
            item = self._full.get()
            self._free.put(item.batch if isinstance(item, _Failure) else item[0])
        self._source.seek(position)
        self.position = position
        self._failed = None
        self._start()

    def close(self):
        self._control.finish()
        self._thread.join()
