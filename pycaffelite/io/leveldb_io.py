"""LevelDB databases of Caffe records (the `db.py` interface), through plyvel: key-order reading
with wrap-around, and writing a new database with the options Caffe's LevelDB backend uses.

LevelDB lets one process at a time open a database (its LOCK file), and that process only once,
so readers within a process share one handle; another process reading the same database at the
same time is refused with a message saying so. An error LevelDB reports while reading (a damaged
or missing table file) becomes a PclError naming the database.
"""
import os

import plyvel

from ..errors import PclError
from . import atomic
from .db import RecordCursor, SharedHandles

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
    except plyvel.CorruptionError as exc:
        raise _damaged(real, exc) from None
    except plyvel.Error as exc:
        raise PclError(f'cannot open LevelDB database "{real}" ({_text(exc)})') from None


def _damaged(path, exc):
    """The PclError for an error LevelDB reports while reading `path`."""
    return PclError(f'LevelDB database "{path}" is damaged ({_text(exc)}); re-create it (pcl '
                    "convert_imageset or pcl convert_mnist with --backend leveldb) or restore it "
                    "from a copy")


def _text(exc):
    text = exc.args[0] if exc.args else exc
    return text.decode(errors="replace") if isinstance(text, bytes) else str(text)


_databases = SharedHandles(_open, lambda database: database.close())


class RecordReader(RecordCursor):
    """Endless (key, value) stream over a LevelDB in key order, starting over after the last
    record. Keys and values are bytes. Each reader belongs to one thread."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.db = _databases.acquire(self.path)
        try:
            with _iterator(self.db, self.path) as probe:
                empty = next(probe, None) is None
        except plyvel.Error as exc:
            _databases.release(self.db)
            raise _damaged(self.path, exc) from None
        except PclError:
            _databases.release(self.db)
            raise
        if empty:
            _databases.release(self.db)
            raise PclError(f'LevelDB database "{self.path}" is empty; fill it first (e.g. with '
                           "pcl convert_imageset --backend leveldb)")
        self._iterator = None
        self._item = None

    def _start(self):
        if self._iterator is not None:
            self._iterator.close()
        self._iterator = _iterator(self.db, self.path)
        self._item = self._step()

    def _step(self):
        """The iterator's next item, or None at the end."""
        try:
            return next(self._iterator, None)
        except plyvel.Error as exc:
            raise _damaged(self.path, exc) from None

    def peek(self):
        """The current (key, value), without moving on."""
        if self._iterator is None:
            self._start()
        return self._item

    def next(self):
        """The current (key, value) and a step forward, wrapping around at the end."""
        item = self.peek()
        self._item = self._step()
        if self._item is None:
            self._start()
        return item

    def seek(self, key):
        """Make the record `key` the current one; False (and the first record current) if there is
        no such key."""
        if self._iterator is not None:
            self._iterator.close()
        self._iterator = _iterator(self.db, self.path, start=key)
        self._item = self._step()
        if self._item is not None and self._item[0] == key:
            return True
        self._start()
        return False

    def close(self):
        if self._iterator is not None:
            self._iterator.close()
            self._iterator = None
        _databases.release(self.db)


def _iterator(database, path, **options):
    """A plyvel iterator over `database` (at `path`, for the message if that fails)."""
    try:
        return database.iterator(**options)
    except plyvel.Error as exc:
        raise _damaged(path, exc) from None


def iterate(path):
    """Every (key, value) once, in key order."""
    database = _databases.acquire(os.fspath(path))
    try:
        with _iterator(database, path) as records:
            while True:
                try:
                    item = next(records, None)
                except plyvel.Error as exc:
                    raise _damaged(path, exc) from None
                if item is None:
                    return
                yield item
    finally:
        _databases.release(database)


class Store:
    """A new LevelDB in the (not yet existing) folder `folder`; `name` is the database's final
    path, for messages. `write(pairs)` applies one write batch (synced to disk), as Caffe's
    tools commit."""

    def __init__(self, folder, name):
        self.db = None
        self.folder = folder
        self.name = name
        try:
            self.db = plyvel.DB(folder, create_if_missing=True, error_if_exists=True, **_OPTIONS)
        except plyvel.Error as exc:
            raise self._failed("create", exc) from None

    def _failed(self, doing, exc):
        return PclError(atomic.cannot(doing, f'LevelDB database "{self.name}"',
                                      os.path.dirname(self.folder), _text(exc)))

    def write(self, pairs):
        try:
            with self.db.write_batch(sync=True) as batch:
                for key, value in pairs:
                    batch.put(key, value)
        except plyvel.Error as exc:
            raise self._failed("write", exc) from None

    def close(self):
        self.db.close()

    def abandon(self):
        if self.db is not None:
            self.db.close()
