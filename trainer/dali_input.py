"""Training batches: DALI reads the shards, decodes only each crop's region, blurs, crops and
flips (on the GPU when training on one); torch adds the noise and the occlusion boxes with
`degrade`'s own functions, on the training device. The validation set's whole frames come from
the same reader (`spread_samples`).

Samples are single frames or windows of T frames (make-shards --clip-len). A window's frames
share ONE crop window and ONE flip (the same random arguments feed every frame's op), or the
model could not learn to use its neighbours; blur, noise and boxes are drawn per frame, as
`vrestore degrade` draws them.

The pipelines are built from plain functions; the device is a parameter. Batches come out as
dicts of NCHW float tensors in [-1, 1], channels_last, on the training device.
"""
import contextlib
import json
from math import ceil

import numpy as np
import torch
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.plugin.base_iterator import LastBatchPolicy
from nvidia.dali.plugin.pytorch import DALIGenericIterator

from vrestore.pipeline.degrade.degradations import DegradationSpec, add_boxes, add_noise
from vrestore.pipeline.dataset.shard_set import ShardSet, spread
from vrestore.trainer.config import check_crop
from vrestore.trainer.dali_region import crop_window, decode_region, region_window, trim_flip

READER = "reader"


# ---- graph pieces, shared by the train and validation pipelines ----

def read_samples(shards: ShardSet, shard_id: int, num_shards: int, shuffle: bool, seed: int, initial_fill: int, with_meta: bool):
    """A sample's encoded frames (a list of T; with the real preset, 2T: the clean frames, then
    their damaged copies), plus its json as a zero-padded byte row when asked (ragged bytes
    cannot cross into torch; padded to the batch's longest they can)."""
    outputs = fn.readers.webdataset(
        paths=shards.tars, index_paths=shards.indexes, ext=shards.image_exts + shards.damaged_exts + (["json"] if with_meta else []),
        missing_component_behavior="error", shard_id=shard_id, num_shards=num_shards,
        # pad_last_batch: every rank gets the same number of batches and never reads
        # into the next rank's part at the end of an epoch.
        pad_last_batch=True, random_shuffle=shuffle, initial_fill=initial_fill,
        # Tar order reshuffled every epoch with one seed on all ranks, so ranks stay disjoint.
        shuffle_after_epoch=shuffle, shuffle_after_epoch_seed=seed if shuffle else None,
        name=READER,
    )
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]  # one ext: a node, not a list
    images_end = shards.clip_len + len(shards.damaged_exts)
    return outputs[:images_end], [fn.pad(m, fill_value=0) for m in outputs[images_end:]]


def decode_whole(encoded: list, device: str) -> list:
    return [fn.decoders.image(e, device="mixed" if device == "gpu" else "cpu", output_type=types.RGB) for e in encoded]


def blur_sigmas(spec: DegradationSpec, frames: int = 0):
    """The blur sigma: the spec's number, or a DALI draw from its range, one per frame of a
    sequence of `frames` (`degrade` draws per frame too) or one per image (`frames` 0)."""
    if spec.blur_sigma_max is None:
        return spec.blur_sigma
    return fn.random.uniform(range=[spec.blur_sigma, spec.blur_sigma_max], shape=[frames] if frames else None)


def dali_blur(images, spec: DegradationSpec, sigma, frames: int = 0):
    """The seed preset's blur on decoded images (`frames` > 0: sequences of that many, FHWC, each
    frame with its own sigma when `sigma` holds one per frame): degradations.gaussian_blur's."""
    if frames and not isinstance(sigma, (int, float)):
        sigma = fn.per_frame(sigma)
    return fn.gaussian_blur(images, window_size=spec.blur_window, sigma=sigma)


