"""Checking an LMDB's data file before liblmdb maps it.

liblmdb trusts its file: a data.mdb cut short makes the reading process die of SIGBUS when a
record past the end is touched, and a damaged page trips an assertion (SIGABRT) or is followed
into the wrong place. So before a database is opened, `check(path)` reads the file with ordinary
reads (never a mapping) and walks what a reader will visit:

- the two meta pages (page size, magic, format version; the newer transaction wins), and the
  main database record of the chosen one (root page, depth, entry count);
- every branch and leaf page of the main B-tree: its page number, its type, the bounds of its
  node table, each node inside the page, child pages inside the file and each visited once,
  all leaves at the recorded depth, the number of entries;
- for each value stored on overflow pages, that those pages lie inside the file (their bytes are
  data, not structure, and are not read).

The facts used, for LMDB 0.9's 64-bit layout (what Caffe and py-lmdb write; integers in the
machine's byte order, little-endian here):

    page header, 16 bytes: page number u64, (pad u16), flags u16, lower u16, upper u16
        (an overflow page keeps its page count as u32 where lower/upper are)
    page flags: 1 branch, 2 leaf, 4 overflow, 8 meta (a tree page at rest has exactly one)
    meta page (pages 0 and 1), after the header: magic u32 = 0xBEEFC0DE, version u32 = 1,
        address u64, map size u64, free-page database record, main database record,
        last page number u64, transaction id u64
    database record, 48 bytes: pad u32 (the free database's holds the page size), flags u16,
        depth u16, branch/leaf/overflow page counts u64 x 3, entries u64, root page u64
        (all ones when the database is empty); flag 4 = duplicate keys (DUPSORT)
    node table: u16 offsets (from the page start) of the page's nodes after the header;
        number of nodes = (lower - 16) / 2; nodes lie between `upper` and the page end
    node: u16 lo, u16 hi, u16 flags, u16 key size, then the key, then the value:
        leaf: value size = lo | hi << 16; flag 1 = the value is on overflow pages, and the node
        holds their first page number (u64); inline otherwise
        branch: child page = lo | hi << 16 | flags << 32
    overflow pages of a value of n bytes: (16 - 1 + n) // page size + 1

Caffe's databases hold no duplicate keys and no named sub-databases; anything else in a node's
flags is damage. A file that passes is safe for liblmdb to read; its values may still be wrong
(a flipped byte in an image), which the Datum parser reports by key.

The walk reads every branch and leaf page once. Small values (under about 2 KB) live in the
leaves, so the whole file is read: 0.08 s for 60 000 records of 800 bytes (80 MB) when measured;
images live on overflow pages, which are not read: 0.003 s for 20 000 records of 3 KB (80 MB).
"""
import os
import struct
import sys

import numpy as np

from ..errors import PclError

_MAGIC = 0xBEEFC0DE
_VERSION = 1
_HEADER = 16
_BRANCH, _LEAF, _META = 1, 2, 8
_BIGDATA = 1
_DUPSORT = 4
_NO_ROOT = (1 << 64) - 1
_MAX_DEPTH = 32  # liblmdb's cursor stack
_ORDER = "<" if sys.byteorder == "little" else ">"
_META_FORMAT = struct.Struct(_ORDER + "QHHHH II QQ 48s 48s QQ")
_DB_FORMAT = struct.Struct(_ORDER + "IHHQQQQQ")
_U16 = np.dtype(_ORDER + "u2")


class DamagedError(Exception):
    """What is wrong with a data file (turned into a PclError naming the database)."""


def data_file(path):
    """The data file of the LMDB at `path` (a folder holding data.mdb, or the file itself)."""
    return os.path.join(path, "data.mdb") if os.path.isdir(path) else path


def check(path):
    """A PclError naming `path` and what to do if its LMDB data file would crash or mislead a
    reader; nothing otherwise."""
    name = data_file(path)
    try:
        with open(name, "rb") as handle:
            _Walk(handle, os.fstat(handle.fileno()).st_size).run()
    except DamagedError as damage:
        raise PclError(f'LMDB database "{path}" is damaged: {damage}; re-create it (pcl '
                       "convert_imageset or pcl convert_mnist) or restore it from a copy") from None
    except OSError as error:
        raise PclError(f'cannot read LMDB database "{path}" ({error.strerror or error})') from None


