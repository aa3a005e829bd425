"""LMDB databases of Caffe records (the `db.py` interface): key-order reading with wrap-around,
and writing a new database.

Caffe's Data layer visits records in LMDB order (keys sorted bytewise) and starts over after the
last one. An LMDB may be opened only once per process, so readers of one database (a train and a
test net, say) share one read-only environment. Its data file is checked before it is mapped
(lmdb_check: a damaged file would crash liblmdb), and any error liblmdb still reports while
reading becomes a PclError naming the database.
"""
import os

import lmdb

from ..errors import PclError
from . import atomic, lmdb_check
from .db import RecordCursor, SharedHandles

_INITIAL_MAP_SIZE = 1 << 26  # 64 MiB; doubled whenever a transaction does not fit


def _open(real):
    lmdb_check.check(real)
    try:
        return lmdb.open(real, readonly=True, lock=False, readahead=False, max_readers=512,
                         subdir=os.path.isdir(real))
    except lmdb.Error as exc:
        raise PclError(f'cannot open LMDB database "{real}" ({exc})') from None


def _damaged(path, exc):
    """The PclError for an error liblmdb reports while reading `path`."""
    return PclError(f'LMDB database "{path}" is damaged ({exc}); re-create it (pcl convert_imageset '
                    "or pcl convert_mnist) or restore it from a copy")


_environments = SharedHandles(_open, lambda env: env.close())


class RecordReader(RecordCursor):
    """Endless (key, value) stream over an LMDB in key order, starting over after the last record.

    Not thread-safe: each reader belongs to one thread (the prefetch thread of a data layer).
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self.env = _environments.acquire(self.path)
        try:
            entries = self.env.stat()["entries"]
        except lmdb.Error as exc:
            _environments.release(self.env)
            raise _damaged(self.path, exc) from None
        if entries == 0:
            _environments.release(self.env)
            raise PclError(f'LMDB database "{self.path}" is empty; fill it first (e.g. with '
                           "pcl convert_imageset)")
        self._txn = None
        self._cursor = None

    def _start(self):
        # Values are memoryviews into the map (no copy), valid while this read transaction lives.
        try:
            self._txn = self.env.begin(buffers=True)
            self._cursor = self._txn.cursor()
            self._cursor.first()
        except lmdb.Error as exc:
            raise _damaged(self.path, exc) from None

    def peek(self):
        """The current (key as bytes, value as a memoryview), without moving on."""
        if self._cursor is None:
            self._start()
        key, value = self._cursor.item()
        return bytes(key), value

    def next(self):
        """The current (key, value) and a step forward, wrapping around at the end."""
        item = self.peek()
        try:
            if not self._cursor.next():
                self._cursor.first()
        except lmdb.Error as exc:
            raise _damaged(self.path, exc) from None
        return item

    def seek(self, key):
        """Make the record `key` the current one; False (and the first record current) if there is
        no such key."""
        if self._cursor is None:
            self._start()
        try:
            if self._cursor.set_key(key):
                return True
            self._cursor.first()
        except lmdb.Error as exc:
            raise _damaged(self.path, exc) from None
        return False

    def close(self):
        if self._txn is not None:
            self._txn.abort()
            self._txn = self._cursor = None
        _environments.release(self.env)


def iterate(path):
    """Every (key, value) once, in key order, as bytes."""
    env = _environments.acquire(os.fspath(path))
    try:
        with env.begin(buffers=False) as txn:
            cursor = iter(txn.cursor())
            while True:
                try:
                    item = next(cursor, None)
                except lmdb.Error as exc:
                    raise _damaged(path, exc) from None
                if item is None:
                    return
                yield item
    finally:
        _environments.release(env)


class Store:
    """A new LMDB in the (not yet existing) folder `folder`; `name` is the database's final path,
    for messages. `write(pairs)` commits one transaction, growing the map as needed. A failure
    (a full disk: liblmdb then reports an I/O error) is a PclError naming the database."""

    def __init__(self, folder, name):
        self.env = None
        self.folder = folder
        self.name = name
        try:
            self.env = lmdb.open(folder, map_size=_INITIAL_MAP_SIZE, subdir=True)
        except lmdb.Error as exc:
            raise self._failed("create", exc) from None

    def _failed(self, doing, exc):
        return PclError(atomic.cannot(doing, f'LMDB database "{self.name}"',
                                      os.path.dirname(self.folder), exc))

    def write(self, pairs):
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    for key, value in pairs:
                        txn.put(key, value)
                return
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
            except lmdb.Error as exc:
                raise self._failed("write", exc) from None

    def close(self):
        try:
            self.env.sync(True)
        except lmdb.Error as exc:
            raise self._failed("write", exc) from None
        self.env.close()

    def abandon(self):
        if self.env is not None:
            self.env.close()
