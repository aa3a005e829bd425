"""HDF5Data and HDF5Output: Caffe's generic (untransformed) HDF5 input and output layers."""
import os

import numpy as np

from .. import device
from ..distributed import shares
from ..errors import PclError
from ..io import atomic
from ..proto import caffe_pb2
from . import register
from .base import Layer


def read_hdf5_list(source, layer):
    """The file names listed in `source` (whitespace-separated, as Caffe reads them); a clear error
    if the list cannot be opened or is empty (errors are raised through `layer`)."""
    try:
        with open(source, encoding="utf-8") as handle:
            names = handle.read().split()
    except OSError as exc:
        raise layer.error(f'cannot open the source list "{source}" ({exc.strerror}); give the path '
                         f"of a text file that lists one .h5 file a line") from None
    if not names:
        raise layer.error(f'the source list "{source}" names no HDF5 file; list at least one .h5 file')
    return names


@register("HDF5Data")
class HDF5DataLayer(Layer):
    """Rows of HDF5 datasets, `batch_size` at a time; one top per dataset, named like the top.

    `hdf5_data_param.source` is a text file listing .h5 files (paths as given, i.e. relative to the
    working directory, as in Caffe). Every file must hold a dataset for every top name; datasets
    of one file share their first dimension (the rows). A top has shape
    (batch_size, *dataset.shape[1:]). Rows are read in order (or in a random permutation with
    `shuffle`, re-drawn at every pass), moving on to the next file (re-shuffled file order with
    `shuffle`) when a file is used up and wrapping around after the last. No bottoms, no backward,
    no transform_param (the data is used as stored, converted to the net's dtype). Shuffles draw
    from the global generator; `get_run_state()` / `set_run_state()` save and restore the file and
    row orders and positions, for an exact resume. In data-parallel training a TRAIN layer reads
    its rank's share of each file's rows (see distributed/shares.py).
    """

    exact_num_bottom = 0
    min_top = 1

    def setup(self, bottom, top):
        if self.param.HasField("transform_param"):
            raise self.error("does not transform data; remove transform_param (HDF5 data is used "
                             "as stored)")
        param = self.param.hdf5_data_param
        if param.batch_size <= 0:
            raise self.error("hdf5_data_param.batch_size must be a positive number; found "
                             f"{param.batch_size}")
        self.batch_size = param.batch_size
        self.shuffle = param.shuffle
        self.dataset_names = list(self.param.top)
        if len(self.dataset_names) != len(top):
            raise self.error(f"each top names a dataset, but the layer lists {len(self.dataset_names)} "
                             f"top names for {len(top)} tops")
        self.filenames = read_hdf5_list(param.source, self)
        self.file_order = np.arange(len(self.filenames))
        if self.shuffle:
            device.rng().shuffle(self.file_order)
        self.current_file = 0
        self._load_file(self.filenames[self.file_order[0]])
        self._order_rows()
        self.current_row = 0
        for blob, rows in zip(top, self.rows):
            blob.reshape((self.batch_size,) + rows.shape[1:])

    def _load_file(self, filename):
        import h5py  # noqa: PLC0415 - only needed by HDF5 layers

        try:
            handle = h5py.File(filename, "r")
        except OSError as exc:
            raise self.error(f'cannot open HDF5 file "{filename}" ({exc}); paths in '
                             f'"{self.param.hdf5_data_param.source}" are relative to the working '
                             "directory") from None
        try:
            with handle:
                self.rows = [self._read_dataset(handle, filename, name)
                             for name in self.dataset_names]
        except (OSError, KeyError, RuntimeError, ValueError) as exc:  # h5py's errors on damaged files
            raise self.error(f'HDF5 file "{filename}" is damaged ({exc}); write it again or restore '
                             "it from a copy") from None
        num = self.rows[0].shape[0]
        for name, rows in zip(self.dataset_names, self.rows):
            if rows.shape[0] != num:
                raise self.error(f'datasets of "{filename}" must have the same number of rows: '
                                 f'"{self.dataset_names[0]}" has {num}, "{name}" has {rows.shape[0]}')
        if num == 0:
            raise self.error(f'HDF5 file "{filename}" holds no rows; remove it from the list')
        what = f'layer "{self.name}" (HDF5Data): HDF5 file "{filename}"'
        self.rows = [shares.own_items(rows, self.phase, what, "rows") for rows in self.rows]

    def _order_rows(self):
        """Read the loaded file's rows in order, or in a new random order with `shuffle`."""
        self.row_order = np.arange(len(self.rows[0]))
        if self.shuffle:
            device.rng().shuffle(self.row_order)

    def _read_dataset(self, handle, filename, name):
        if name not in handle or not hasattr(handle[name], "dtype"):
            raise self.error(f'HDF5 file "{filename}" has no dataset "{name}"; each top must name a '
                             f"dataset (found: {', '.join(sorted(handle)) or 'none'})")
        dataset = handle[name]
        if dataset.dtype.kind not in "fiub":
            raise self.error(f'dataset "{name}" of "{filename}" has type {dataset.dtype}; only numeric '
                             "(float or integer) datasets can be read")
        if dataset.ndim < 1:
            raise self.error(f'dataset "{name}" of "{filename}" is a scalar; it needs at least one '
                             "axis (the rows)")
        return np.asarray(dataset[...], dtype=self.dtype)

    def reshape(self, bottom, top):
        pass

    def _next_file(self):
        """Move to the next file (wrapping around, re-shuffling the file order at the wrap)."""
        if len(self.filenames) > 1:
            self.current_file += 1
            if self.current_file == len(self.filenames):
                self.current_file = 0
                if self.shuffle:
                    device.rng().shuffle(self.file_order)
            self._load_file(self.filenames[self.file_order[self.current_file]])
            self._order_rows()
        elif self.shuffle:
            device.rng().shuffle(self.row_order)
        self.current_row = 0

    def get_run_state(self):
        """The file and row orders and where the next batch starts, as a LayerRunState."""
        state = caffe_pb2.LayerRunState(source=self.param.hdf5_data_param.source,
                                        file=self.current_file, position=self.current_row)
        state.file_order.extend(self.file_order.tolist())
        state.order.extend(self.row_order.tolist())
        return state

    def set_run_state(self, state):
        """Continue from a `get_run_state()`; a PclError (and no change) if it does not fit."""
        source = self.param.hdf5_data_param.source
        if state.source != source:
            raise PclError(f'it read "{state.source}" when the snapshot was taken but reads '
                           f'"{source}" now')
        file_order = _permutation(state.file_order, len(self.filenames), "file order", "files")
        if not 0 <= state.file < len(file_order):
            raise PclError(f"its saved file index {state.file} is not one of its "
                           f"{len(file_order)} files")
        kept = self.rows
        try:
            self._load_file(self.filenames[file_order[state.file]])
            row_order = _permutation(state.order, len(self.rows[0]), "row order", "rows")
            if not 0 <= state.position < len(row_order):
                raise PclError(f"its saved row {state.position} is not one of the "
                               f"{len(row_order)} rows of its file")
        except PclError:
            self.rows = kept
            raise
        self.file_order, self.current_file = file_order, state.file
        self.row_order, self.current_row = row_order, state.position

    def forward(self, bottom, top):
        outputs = [blob.mutable_cpu_data() for blob in top]
        filled = 0
        while filled < self.batch_size:
            take = min(self.batch_size - filled, len(self.row_order) - self.current_row)
            picked = self.row_order[self.current_row:self.current_row + take]
            for out, rows in zip(outputs, self.rows):
                if rows.shape[1:] != out.shape[1:]:
                    raise self.error(f"rows of shape {rows.shape[1:]} do not fit the top's row shape "
                                     f"{out.shape[1:]}; all HDF5 files must have the same row shapes")
                out[filled:filled + take] = rows[picked]
            filled += take
            self.current_row += take
            if self.current_row == len(self.row_order):
                self._next_file()

    def backward(self, top, propagate_down, bottom):
        pass


