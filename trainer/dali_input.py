"""Training batches: DALI reads the shards, decodes, blurs, crops and flips (and adds noise on a
GPU); torch adds the occlusion boxes (and the noise on the CPU). The validation set's whole
frames come from the same reader (`first_samples`).

Samples are single frames or clips of T frames (make-shards --clip-len). A clip's frames share
ONE crop window and ONE flip (the same random arguments feed every frame's op), or the model
could not learn to use its neighbours; blur, noise and boxes are drawn per frame, as `vrestore
degrade` draws them.

The pipelines are built from plain functions; the device is a parameter. Batches come out as
dicts of NCHW float tensors in [-1, 1], channels_last, on the training device.
"""
import json
from math import ceil

import numpy as np
import torch
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.plugin.base_iterator import LastBatchPolicy
from nvidia.dali.plugin.pytorch import DALIGenericIterator

from vrestore.pipeline.degrade.degradations import DegradationSpec, add_boxes, add_noise
from vrestore.pipeline.dataset.shard_set import ShardSet
from vrestore.trainer.config import check_crop

READER = "reader"


# ---- graph pieces, shared by the train and validation pipelines ----

def read_and_decode(shards: ShardSet, device: str, shard_id: int, num_shards: int, shuffle: bool, seed: int, initial_fill: int, with_meta: bool):
    """A sample's decoded RGB frames (a list of T; with the real preset, 2T: the clean frames,
    then their damaged copies), plus its json as a zero-padded byte row when asked (ragged bytes cannot cross into torch; padded to the batch's longest they can)."""
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
    encoded, meta = outputs[:images_end], outputs[images_end:]
    images = [fn.decoders.image(e, device="mixed" if device == "gpu" else "cpu", output_type=types.RGB) for e in encoded]
    return images, [fn.pad(m, fill_value=0) for m in meta]


def dali_blur(images, spec: DegradationSpec):
    sigma = spec.blur_sigma if spec.blur_sigma_max is None else fn.random.uniform(range=[spec.blur_sigma, spec.blur_sigma_max])
    return fn.gaussian_blur(images, window_size=spec.blur_window, sigma=sigma)


def dali_noise(images, spec: DegradationSpec):
    std = spec.noise_std if spec.noise_std_max is None else fn.random.uniform(range=[spec.noise_std, spec.noise_std_max])
    return fn.noise.gaussian(images, stddev=std)


def crop_flip(images, crop: int, pos_x, pos_y, mirror):
    return fn.crop_mirror_normalize(
        images, crop=(crop, crop), crop_pos_x=pos_x, crop_pos_y=pos_y, mirror=mirror,
        dtype=types.UINT8, output_layout="HWC",
    )


