"""Background batch prefetching shared by the data layers (Caffe's BasePrefetchingDataLayer).

A `Prefetcher` runs `source.load(buffers)` in a daemon thread, filling `depth` reusable batches
ahead of the net: the thread takes a free batch, fills it, queues it; `next()` hands the oldest full
batch to the layer, which copies it into its tops and gives it back with `release()`. A PclError
raised while loading (an undecodable record, a size mismatch) is passed on and raised by `next()`
in the net's thread. The thread holds no reference to the layer, so the layer (and with it the
prefetcher) can be garbage collected; that stops the thread.

`source` provides:
    load(batch)        fills `batch` (a list of numpy arrays, one per top; reshaped as needed by
                       assigning new arrays into the list) and returns nothing
    close()            releases files (called when the thread ends)
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
    def __init__(self, exc):
        self.exc = exc


def _run(source, free, full, stop):
    try:
        while not stop.is_set():
            try:
                batch = free.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            try:
                source.load(batch)
            except Exception as exc:  # noqa: BLE001 - handed to the consumer thread
                _put(full, _Failure(exc), stop)
                return
            _put(full, batch, stop)
    finally:
        source.close()


def _put(q, item, stop):
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_SECONDS)
            return
        except queue.Full:
            continue


class Prefetcher:
    def __init__(self, source, first_batch, depth=4, name="prefetch"):
        depth = max(1, int(depth))
        self._free = queue.Queue()
        self._full = queue.Queue(maxsize=depth)
        for i in range(depth):
            self._free.put([array.copy() for array in first_batch] if i else list(first_batch))
        self._stop = threading.Event()
        self._failed = None
        self._thread = threading.Thread(target=_run, args=(source, self._free, self._full, self._stop),
                                        name=f"pcl-{name}", daemon=True)
        weakref.finalize(self, self._stop.set)
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
            raise item.exc
        return item

    def release(self, batch):
        """Give a batch back for refilling."""
        self._free.put(batch)

    def close(self):
        self._stop.set()
        self._thread.join()