def _permutation(values, count, what, unit):
    """`values` as an array if they are a permutation of 0..count-1; a PclError otherwise."""
    array = np.asarray(values, dtype=np.int64)
    if len(array) != count or not np.array_equal(np.sort(array), np.arange(count)):
        raise PclError(f"its saved {what} does not fit the {count} {unit} it reads now")
    return array


@register("HDF5Output")
class HDF5OutputLayer(Layer):
    """Writes its two bottoms to `hdf5_output_param.file_name` as datasets "data" and "label".

    Bottoms: data (N x ...) and label (N x ...), same N; stored with Caffe's legacy 4-d shapes
    (num, channels, height, width) in the net's dtype. The file is created (truncated) at setup.
    Caffe can write only one batch (a second pass fails); here every further forward pass appends
    its rows to both datasets. No tops; backward passes no gradient (zero bottom diffs).
    """

    exact_num_bottom = 2
    exact_num_top = 0

    def setup(self, bottom, top):
        import h5py  # noqa: PLC0415 - only needed by HDF5 layers

        self.file_name = self.param.hdf5_output_param.file_name
        if not self.file_name:
            raise self.error("hdf5_output_param.file_name is empty; give the .h5 file to write")
        self._check_space(0)
        try:
            h5py.File(self.file_name, "w").close()
        except (OSError, RuntimeError) as exc:
            raise self._write_error("create", exc) from None

    def reshape(self, bottom, top):
        if bottom[0].shape[:1] != bottom[1].shape[:1]:
            raise self.error(f"data and label must have the same num (first dimension): "
                             f"{bottom[0].shape} vs {bottom[1].shape}")
        for blob in bottom:
            if blob.num_axes > 4:
                raise self.error(f"bottoms may have at most 4 axes; found shape {blob.shape}")

    def forward(self, bottom, top):
        self._check_space(sum(blob.count for blob in bottom) * self.dtype.itemsize)
        try:
            self._append(bottom)
        except (OSError, RuntimeError) as exc:  # h5py's errors when a write fails
            raise self._write_error("write", exc) from None

    def _check_space(self, nbytes):
        """Refuse to write `nbytes` on a disk without room for them (see atomic.lacks_room)."""
        if atomic.lacks_room(self.file_name, nbytes):
            raise self._write_error("write", atomic.NO_SPACE)

    def _write_error(self, doing, exc):
        return self.error(atomic.cannot(doing, f'"{self.file_name}"',
                                        os.path.dirname(os.path.abspath(self.file_name)), exc))

    def _append(self, bottom):
        import h5py  # noqa: PLC0415

        with h5py.File(self.file_name, "a") as handle:
            for name, blob in zip(("data", "label"), bottom):
                rows = np.asarray(blob.cpu_data()).reshape(
                    blob.num, blob.channels, blob.height, blob.width)
                if name not in handle:
                    handle.create_dataset(name, data=rows, maxshape=(None,) + rows.shape[1:],
                                          chunks=True)
                    continue
                dataset = handle[name]
                if dataset.shape[1:] != rows.shape[1:]:
                    raise self.error(f'bottom "{name}" changed shape from {dataset.shape[1:]} to '
                                     f"{rows.shape[1:]} between passes; cannot append to one dataset")
                start = dataset.shape[0]
                dataset.resize(start + rows.shape[0], axis=0)
                dataset[start:] = rows

    def backward(self, top, propagate_down, bottom):
        for down, blob in zip(propagate_down, bottom):
            if down:
                blob.write_diff()[...] = 0

