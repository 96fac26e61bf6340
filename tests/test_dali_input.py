import pytest
import torch

from vrestore.pipeline.degrade.degradations import DegradationSpec
from vrestore.pipeline.dataset.shard_set import load_shard_set
from vrestore.trainer.dali_input import batches_per_epoch, train_batches, train_pipeline

CPU = torch.device("cpu")
SPEC = DegradationSpec()


def key(meta):
    return f"{meta['video']}/{meta['frame']:06d}"


def test_batches_are_dense_nchw_channels_last_in_range(sample_shards):
    shards = load_shard_set(sample_shards)
    batch = next(iter(train_batches(shards, SPEC, batch_size=6, crop=64, device=CPU)))
    for name in ("clean", "degraded"):
        x = batch[name]
        assert x.shape == (6, 3, 64, 64) and x.dtype == torch.float32
        assert x.is_contiguous(memory_format=torch.channels_last)
        assert -1.0 <= x.min().item() and x.max().item() <= 1.0
    assert batch["mask"].shape == (6, 1, 64, 64) and batch["mask"].dtype == torch.bool
    gray = 128 / 127.5 - 1
    # the box fill is the constant 128 scaled once in float32 (x / 127.5 - 1): one rounding, at
    # most 1 ulp (6e-8) from the float64 value on any CPU; 1e-6 is 16 ulps, a wrong gray 4e-3
    assert torch.allclose(batch["degraded"][batch["mask"].expand(-1, 3, -1, -1)], torch.tensor(gray), atol=1e-6)
    # outside the boxes the degraded frame is the clean one blurred and noisy: close, not equal
    diff = (batch["degraded"] - batch["clean"]).abs()[~batch["mask"].expand(-1, 3, -1, -1)] * 127.5
    assert 5 < diff.mean().item() < 30


def test_two_ranks_read_disjoint_parts_that_cover_every_sample(sample_shards):
    """In every epoch, the first and the later ones (the reader reshuffles after each epoch, one
    seed on all ranks), the ranks' parts are disjoint and together cover the set."""
    shards = load_shard_set(sample_shards)
    b, world, epochs = 16, 2, 3
    seen = [[None] * epochs for _ in range(world)]
    for rank in range(world):
        loader = train_batches(shards, SPEC, b, 64, CPU, rank=rank, world_size=world, with_meta=True)
        assert len(loader) == batches_per_epoch(shards.num_samples, b, world)
        for epoch in range(epochs):
            batches = list(loader)  # one epoch: the iterator stops by itself (reader_name)
            assert len(batches) == len(loader)
            assert all(x["clean"].shape[0] == b for x in batches)  # FILL: full batches only
            seen[rank][epoch] = {key(m) for x in batches for m in x["meta"]}
    for epoch in range(epochs):
        assert not seen[0][epoch] & seen[1][epoch], epoch
        assert len(seen[0][epoch] | seen[1][epoch]) == shards.num_samples, epoch


def test_a_second_epoch_runs_with_the_same_length(sample_shards):
    shards = load_shard_set(sample_shards)
    loader = train_batches(shards, SPEC, 32, 64, CPU)
    assert len(list(loader)) == len(list(loader)) == len(loader)


def test_crop_larger_than_frames_is_a_clear_error(sample_shards):
    with pytest.raises(ValueError, match="crop 512"):
        train_batches(load_shard_set(sample_shards), SPEC, 4, 512, CPU)


def gpu_graph_ops(shards, region: bool) -> dict:
    """{op schema: devices of its outputs} of the GPU training graph. Building the graph needs
    no GPU; running it would."""
    pipe = train_pipeline(shards, SPEC, 64, "gpu", 0, 1, 0, 64, region=region, batch_size=4, num_threads=1, device_id=0)
    pipe._build_graph()
    by_kind = {}
    for op in pipe._ops:
        by_kind.setdefault(op._op.schema_name, set()).add(op.outputs[0].device)
    return by_kind


def test_with_a_gpu_every_op_after_the_decoder_runs_on_it(sample_shards):
    by_kind = gpu_graph_ops(load_shard_set(sample_shards), region=True)
    assert by_kind["readers__Webdataset"] == {"cpu"}
    assert by_kind["decoders__ImageSlice"] == {"gpu"}  # "mixed": CPU parse, GPU decode of the region
    for schema in ("GaussianBlur", "Slice", "Flip"):
        assert by_kind[schema] == {"gpu"}, schema
    assert by_kind["Stack"] == {"cpu", "gpu"}  # the T frames' pixels into one sequence, and the window's numbers
    # on the CPU only: the per-sample random arguments (crop position, flip), the frame shapes
    # read from the headers, and the window's integer arithmetic (metadata, no pixels)
    assert {s for s, devices in by_kind.items() if "cpu" in devices} == {
        "readers__Webdataset", "random__Uniform", "random__CoinFlip", "PeekImageShape",
        "_TensorSubscript", "_ArithmeticGenericOp", "Cast", "Stack",
    }
    # the whole-frame path (bench/loader.py's baseline) keeps every pixel op on the GPU as well
    whole = gpu_graph_ops(load_shard_set(sample_shards), region=False)
    assert whole["decoders__Image"] == {"gpu"} and whole["CropMirrorNormalize"] == {"gpu"}