def clean_and_degraded(frames: list, spec, crop, pos_x, pos_y, mirror, noise_in_dali):
    """(clean centre frame, [degraded frame per frame]). Whole frames are blurred before
    cropping, so crop borders see real neighbours exactly as `vrestore degrade` does; one crop
    and one flip serve every frame of the clip and the clean centre alike."""
    degraded = []
    for images in frames:
        d = crop_flip(dali_blur(images, spec), crop, pos_x, pos_y, mirror)
        degraded.append(dali_noise(d, spec) if noise_in_dali else d)
    return crop_flip(frames[len(frames) // 2], crop, pos_x, pos_y, mirror), degraded


def frame_shape(images):
    """(H, W, C) of each decoded frame: boxes are sized on the frame, not the crop."""
    return images.shape(dtype=types.INT32)


def clean_and_damaged(frames: list, damaged: list, crop, pos_x, pos_y, mirror):
    """The real preset: the damage is in the shards (make-shards --preset real rendered it,
    encoder included); one crop and one flip for the clean centre and every damaged frame."""
    return crop_flip(frames[len(frames) // 2], crop, pos_x, pos_y, mirror), [crop_flip(d, crop, pos_x, pos_y, mirror) for d in damaged]


@pipeline_def
def train_pipeline(shards, spec, crop, device, shard_id, num_shards, shuffle_seed, initial_fill, noise_in_dali, with_meta=False):
    frames, meta = read_and_decode(shards, device, shard_id, num_shards, True, shuffle_seed, initial_fill, with_meta)
    pos_x, pos_y = fn.random.uniform(range=[0.0, 1.0]), fn.random.uniform(range=[0.0, 1.0])
    t = shards.clip_len
    if shards.preset == "real":
        clean, degraded = clean_and_damaged(frames[:t], frames[t:], crop, pos_x, pos_y, fn.random.coin_flip())
    else:
        clean, degraded = clean_and_degraded(frames, spec, crop, pos_x, pos_y, fn.random.coin_flip(), noise_in_dali)
    return (clean, *degraded, frame_shape(frames[0]), *meta)


@pipeline_def
def frames_pipeline(shards):
    """Whole decoded frames in shard order (no crop, no shuffle): the validation set's source."""
    frames, _ = read_and_decode(shards, "cpu", 0, 1, False, 0, 1, False)
    return tuple(frames)


def first_samples(shards: ShardSet, n: int) -> list:
    """The first `n` samples of the shards, each a (T, H, W, 3) uint8 array ((2T, H, W, 3) for
    the real preset: clean frames, then damaged): a fixed set, the same every run (make-shards
    mixes many videos into each shard, so not one clip's)."""
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

    def __init__(self, pipe, spec: DegradationSpec, device: torch.device, noise_in_dali: bool, box_seed: int,
                 with_meta: bool = False, box_rng_state=None, frames: int = 1, torch_noise: bool = True, boxes: bool = True):
        pipe.build()
        self.with_meta, self.frames = with_meta, frames
        self.iterator = DALIGenericIterator(
            [pipe], ["clean", *(f"degraded{i}" for i in range(frames)), "frame_shape"] + (["meta"] if with_meta else []), reader_name=READER, auto_reset=True,
            last_batch_policy=LastBatchPolicy.FILL,
        )
        self.spec, self.device, self.noise_in_dali = spec, device, noise_in_dali
        self.torch_noise, self.boxes = torch_noise and not noise_in_dali, boxes
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
            batch = assemble_batch(out, self.frames, self.spec, self.generator, self.device, self.torch_noise, self.boxes)
            if self.with_meta:
                batch["meta"] = [json.loads(bytes(row).rstrip(b"\0")) for row in out["meta"].cpu().numpy()]
            yield batch


def assemble_batch(out: dict, frames: int, spec: DegradationSpec, generator: torch.Generator, device: torch.device,
                   torch_noise: bool, boxes: bool = True) -> dict:
    """A training batch from one DALI batch ("clean", "degraded0".., NHWC uint8, and each
    frame's "frame_shape"): noise (`torch_noise`: DALI did not add it, and the seed preset) and
    boxes drawn in torch, [-1, 1].
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
    stack, masks = [], []
    for i in range(frames):
        degraded = out[f"degraded{i}"].to(device, non_blocking=True).permute(0, 3, 1, 2).float()
        if torch_noise:
            # DALI's CPU noise op is the CPU pipeline's bottleneck; torch's randn follows
            # the same spec (additive, rounded, clipped) at ~9x the speed.
            degraded = add_noise(degraded, spec, generator)
        if boxes:
            degraded, mask = add_boxes(degraded, spec, generator, frame_hw)  # new boxes per frame
        else:
            mask = torch.zeros_like(degraded[:, :1], dtype=torch.bool)
        stack.append(degraded)
        masks.append(mask)
    degraded = stack[0] if frames == 1 else torch.cat(stack, dim=1).contiguous(memory_format=torch.channels_last)
    return {
        "clean": clean.float().div_(127.5).sub_(1.0),
        "degraded": degraded.div_(127.5).sub_(1.0),
        "mask": masks[frames // 2],
    }


def dali_device(device: torch.device) -> str:
    return "gpu" if device.type == "cuda" else "cpu"


def train_batches(
    shards: ShardSet, spec: DegradationSpec, batch_size: int, crop: int, device: torch.device,
    rank: int = 0, world_size: int = 1, seed: int = 0, num_threads: int = 2, initial_fill: int = 1024, with_meta: bool = False,
    state: dict = None, prefetch: int = 2,
) -> DegradedBatches:
    check_crop(crop, shards.min_side)
    gpu = dali_device(device) == "gpu"
    pipe = train_pipeline(
        shards, spec, crop, dali_device(device), rank, world_size, seed, min(initial_fill, shards.num_samples), gpu and shards.preset != "real", with_meta,
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
        pipe, spec, device, noise_in_dali=gpu and not real, box_seed=seed * 1000 + rank, with_meta=with_meta,
        box_rng_state=state["torch_rng"] if state else None, frames=shards.clip_len,
        torch_noise=not real, boxes=not real or bool((shards.real or {}).get("boxes")),
    )


def batches_per_epoch(num_samples: int, batch_size: int, world_size: int) -> int:
    """What `len(train_batches(...))` is: the rank's padded part, in full batches."""
    return ceil(ceil(num_samples / world_size) / batch_size)
