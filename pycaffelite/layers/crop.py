"""Crop: cut the first bottom down to the second bottom's shape from a given axis on."""
from . import register
from .base import Layer


@register("Crop")
class CropLayer(Layer):
    """Crop bottom[0] to the shape of bottom[1] on the axes from `axis` on (negative counts from
    the end; default 2, the spatial axes of N x C x H x W blobs); earlier axes are kept whole.

        top[i_0, ..., i_last] = bottom0[i_0 + off_0, ..., i_last + off_last]

    off_j = 0 before `axis`; from `axis` on, one `offset` for every cropped axis, one offset per
    cropped axis, or none (all 0). bottom[1] only supplies its shape.
    bottom: A (d_0, ..., d_last), B (e_0, ..., e_last)
    top:    (d_0, ..., d_{axis-1}, e_axis, ..., e_last), needing off_j + e_j <= d_j.

    Backward: bottom0_diff is top_diff inside the crop window and 0 elsewhere; bottom1's diff
    (asked for only by force_backward) is 0.
    """

    exact_num_bottom = 2
    exact_num_top = 1
    allows_in_place = False

    def reshape(self, bottom, top):
        p = self.param.crop_param
        data, ref = bottom[0].shape, bottom[1].shape
        if not -len(data) <= p.axis < len(data):
            raise self.error(f"crop_param axis {p.axis} is out of range for bottom 0 of shape "
                             f"{data}; choose the first axis to crop")
        start = p.axis % len(data)
        if len(p.offset) > 1 and len(p.offset) != len(data) - start:
            raise self.error(f"give one offset, or one per cropped axis ({len(data) - start} from "
                             f"axis {start}), found {len(p.offset)}")
        if len(ref) < len(data):
            raise self.error(f"bottom 1 {ref} must have at least as many axes as bottom 0 {data} "
                             f"to give the crop size")
        window = []
        for i, size in enumerate(data):
            if i < start:
                window.append(slice(None))
                continue
            offset = p.offset[i - start] if len(p.offset) > 1 else p.offset[0] if p.offset else 0
            if offset + ref[i] > size:
                raise self.error(f"the crop of axis {i} (size {ref[i]} at offset {offset}) does not "
                                 f"fit into bottom 0's size {size} there; use a smaller offset")
            window.append(slice(offset, offset + ref[i]))
        self.window = tuple(window)
        top[0].reshape(data[:start] + tuple(ref[start:len(data)]))

    def forward(self, bottom, top):
        top[0].write_data()[...] = bottom[0].read_data()[self.window]

    def backward(self, top, propagate_down, bottom):
        if propagate_down[0]:
            diff = bottom[0].write_diff()
            diff[...] = 0
            diff[self.window] = top[0].read_diff()
        if propagate_down[1]:
            bottom[1].write_diff()[...] = 0