def region_crops(encoded: list, t: int, spec, crop, device, pos_x, pos_y, mirror):
    """(clean centre crop (H, W, 3), degraded crops (T, H, W, 3), frame shape), each frame
    decoded only over the crop and, for the seed preset, the blur's margin (dali_region.py).
    One window and one flip serve every frame of the clip and the clean centre alike. The
    real preset's damage is in the shards (make-shards --preset real rendered it, encoder
    included): its damaged frames (encoded[t:]) are cut at the same window, with no margin.
    The T frames travel as one sequence (layout FHWC): one blur, slice and flip for all."""
    real = len(encoded) > t
    # One window for the sample, placed on its centre frame: the frames of a window (and the
    # real preset's damaged copies) all have the centre's size, as frames of one video do.
    x0, y0, shape = crop_window(encoded[t // 2], crop, pos_x, pos_y)
    region, trim = region_window(x0, y0, shape, crop, 0 if real else spec.blur_window // 2)
    if real:
        clean = trim_flip(decode_region(encoded[t // 2], device, region), trim, mirror)
        damaged = fn.stack(*[decode_region(e, device, region) for e in encoded[t:]], axis_name="F")
        return clean, trim_flip(damaged, trim, mirror), shape
    pixels = [decode_region(e, device, region) for e in encoded]
    blurred = dali_blur(fn.stack(*pixels, axis_name="F"), spec, blur_sigmas(spec, t), t)
    return trim_flip(pixels[t // 2], trim, mirror), trim_flip(blurred, trim, mirror), shape


def crop_flip(images, crop: int, pos_x, pos_y, mirror):
    return fn.crop_mirror_normalize(
        images, crop=(crop, crop), crop_pos_x=pos_x, crop_pos_y=pos_y, mirror=mirror,
        dtype=types.UINT8, output_layout="HWC",
    )


def whole_frame_crops(encoded: list, t: int, spec, crop, device, pos_x, pos_y, mirror):
    """What region_crops gives, the way it was made before it: every frame decoded and blurred
    whole, then cropped (the definition region_crops keeps; its test and bench/loader.py's
    baseline)."""
    frames = decode_whole(encoded, device)
    cut = lambda images: crop_flip(images, crop, pos_x, pos_y, mirror)
    if len(frames) > t:  # the real preset: its damaged frames, as stored
        degraded = [cut(d) for d in frames[t:]]
    else:
        degraded = [cut(dali_blur(images, spec, blur_sigmas(spec))) for images in frames]
    return cut(frames[t // 2]), fn.stack(*degraded, axis_name="F"), frames[0].shape(dtype=types.INT32)


@pipeline_def
def train_pipeline(shards, spec, crop, device, shard_id, num_shards, shuffle_seed, initial_fill, with_meta=False, region=True):
    """One batch of (clean centre crop, the T degraded crops, frame shape (H, W, C): boxes are
    sized on the frame, not the crop, [json]). `region=False` decodes whole frames (slower, same
    pixels)."""
    encoded, meta = read_samples(shards, shard_id, num_shards, True, shuffle_seed, initial_fill, with_meta)
    pos_x, pos_y = fn.random.uniform(range=[0.0, 1.0]), fn.random.uniform(range=[0.0, 1.0])
    crops = region_crops if region else whole_frame_crops
    clean, degraded, shape = crops(encoded, shards.clip_len, spec, crop, device, pos_x, pos_y, fn.random.coin_flip())
    return (clean, degraded, shape, *meta)


@pipeline_def
def frames_pipeline(shards):
    """Whole decoded frames in shard order (no crop, no shuffle): the validation set's source."""
    encoded, _ = read_samples(shards, 0, 1, False, 0, 1, False)
    return tuple(decode_whole(encoded, "cpu"))


def spread_samples(shards: ShardSet, n: int) -> list:
    """`n` samples spread evenly over the shards (shard_set.spread), each a (T, H, W, 3) uint8
    array ((2T, H, W, 3) for the real preset: clean frames, then damaged): a fixed set, the same
    every run, from many videos."""
    shards = spread(shards, n)
    pipe = frames_pipeline(shards, batch_size=1, num_threads=1, device_id=None, seed=0)
    pipe.build()
    return [np.stack([frame.as_array()[0] for frame in pipe.run()]) for _ in range(min(n, shards.num_samples))]


# ---- torch side ----

class DegradedBatches:
    """Iterate {"clean", "degraded", "mask"} batches; `len()` is batches per epoch per rank.
    "degraded" is (N, 3T, H, W), the T frames of a clip stacked frame-major on channels;
    "clean" (N, 3, H, W) and "mask" (N, 1, H, W) are the centre frame's.

    Last-batch policy: the last batch is filled with repeated samples (FILL), so every rank runs
    ceil(ceil(N / ranks) / batch) full batches.
    """

    def __init__(self, pipe, spec: DegradationSpec, device: torch.device, box_seed: int, with_meta: bool = False,
                 box_rng_state=None, frames: int = 1, noise: bool = True, boxes: bool = True):
        pipe.build()
        self.with_meta, self.frames = with_meta, frames
        self.iterator = DALIGenericIterator(
            [pipe], ["clean", "degraded", "frame_shape"] + (["meta"] if with_meta else []), reader_name=READER, auto_reset=True,
            last_batch_policy=LastBatchPolicy.FILL,
        )
        self.spec, self.device, self.noise, self.boxes = spec, device, noise, boxes
        self.generator = torch.Generator(device=device).manual_seed(box_seed)
        if box_rng_state is not None:
            self.generator.set_state(box_rng_state)

    def __len__(self):
        return len(self.iterator)

    def state(self) -> dict:
        """Where the stream is: DALI's reader position and RNGs, and the torch box/noise RNG.
        `train_batches(..., state=this)` continues with exactly the batches that would have come."""
        return {"dali": self.iterator.checkpoints()[0], "torch_rng": self.generator.get_state()}

    def __iter__(self):
        for (out,) in self.iterator:
            with one_cpu_thread(self.device):
                batch = assemble_batch(out, self.frames, self.spec, self.generator, self.device, self.noise, self.boxes)
            if self.with_meta:
                batch["meta"] = [json.loads(bytes(row).rstrip(b"\0")) for row in out["meta"].cpu().numpy()]
            yield batch


@contextlib.contextmanager
def one_cpu_thread(device: torch.device):
    """On the CPU, the batch's noise and boxes in one torch thread: DALI's threads are busy with
    the next batch meanwhile, and torch's parallel loops stall at every barrier when a core they
    split the work over is taken (measured in bench/loader.py's setting: 1.2-1.4x the batches/s
    of two threads). The training step keeps its threads."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def assemble_batch(out: dict, frames: int, spec: DegradationSpec, generator: torch.Generator, device: torch.device,
                   noise: bool = True, boxes: bool = True) -> dict:
    """A training batch from one DALI batch ("clean" (N, H, W, 3) and "degraded" (N, T, H, W, 3)
    uint8, and each frame's "frame_shape"): noise (the seed preset) and boxes drawn in torch, on
    the training device, with `add_noise` and `add_boxes`, `degrade`'s own functions; [-1, 1].
    Nothing here waits for the GPU, so the next batch is prepared while a step runs."""
    # DALI gives NHWC; its NCHW permute is channels_last in memory, so no copy is made.
    clean = out["clean"].to(device, non_blocking=True).permute(0, 3, 1, 2)
    frame_hw = out["frame_shape"][:, :2]
    if frame_hw.device.type == "cpu" and device.type == "cuda":
        # DALI returns shapes on the host, and a blocking copy to the GPU would wait for the
        # step in flight. Staged in torch's own pinned memory: that block is not reused until
        # the copy has run (DALI's buffer behind `out` may be, once `out` is dropped).
        staged = torch.empty(frame_hw.shape, dtype=frame_hw.dtype, pin_memory=True)
        frame_hw = staged.copy_(frame_hw)
    frame_hw = frame_hw.to(device, non_blocking=True)
    # All T frames at once, (N*T, 3, H, W) sample-major, contiguous NCHW (one uint8 copy): one
    # noise draw and one box draw per frame, in one call each (small calls cost more than pixels).
    n, _, h, w, _ = out["degraded"].shape
    degraded = out["degraded"].to(device, non_blocking=True).permute(0, 1, 4, 2, 3).reshape(n * frames, 3, h, w).float()
    if noise:
        degraded = add_noise(degraded, spec, generator)
    if boxes:
        per_frame_hw = frame_hw[:, None].expand(n, frames, 2).reshape(n * frames, 2)  # (expand: no device sync)
        degraded, masks = add_boxes(degraded, spec, generator, per_frame_hw)  # new boxes per frame
    else:
        masks = torch.zeros_like(degraded[:, :1], dtype=torch.bool)
    # (N, 3T, H, W): the frames stacked frame-major on channels (t-k .. t+k), channels_last
    degraded = degraded.unflatten(0, (n, frames)).flatten(1, 2).contiguous(memory_format=torch.channels_last)
    return {
        "clean": clean.float().div_(127.5).sub_(1.0),
        "degraded": degraded.div_(127.5).sub_(1.0),
        "mask": masks.unflatten(0, (n, frames))[:, frames // 2],
    }


def dali_device(device: torch.device) -> str:
    return "gpu" if device.type == "cuda" else "cpu"


def train_batches(
    shards: ShardSet, spec: DegradationSpec, batch_size: int, crop: int, device: torch.device,
    rank: int = 0, world_size: int = 1, seed: int = 0, num_threads: int = 2, initial_fill: int = 1024, with_meta: bool = False,
    state: dict = None, prefetch: int = 2, region: bool = True,
) -> DegradedBatches:
    check_crop(crop, shards.min_side)
    gpu = dali_device(device) == "gpu"
    pipe = train_pipeline(
        shards, spec, crop, dali_device(device), rank, world_size, seed, min(initial_fill, shards.num_samples), with_meta, region,
        batch_size=batch_size, num_threads=num_threads,
        # CPU-only DALI wants device_id=None (not 0, -1 or CPU_ONLY_DEVICE_ID).
        device_id=(device.index or 0) if gpu else None,
        seed=seed * 1000 + rank,  # crops, flips, sigma draws differ per rank
        prefetch_queue_depth=prefetch,
        # DALI tracks reader positions and RNGs so a resumed run gets the very batches it would
        # have had (documented as free of cost).
        enable_checkpointing=True, checkpoint=state["dali"] if state else None,
    )
    real = shards.preset == "real"
    return DegradedBatches(
        pipe, spec, device, box_seed=seed * 1000 + rank, with_meta=with_meta,
        box_rng_state=state["torch_rng"] if state else None, frames=shards.clip_len,
        noise=not real, boxes=not real or bool((shards.real or {}).get("boxes")),
    )


def batches_per_epoch(num_samples: int, batch_size: int, world_size: int) -> int:
    """What `len(train_batches(...))` is: the rank's padded part, in full batches."""
    return ceil(ceil(num_samples / world_size) / batch_size)
