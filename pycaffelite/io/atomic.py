"""Writing a file so that it is either complete or absent: write a temporary file beside it,
flush it to disk, then rename it over the target (a rename within a folder is atomic)."""
import contextlib
import os
import secrets

from ..errors import PclError


@contextlib.contextmanager
def atomic_output(path, what="file"):
    """Yield a temporary path to write; on success it replaces `path`, on any error it is removed.
    An OSError (missing folder, no permission, full disk) becomes a PclError naming `path`."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    temp = os.path.join(folder, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
    try:
        yield temp
        _fsync(temp)
        os.replace(temp, path)
    except OSError as error:
        raise PclError(f"{path}: cannot write the {what} ({error.strerror or error}); check that "
                       f"the folder exists and is writable") from None
    finally:
        if os.path.exists(temp):
            os.remove(temp)
    _fsync_folder(folder)


def write_bytes_atomically(path, data, what="file"):
    with atomic_output(path, what) as temp:
        with open(temp, "xb") as handle:
            handle.write(data)


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
