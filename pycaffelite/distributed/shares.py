"""Which records each solver of a data-parallel group reads. TEST nets read everything (only
the root solver tests); the data layers of TRAIN nets read their rank's share, chosen when they
are set up from `device.solver_rank()` and `device.solver_count()`:

- Data (LMDB, LevelDB), as Caffe 1.0's DataLayer: the records form one stream (key order,
  wrapping around) and rank r takes the r-th of every `size` consecutive records. Two ranks
  then read, between them, the records one solver with `iter_size: 2` reads in an iteration.
  rand_skip skips that many records of the rank's own share.
- ImageData and HDF5Data: a fixed share, rank r taking lines (rows of each HDF5 file) r,
  r + size, r + 2 size, ...; `shuffle` permutes each rank's own share, so every pass reads each
  line once over all ranks. Caffe 1.0 does not split ImageData (every rank reads the whole list,
  in its own shuffled order), and splits HDF5Data's row stream like Data but with each rank
  drawing its own permutations, so that shuffled shares overlap there.
"""
from .. import device
from ..errors import PclError
from ..proto import caffe_pb2


def share(phase):
    """(rank, size): the share a data layer of `phase` reads ((0, 1): every record)."""
    if phase == caffe_pb2.TEST:
        return 0, 1
    return device.solver_rank(), device.solver_count()


def own_items(items, phase, what, unit):
    """The rank's fixed share of `items` (a list or array): every size-th, from the rank's. A
    PclError, naming `what` and its `unit` (lines, rows), when there are fewer items than ranks."""
    rank, size = share(phase)
    if len(items) < size:
        raise PclError(f"{what} holds {len(items)} {unit}, fewer than the {size} solvers training "
                       f"side by side, so rank {rank} would read none; give it at least {size}")
    return items[rank::size]


class ShareReader:
    """A database reader (see io.db.open_reader) that returns, of every `size` consecutive
    records, the rank-th. `peek()`, `position()` and the rest are the wrapped reader's: between
    two `next()` calls it stands at the start of a group."""

    def __init__(self, reader, rank, size):
        self.reader = reader
        self.rank = rank
        self.size = size

    def next(self):
        self.reader.skip(self.rank)
        record = self.reader.next()
        self.reader.skip(self.size - self.rank - 1)
        return record

    def skip(self, count):
        """Skip `count` of this rank's records (as many groups)."""
        self.reader.skip(count * self.size)

    def __getattr__(self, name):
        return getattr(self.reader, name)


def share_reader(reader, phase):
    """`reader`, or a ShareReader over it when a layer of `phase` reads a share."""
    rank, size = share(phase)
    return reader if size == 1 else ShareReader(reader, rank, size)
