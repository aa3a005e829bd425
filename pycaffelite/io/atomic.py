"""Writing a file (or a database folder) so that it is either complete or absent: write a
temporary beside it, flush it to disk, then rename it over the target (a rename within a folder
is atomic).

Temporaries are named `.<target name>.<host>-<pid>-<random>.partial`: hidden, and ending in
`.partial`, so that nothing takes them for a snapshot or a database; the host and process id say
who writes them. A process killed while writing (kill -9, a power cut) leaves its temporary
behind; the next process that writes into the same folder removes the temporaries of this host
whose process no longer runs (`remove_stale`, done once per folder and process).

A failed write becomes one PclError naming the file and the cause ("no space left on device",
"permission denied", ...) with what to do about it (`write_error`).
"""
import contextlib
import errno
import io
import os
import re
import secrets
import shutil
import socket
import threading

from ..errors import PclError

_HOST = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"
_PARTIAL = re.compile(r"^\..+\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)-[0-9a-f]{8}\.partial$")
_cleaned = set()
_cleaned_lock = threading.Lock()


def temporary_path(path):
    """A new temporary name beside `path` (see the module docstring)."""
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    return os.path.join(folder, f".{name}.{_HOST}-{os.getpid()}-{secrets.token_hex(4)}.partial")


def remove_stale(folder):
    """Remove the temporaries in `folder` left by processes of this host that have ended (once
    per folder and process; nothing happens where the folder cannot be listed)."""
    folder = os.path.realpath(folder or ".")
    with _cleaned_lock:
        if folder in _cleaned:
            return
        _cleaned.add(folder)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        match = _PARTIAL.match(entry.name)
        if match and match["host"] == _HOST and not _running(int(match["pid"])):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.remove(entry.path)


def _running(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but belongs to someone else
        return True
    return True


_CAUSES = {
    errno.ENOSPC: ("no space left on device", "free some space on that disk or write elsewhere "
                   "(files written before are intact)"),
    errno.EDQUOT: ("disk quota exceeded", "free some space or write elsewhere (files written "
                   "before are intact)"),
    errno.ENOENT: ("the folder does not exist", "create it or write elsewhere"),
    errno.EACCES: ("permission denied", "make the folder writable or write elsewhere"),
    errno.EPERM: ("permission denied", "make the folder writable or write elsewhere"),
    errno.EROFS: ("the file system is read-only", "write elsewhere"),
}


def disk_full(folder):
    """Whether the file system holding `folder` has (almost) no space left for this user."""
    free = free_bytes(folder)
    return free is not None and free < 65536


def write_cause(error, folder):
    """(cause, what to do) for a failed write into `folder`. `error` is an OSError or another
    library's exception: an errno, "No space left on device" in its text, or a full disk (some
    libraries report a plain I/O error) say the disk is full."""
    code = getattr(error, "errno", None)
    if code is None and ("No space left on device" in str(error) or disk_full(folder)):
        code = errno.ENOSPC
    if code in _CAUSES:
        return _CAUSES[code]
    # HDF5 wraps the system's message in lines of its internals; keep the system's words only.
    quoted = re.search(r"error message = '([^']*)'", str(error))
    reason = (os.strerror(code) if isinstance(code, int) else
              quoted.group(1) if quoted else str(error))
    return reason, "check that the folder exists and is writable, and that the disk is sound"


def cannot(doing, what, folder, error):
    """"cannot <doing> <what>: <cause>; <what to do>" for a write into `folder` that failed
    with `error` (see write_cause)."""
    cause, advice = write_cause(error, folder)
    return f"cannot {doing} {what}: {cause}; {advice}"


def write_error(path, what, error):
    """The PclError for a failed write of `path` (a `what`)."""
    folder = os.path.dirname(os.path.abspath(path))
    return PclError(f"{path}: " + cannot("write", f"the {what}", folder, error))


def lacks_room(path, nbytes):
    """Whether the disk holding `path` lacks room for writing `nbytes` into it, with a margin
    (twice the bytes and 1 MiB, for a format's own records). HDF5 crashes the process at exit
    after a write it could not finish, so its writers ask this before writing."""
    free = free_bytes(os.path.dirname(os.path.abspath(path)))
    return free is not None and free < 2 * nbytes + (1 << 20)


@contextlib.contextmanager
def atomic_output(path, what="file"):
    """Yield a temporary path to write; on success it replaces `path`, on any error it is removed.
    An OSError (missing folder, no permission, full disk) becomes a PclError naming `path`."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    remove_stale(folder)
    temp = temporary_path(path)
    try:
        yield temp
        _fsync(temp)
        os.replace(temp, path)
    except OSError as error:
        raise write_error(path, what, error) from None
    finally:
        if os.path.exists(temp):
            os.remove(temp)
    _fsync_folder(folder)


def write_bytes_atomically(path, data, what="file"):
    with atomic_output(path, what) as temp:
        with open(temp, "xb") as handle:
            handle.write(data)


@contextlib.contextmanager
def hdf5_output(path, what="HDF5 file"):
    """Yield a new h5py File built in memory; when the block ends, its bytes are written to `path`
    through `atomic_output`. The HDF5 library itself never writes to the disk: a write it cannot
    finish (a full disk) leaves it in a state in which it crashes the process (SIGSEGV) when it
    later closes the file, at the latest at exit."""
    import h5py  # noqa: PLC0415 - only HDF5 writers need it

    image = io.BytesIO()
    with h5py.File(image, "w") as f:
        yield f
    write_bytes_atomically(path, image.getbuffer(), what)


def free_bytes(folder):
    """The bytes this user may still write on the disk holding `folder` (None if unknown)."""
    try:
        stat = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return stat.f_bavail * stat.f_frsize


NO_SPACE = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder):
    """Make the rename itself durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
