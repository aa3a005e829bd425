"""LMDB databases of Caffe records: reading in key order with wrap-around, and atomic creation.

Caffe's Data layer visits records in LMDB order (keys sorted bytewise) and starts over after the
last one. Databases are created in a temporary folder beside the target and renamed into place
only when complete, so an interrupted conversion never leaves a half-written database.
"""
import logging
import os
import secrets
import shutil
import threading

import lmdb

from ..errors import PclError

log = logging.getLogger(__name__)
_RECIPE_COMMANDS = ("convert_mnist", "convert_imageset")
_INITIAL_MAP_SIZE = 1 << 26  # 64 MiB; doubled whenever a transaction does not fit


def _describe_missing(path):
    if not os.path.exists(path):
        return f'no LMDB database at "{path}"; check the path (it is the folder holding data.mdb)'
    if os.path.isdir(path) and not os.path.exists(os.path.join(path, "data.mdb")):
        if os.path.exists(os.path.join(path, "CURRENT")):
            return f'"{path}" is a LevelDB database; LevelDB is not supported, convert it to LMDB'
        return f'"{path}" holds no data.mdb, so it is not an LMDB database'
    return None


# An LMDB may be opened only once per process, so readers of the same database (a train and a
# test net, say) share one environment: real path -> [environment, number of users].
_open_envs = {}
_open_envs_lock = threading.Lock()


def create_from_recipe(path):
    """Make the missing database `path` by its recipe `<path>.recipe`, if there is one.

    A recipe is a text file holding one `pcl` data-conversion command without its output argument,
    e.g. `convert_mnist train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz`; arguments that are
    not flags are paths relative to the recipe's folder. Lines starting with # are comments. This
    lets a model's data be made on first use, so `pcl train` works on a fresh clone.
    """
    recipe = f"{os.path.normpath(path)}.recipe"
    if os.path.exists(path) or not os.path.isfile(recipe):
        return False
    with open(recipe, encoding="utf-8") as handle:
        words = [w for line in handle if not line.lstrip().startswith("#") for w in line.split()]
    if not words or words[0] not in _RECIPE_COMMANDS:
        raise PclError(f"{recipe}: a recipe must be one of the commands {', '.join(_RECIPE_COMMANDS)} "
                       "with its input arguments")
    folder = os.path.dirname(os.path.abspath(recipe))
    args = [w if w.startswith("-") else os.path.join(folder, w) for w in words[1:]]
    log.warning("%s does not exist yet; making it with: pcl %s %s %s", path, words[0],
                " ".join(words[1:]), os.path.basename(os.path.normpath(path)))
    from ..cli import caffe_style_args, pcl  # noqa: PLC0415 - the commands import this module

    try:
        pcl.main(args=caffe_style_args([words[0], *args, os.fspath(path)]), standalone_mode=False)
    except PclError:
        if not os.path.exists(path):  # another process may have made it at the same time
            raise
    return True


def open_readonly(path):
    """Open an LMDB environment for reading (shared within the process; give it back with
    `close_readonly`); a PclError naming the path if that is impossible. A missing database with a
    recipe (see `create_from_recipe`) is made first."""
    path = os.fspath(path)
    create_from_recipe(path)
    problem = _describe_missing(path)
    if problem:
        raise PclError(problem)
    real = os.path.realpath(path)
    with _open_envs_lock:
        if real in _open_envs:
            _open_envs[real][1] += 1
            return _open_envs[real][0]
        try:
            env = lmdb.open(real, readonly=True, lock=False, readahead=False, max_readers=512,
                            subdir=os.path.isdir(real))
        except lmdb.Error as exc:
            raise PclError(f'cannot open LMDB database "{path}" ({exc})') from None
        _open_envs[real] = [env, 1]
        return env


def close_readonly(env):
    """Give back an environment from `open_readonly`; closed when its last user gives it back."""
    with _open_envs_lock:
        for real, entry in list(_open_envs.items()):
            if entry[0] is env:
                entry[1] -= 1
                if entry[1] == 0:
                    del _open_envs[real]
                    env.close()
                return