class _Walk:
    """One check of one data file: the meta pages, then the branch pages from the root (collecting
    the leaves in key order), then the leaves in chunks, each chunk checked with array operations."""

    leaves_at_once = 2048

    def __init__(self, handle, size):
        self.handle = handle
        self.size = size
        self.page_size = None
        self.pages = 0
        self.seen = None
        self.leaves = []

    def read(self, offset, length):
        self.handle.seek(offset)
        data = self.handle.read(length)
        if len(data) != length:
            raise DamagedError(f"data.mdb is cut short ({self.size} bytes, but it refers to bytes "
                               f"up to {offset + length})")
        return data

    def run(self):
        if self.size < _META_FORMAT.size:
            raise DamagedError(f"data.mdb holds {self.size} bytes, too few for an LMDB file")
        first = self._meta(self.read(0, _META_FORMAT.size), 0)
        self.page_size = _DB_FORMAT.unpack(first[9])[0]
        if self.page_size & (self.page_size - 1) or not 256 <= self.page_size <= 65536:
            raise DamagedError(f"its first meta page gives the page size {self.page_size}")
        second = self._meta(self.read(self.page_size, _META_FORMAT.size), 1)
        if _DB_FORMAT.unpack(second[9])[0] != self.page_size:
            raise DamagedError("its two meta pages give different page sizes")
        meta = second if first[-1] < second[-1] else first  # the newer transaction (a tie: 0)
        self.pages = self.size // self.page_size
        _, flags, depth, _, _, _, entries, root = _DB_FORMAT.unpack(meta[10])
        if flags & _DUPSORT:
            raise DamagedError("it holds duplicate keys (DUPSORT), which a Caffe database never does")
        if root == _NO_ROOT:
            if entries:
                raise DamagedError(f"it records {entries} entries but no root page")
            return
        if not 1 <= depth <= _MAX_DEPTH:
            raise DamagedError(f"its tree depth is {depth}")
        self.seen = bytearray(self.pages)
        self._visit(root)
        if depth == 1:
            self.leaves.append(root)
        else:
            self._branch(root, 1, depth)
        found = sum(self._leaves(self.leaves[i:i + self.leaves_at_once], root_leaf=depth == 1)
                    for i in range(0, len(self.leaves), self.leaves_at_once))
        if found != entries:
            raise DamagedError(f"it records {entries} entries but its pages hold {found}")

    def _meta(self, data, number):
        fields = _META_FORMAT.unpack(data)
        flags, magic, version = fields[2], fields[5], fields[6]
        if magic != _MAGIC:
            raise DamagedError(f"meta page {number} lacks LMDB's magic number (not an LMDB file, or "
                               "its start is overwritten)")
        if version != _VERSION:
            raise DamagedError(f"meta page {number} gives format version {version}; LMDB 0.9, which "
                               f"reads it here, writes version {_VERSION}")
        if not flags & _META:
            raise DamagedError(f"page {number} is not marked as a meta page")
        return fields

    def _visit(self, number):
        if not 2 <= number < self.pages:
            raise DamagedError(f"a page refers to page {number}, outside the file's "
                               f"{self.pages} pages (the file may be cut short)")
        if self.seen[number]:
            raise DamagedError(f"page {number} is reached twice")
        self.seen[number] = 1

    def _branch(self, number, level, depth):
        """Check branch page `number` at `level`; visit its children (leaves are only listed)."""
        page = np.frombuffer(self.read(number * self.page_size, self.page_size), np.uint8)
        table = _Pages(page[None], np.array([number]), _BRANCH, self.page_size, minimum=2)
        lo, hi, flags = (table.field(i) for i in range(3))
        for child in (lo | hi << 16 | flags << 32).tolist():
            self._visit(child)
            if level + 1 == depth:
                self.leaves.append(child)
            else:
                self._branch(child, level + 1, depth)

    def _leaves(self, numbers, root_leaf):
        """Check the leaf pages `numbers`; the number of records they hold."""
        pages = np.empty((len(numbers), self.page_size), np.uint8)
        for row, number in zip(pages, numbers):
            self.handle.seek(number * self.page_size)
            if self.handle.readinto(row) != self.page_size:
                raise DamagedError(f"data.mdb is cut short: page {number} is missing")
        table = _Pages(pages, np.array(numbers), _LEAF, self.page_size, minimum=0 if root_leaf else 1)
        lo, hi, flags = (table.field(i) for i in range(3))
        size = lo | hi << 16
        value_at = table.offsets + 8 + table.field(3)
        big = flags == _BIGDATA
        if ((flags != 0) & ~big).any():
            raise DamagedError(f"page {table.first(~big & (flags != 0))} holds a node of a kind "
                               "Caffe's databases never hold")
        if (value_at + np.where(big, 8, size) > self.page_size).any():
            raise DamagedError(f"page {table.first(value_at + np.where(big, 8, size) > self.page_size)} "
                               "has a value running past the page end")
        if big.any():
            rows, at = table.rows[big], value_at[big]
            first = pages[rows[:, None], at[:, None] + np.arange(8)].copy().view(_ORDER + "u8")[:, 0]
            spans = (_HEADER - 1 + size[big]) // self.page_size + 1
            outside = (first < 2) | (first >= self.pages)
            outside |= first.astype(np.int64) * ~outside + spans > self.pages
            if outside.any():
                raise DamagedError(f"page {numbers[int(rows[outside][0])]} refers to a value stored "
                                   f"past the end of the file's {self.pages} pages (the file may be "
                                   "cut short)")
        return len(table.offsets)


