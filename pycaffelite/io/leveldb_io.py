"""LevelDB databases of Caffe records (the `db.py` interface), through plyvel: key-order reading
with wrap-around, and writing a new database with the options Caffe's LevelDB backend uses.

LevelDB lets one process at a time open a database (its LOCK file), and that process only once,
so readers within a process share one handle; another process reading the same database at the
same time is refused with a message saying so.
"""
import os

import plyvel

from ..errors import PclError
from .db import SharedHandles

# Caffe's db_leveldb.cpp opens databases with these (LevelDB's default bytewise key order and
# Snappy compression otherwise).
_OPTIONS = {"block_size": 65536, "write_buffer_size": 268435456, "max_open_files": 100}


def _open(real):
    try:
        return plyvel.DB(real, create_if_missing=False, **_OPTIONS)
    except plyvel.IOError as exc:
        message = _text(exc)
        if "lock" in message.lower():
            raise PclError(f'LevelDB database "{real}" is open in another process ({message}); '
                           "LevelDB allows one process at a time: wait for it to finish, or copy the "
                           "database, or convert it to LMDB (which many processes may read)") from None
        raise PclError(f'cannot open LevelDB database "{real}" ({message})') from None
    except plyvel.Error as exc:
        raise PclError(f'cannot open LevelDB database "{real}" ({_text(exc)})') from None


def _text(exc):
    text = exc.args[0] if exc.args else exc
    return text.decode(errors="replace") if isinstance(text, bytes) else str(text)


_databases = SharedHandles(_open, lambda database: database.close())


class RecordReader:
    """Endless (key, value) stream over a LevelDB in key order, starting over after the last
    record. Keys and values are bytes. Each reader belongs to one thread."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.db = _databases.acquire(self.path)
        with self.db.iterator() as probe:
            empty = next(probe, None) is None
        if empty:
            _databases.release(self.db)
            raise PclError(f'LevelDB database "{self.path}" is empty; fill it first (e.g. with '
                           "pcl convert_imageset --backend leveldb)")
        self._iterator = None
        self._item = None

    def _start(self):
        if self._iterator is not None:
            self._iterator.close()
        self._iterator = self.db.iterator()
        self._item = next(self._iterator)

    def peek(self):
        """The current (key, value), without moving on."""
        if self._iterator is None:
            self._start()
        return self._item

    def next(self):
        """The current (key, value) and a step forward, wrapping around at the end."""
        item = self.peek()
        self._item = next(self._iterator, None)
        if self._item is None:
            self._start()
        return item

    def skip(self, n):
        for _ in range(n):
            self.next()

    def position(self):
        """The key of the current record (the next `next()` returns it)."""
        return self.peek()[0]

    def seek(self, key):
        """Make the record `key` the current one; False (and the first record current) if there is
        no such key."""
        if self._iterator is not None:
            self._iterator.close()
        self._iterator = self.db.iterator(start=key)
        self._item = next(self._iterator, None)
        if self._item is not None and self._item[0] == key:
            return True
        self._start()
        return False

    def close(self):
        if self._iterator is not None:
            self._iterator.close()
            self._iterator = None
        _databases.release(self.db)


def iterate(path):
    """Every (key, value) once, in key order."""
    database = _databases.acquire(os.fspath(path))
    try:
        with database.iterator() as records:
            yield from records
    finally:
        _databases.release(database)


class Store:
    """A new LevelDB in the (not yet existing) folder `folder`; `name` is the database's final
    path, for messages. `write(pairs)` applies one write batch (synced to disk), as Caffe's
    tools commit."""

    def __init__(self, folder, name):
        try:
            self.db = plyvel.DB(folder, create_if_missing=True, error_if_exists=True, **_OPTIONS)
        except plyvel.Error as exc:
            raise PclError(f'cannot create LevelDB database "{name}" ({_text(exc)})') from None

    def write(self, pairs):
        with self.db.write_batch(sync=True) as batch:
            for key, value in pairs:
                batch.put(key, value)

    def close(self):
        self.db.close()

    def abandon(self):
        self.db.close()