class RecordReader:
    """Endless (key, value) stream over an LMDB in key order, starting over after the last record.

    Not thread-safe: each reader belongs to one thread (the prefetch thread of a data layer).
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self.env = open_readonly(self.path)
        self.count = self.env.stat()["entries"]
        if self.count == 0:
            close_readonly(self.env)
            raise PclError(f'LMDB database "{self.path}" is empty; fill it first (e.g. with '
                           "pcl convert_imageset)")
        self._txn = None
        self._cursor = None

    def _start(self):
        # Values are memoryviews into the map (no copy), valid while this read transaction lives.
        self._txn = self.env.begin(buffers=True)
        self._cursor = self._txn.cursor()
        self._cursor.first()

    def peek(self):
        """The current (key as bytes, value as a memoryview), without moving on."""
        if self._cursor is None:
            self._start()
        key, value = self._cursor.item()
        return bytes(key), value

    def next(self):
        """The current (key, value) and a step forward, wrapping around at the end."""
        item = self.peek()
        if not self._cursor.next():
            self._cursor.first()
        return item

    def skip(self, n):
        for _ in range(n):
            self.next()

    def close(self):
        if self._txn is not None:
            self._txn.abort()
            self._txn = self._cursor = None
        close_readonly(self.env)


def iterate(path):
    """Every (key, value) once, in key order."""
    env = open_readonly(path)
    try:
        with env.begin(buffers=False) as txn:
            yield from txn.cursor()
    finally:
        close_readonly(env)


def count_records(path):
    env = open_readonly(path)
    try:
        return env.stat()["entries"]
    finally:
        close_readonly(env)


class AtomicWriter:
    """Writes an LMDB at `path` through a temporary folder renamed into place on success.

        with AtomicWriter("train_lmdb") as db:
            db.put(b"00000000", value)

    `path` must not exist yet (as Caffe's tools refuse to overwrite a database). On an exception
    (including Ctrl-C) the temporary folder is removed and nothing is left at `path`.
    """

    def __init__(self, path, commit_every=1000):
        self.path = os.path.abspath(os.fspath(path))
        self.commit_every = commit_every
        self._pending = []
        self.written = 0
        self.env = None
        self.temp = None

    def __enter__(self):
        if os.path.exists(self.path):
            raise PclError(f'"{self.path}" already exists; remove it or choose another name for the '
                           "new database")
        folder = os.path.dirname(self.path)
        if not os.path.isdir(folder):
            raise PclError(f'cannot create "{self.path}": the folder "{folder}" does not exist')
        self.temp = os.path.join(folder, f".{os.path.basename(self.path)}.{secrets.token_hex(4)}.tmp")
        try:
            self.env = lmdb.open(self.temp, map_size=_INITIAL_MAP_SIZE, subdir=True)
        except lmdb.Error as exc:
            raise PclError(f'cannot create LMDB database "{self.path}" ({exc})') from None
        return self

    def put(self, key, value):
        self._pending.append((key if isinstance(key, bytes) else key.encode(), value))
        if len(self._pending) >= self.commit_every:
            self._flush()

    def _flush(self):
        while self._pending:
            try:
                with self.env.begin(write=True) as txn:
                    for key, value in self._pending:
                        txn.put(key, value)
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
                continue
            self.written += len(self._pending)
            self._pending = []

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self._flush()
                self.env.sync(True)
        finally:
            self.env.close()
            if exc_type is not None:
                shutil.rmtree(self.temp, ignore_errors=True)
        if exc_type is None:
            try:
                os.rename(self.temp, self.path)
            except OSError as error:
                shutil.rmtree(self.temp, ignore_errors=True)
                raise PclError(f'cannot create "{self.path}" ({error.strerror}); did another program '
                               "create it meanwhile?") from None
        return False