class _Pages:
    """The node tables of same-kind tree pages (rows of `pages`, page numbers `numbers`), checked:
    each page's number and kind, its node table's bounds, at least `minimum` nodes, and every node
    header and key inside its page. `rows` and `offsets` give each node's page row and offset."""

    def __init__(self, pages, numbers, kind, page_size, minimum):
        self.numbers = numbers
        words = pages.view(_U16)
        stored = pages[:, :8].copy().view(_ORDER + "u8")[:, 0]
        flags, lower, upper = (words[:, i].astype(np.int64) for i in (5, 6, 7))
        wrong = (stored != numbers) | (flags != kind)
        if wrong.any():
            row = int(np.argmax(wrong))
            raise DamagedError(f"page {numbers[row]} is not the {_KINDS[kind]} page expected there "
                               f"(it says page {stored[row]}, flags {flags[row]:#x}; zeroed or "
                               "overwritten)")
        counts = (lower - _HEADER) // 2
        broken = (lower < _HEADER) | (lower % 2 == 1) | (upper < lower) | (upper > page_size) | \
            (counts < minimum)
        if broken.any():
            row = int(np.argmax(broken))
            raise DamagedError(f"page {numbers[row]} has a broken node table (lower {lower[row]}, "
                               f"upper {upper[row]})")
        self.rows = np.repeat(np.arange(len(numbers)), counts)
        index = np.arange(len(self.rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        self.offsets = words[self.rows, _HEADER // 2 + index].astype(np.int64)
        outside = (self.offsets < upper[self.rows]) | (self.offsets + 8 > page_size) | \
            (self.offsets % 2 == 1)
        if outside.any():
            raise DamagedError(f"page {self.first(outside)} has a node outside its node area")
        self._words = words[self.rows[:, None], self.offsets[:, None] // 2 + np.arange(4)]
        self._words = self._words.astype(np.int64)
        if (self.offsets + 8 + self.field(3) > page_size).any():
            raise DamagedError(f"page {self.first(self.offsets + 8 + self.field(3) > page_size)} "
                               "has a key running past the page end")

    def field(self, index):
        """Node header field `index` (0 lo, 1 hi, 2 flags, 3 key size) of every node."""
        return self._words[:, index]

    def first(self, mask):
        """The page number of the first node where `mask` holds."""
        return self.numbers[self.rows[int(np.argmax(mask))]]


_KINDS = {_BRANCH: "branch", _LEAF: "leaf"}
