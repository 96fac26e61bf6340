"""The training crop's pixels, decoded and blurred as a region instead of a whole frame.

A 64x64 crop of a 320x240 frame is 5 % of its pixels; decoding and blurring the whole frame,
T times per sample, made the input pipeline most of a training step. Here each frame is decoded
only over the crop plus the blur's margin (DALI's `decoders.image_slice`: a region decode, on
the CPU and on the GPU's "mixed" decoder), blurred, then trimmed to the crop. Inside the frame
the margin gives the blur the real neighbours the whole-frame blur sees; at a frame border the
region stops at the border, where the blur reflects exactly as it does on the whole frame. So
the pixels are the whole-frame definition's (blurred whole, then cropped), bit for bit;
tests/test_region_input.py checks it against the whole-frame path, borders included.

The crop window is placed by DALI's own rule for `crop_pos_x/y` (anchor = round(pos * (W -
crop))), from the same uniform draws, so the region path and the whole-frame path (kept for that
test and for bench/loader.py) cut the same window from the same draws.
"""
import nvidia.dali.math as dmath
from nvidia.dali import fn, types


def crop_window(encoded, crop: int, pos_x, pos_y):
    """(x0, y0, shape): the crop's integer top-left corner and the frame's (H, W, C), read from
    the encoded frame's header (no decode)."""
    shape = fn.peek_image_shape(encoded, dtype=types.INT32)
    h, w = shape[0], shape[1]
    x0 = fn.cast(dmath.floor(pos_x * (w - crop) + 0.5), dtype=types.INT32)
    y0 = fn.cast(dmath.floor(pos_y * (h - crop) + 0.5), dtype=types.INT32)
    return x0, y0, shape


def region_window(x0, y0, shape, crop: int, margin: int):
    """The region to decode, the crop grown by `margin` on each side and clipped to the frame,
    as (anchor, size) for `decode_region`, and where the crop then sits in it, as (start, size)
    for `trim_flip`. Computed once per sample: every frame of a window has the same size."""
    h, w = shape[0], shape[1]
    rx0, ry0 = dmath.max(x0 - margin, 0), dmath.max(y0 - margin, 0)
    rw, rh = dmath.min(x0 + crop + margin, w) - rx0, dmath.min(y0 + crop + margin, h) - ry0
    dx, dy = x0 - rx0, y0 - ry0
    return (fn.stack(rx0, ry0), fn.stack(rw, rh)), (fn.stack(dx, dy), fn.stack(dx * 0 + crop, dy * 0 + crop))


def decode_region(encoded, device: str, region):
    """The frame's pixels over `region` (region_window's first half), decoded alone."""
    anchor, size = region
    return fn.decoders.image_slice(
        encoded, anchor, size, axis_names="WH", normalized_anchor=False, normalized_shape=False,
        device="mixed" if device == "gpu" else "cpu", output_type=types.RGB,
    )


def trim_flip(region, trim, mirror):
    """The crop out of a decoded region (region_window's second half), mirrored left-right
    where `mirror` is 1."""
    start, size = trim
    cut = fn.slice(region, start, size, axis_names="WH", normalized_anchor=False, normalized_shape=False)
    return fn.flip(cut, horizontal=mirror)
