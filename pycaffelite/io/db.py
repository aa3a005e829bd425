"""Record databases as Caffe's tools and Data layer use them: LMDB or LevelDB, one interface.

Both hold (key, value) pairs read in bytewise key order; Caffe stores one serialized Datum per
key. The backends are told apart by their files: an LMDB folder holds `data.mdb`, a LevelDB
folder `CURRENT`. The backend-specific code lives in `lmdb_io` and `leveldb_io`, loaded when
first needed; this module holds what the two share:

    resolve(path, backend)        the backend `path` really is (made first from `<path>.recipe`)
    open_reader(path, backend)    an endless key-order reader (wrapping around), for data layers
    iterate(path, backend)        every (key, value) once
    AtomicWriter(path, backend)   a new database, built in a temporary folder and renamed into
                                  place only when complete, so a failed run leaves nothing behind
                                  (and a killed run's folder is removed by the next writer there:
                                  see atomic.py)
    SharedHandles                 one open handle per database and process (neither library lets
                                  a process open a database twice)
"""
import importlib
import logging
import os
import shutil
import threading

from ..errors import PclError
from . import atomic

log = logging.getLogger(__name__)

LMDB = "lmdb"
LEVELDB = "leveldb"
DISPLAY_NAMES = {LMDB: "LMDB", LEVELDB: "LevelDB"}
WITH_ARTICLE = {LMDB: "an LMDB", LEVELDB: "a LevelDB"}
_MARKERS = {LMDB: "data.mdb", LEVELDB: "CURRENT"}
_MODULES = {LMDB: "lmdb_io", LEVELDB: "leveldb_io"}
_RECIPE_COMMANDS = ("convert_mnist", "convert_imageset")


def _backend_module(backend):
    """The module implementing `backend` (lmdb_io or leveldb_io)."""
    return importlib.import_module(f"{__package__}.{_MODULES[backend]}")


def parse_backend(text):
    """"lmdb" or "leveldb" from a --backend flag (any case); a PclError otherwise."""
    name = str(text).lower()
    if name not in _MODULES:
        raise PclError(f"--backend must be lmdb or leveldb; found {text!r}")
    return name


def detect(path):
    """The backend of the database at `path` ("lmdb" or "leveldb"), or None if there is none.
    A plain file counts as an LMDB (LMDB's single-file form)."""
    if os.path.isdir(path):
        for backend, marker in _MARKERS.items():
            if os.path.exists(os.path.join(path, marker)):
                return backend
        return None
    return LMDB if os.path.isfile(path) else None


def create_from_recipe(path):
    """Make the missing database `path` by its recipe `<path>.recipe`, if there is one.

    A recipe is a text file holding one `pcl` data-conversion command without its output argument,
    e.g. `convert_mnist --backend=leveldb train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz`;
    flags are written `--name=value`, and arguments that are not flags are paths relative to the
    recipe's folder. Lines starting with # are comments. This
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


def resolve(path, backend, why=""):
    """The backend of the database at `path`, which the caller expects to be `backend` (`why`, if
    given, says why, for the message when it is missing); a missing database with a recipe is made
    first. A PclError when there is no database at `path`."""
    path = os.fspath(path)
    create_from_recipe(path)
    found = detect(path)
    if found is not None:
        return found
    if not os.path.exists(path):
        raise PclError(f'no {DISPLAY_NAMES[backend]} database at "{path}"{why}; check the path (it '
                       f"is the folder holding {_MARKERS[backend]})")
    raise PclError(f'"{path}" holds neither data.mdb nor CURRENT, so it is neither an LMDB nor a '
                   "LevelDB database; give the database folder")


def open_reader(path, backend):
    """An endless (key, value) reader over the database at `path` of the given backend: `peek()`,
    `next()` (wrapping around after the last record), `skip(n)`, `position()` (the current key),
    `seek(key)` (False if there is no such key), `close()`, `path`. Values are
    bytes-like (LMDB's are memoryviews valid until the reader is closed). Each reader belongs to
    one thread."""
    return _backend_module(backend).RecordReader(path)


def iterate(path, backend):
    """Every (key, value) of the database at `path` of the given backend once, in key order, as
    bytes."""
    return _backend_module(backend).iterate(path)


class RecordCursor:
    """What the backends' record readers share: a subclass gives `peek()` (the current
    (key, value)) and `next()` (it, and a step forward, wrapping around at the end)."""

    def skip(self, n):
        for _ in range(n):
            self.next()

    def position(self):
        """The key of the current record (the next `next()` returns it)."""
        return self.peek()[0]


class SharedHandles:
    """Open handles of one backend shared within the process, counted by users: a train and a
    test net reading one database share one handle, closed when its last user gives it back."""

    def __init__(self, opener, closer):
        self._opener = opener
        self._closer = closer
        self._open = {}  # real path -> [handle, number of users]
        self._lock = threading.Lock()

    def acquire(self, path):
        real = os.path.realpath(path)
        with self._lock:
            if real not in self._open:
                self._open[real] = [self._opener(real), 0]
            self._open[real][1] += 1
            return self._open[real][0]

    def release(self, handle):
        with self._lock:
            for real, entry in list(self._open.items()):
                if entry[0] is handle:
                    entry[1] -= 1
                    if entry[1] == 0:
                        del self._open[real]
                        self._closer(handle)
                    return


class AtomicWriter:
    """Writes a new database at `path` through a temporary folder renamed into place on success.

        with AtomicWriter("train_lmdb", "lmdb") as db:
            db.put(b"00000000", value)

    Records are handed to the backend `commit_every` at a time (one transaction or write batch
    each, as Caffe's tools commit every 1000). `path` must not exist yet (Caffe's tools refuse to
    overwrite a database). On an exception (including Ctrl-C) the temporary folder is removed and
    nothing is left at `path`. `written` counts the records committed so far. The backends' Stores
    report a full disk and other write failures as a PclError naming the database.
    """

    def __init__(self, path, backend=LMDB, commit_every=1000):
        self.path = os.path.abspath(os.fspath(path))
        self.backend = backend
        self.commit_every = commit_every
        self._pending = []
        self.written = 0
        self.store = None
        self.temp = None

    def __enter__(self):
        if os.path.exists(self.path):
            raise PclError(f'"{self.path}" already exists; remove it or choose another name for the '
                           "new database")
        folder = os.path.dirname(self.path)
        if not os.path.isdir(folder):
            raise PclError(f'cannot create "{self.path}": the folder "{folder}" does not exist')
        atomic.remove_stale(folder)
        self.temp = atomic.temporary_path(self.path)
        try:
            self.store = _backend_module(self.backend).Store(self.temp, self.path)
        except BaseException:
            shutil.rmtree(self.temp, ignore_errors=True)
            raise
        return self

    def put(self, key, value):
        self._pending.append((key if isinstance(key, bytes) else key.encode(), bytes(value)))
        if len(self._pending) >= self.commit_every:
            self._commit()

    def _commit(self):
        if self._pending:
            self.store.write(self._pending)
            self.written += len(self._pending)
            self._pending = []

    def __exit__(self, exc_type, exc, tb):
        complete = False
        try:
            if exc_type is None:
                self._commit()
                self.store.close()
                complete = True
        finally:
            if not complete:
                try:
                    self.store.abandon()
                finally:
                    shutil.rmtree(self.temp, ignore_errors=True)
        if complete:
            try:
                os.rename(self.temp, self.path)
            except OSError as error:
                shutil.rmtree(self.temp, ignore_errors=True)
                raise PclError(f'cannot create "{self.path}" ({error.strerror}); did another '
                               "program create it meanwhile?") from None
        return False
