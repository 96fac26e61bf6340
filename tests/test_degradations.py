import numpy as np
import pytest
import torch
from nvidia.dali import fn, pipeline_def, types

from vrestore.pipeline.degrade.degradations import DegradationSpec, add_boxes, add_noise, blur, box_mask, degrade, gaussian_blur


def photo_like(n=4, h=96, w=128, seed=0):
    """Smooth content plus edges, so the blur has something to do near the borders."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 3, h // 8, w // 8, generator=g) * 255
    img = torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=False)
    img[:, :, :, w // 2 :] = 255 - img[:, :, :, w // 2 :]  # a hard vertical edge
    return img.round()


def run_dali(op, images_nhwc: np.ndarray):
    @pipeline_def(batch_size=len(images_nhwc), num_threads=1, device_id=None, seed=1)
    def pipe():
        x = fn.external_source(source=lambda: [np.ascontiguousarray(a) for a in images_nhwc], batch=True, layout="HWC", dtype=types.UINT8)
        return op(x)

    p = pipe()
    p.build()
    (out,) = p.run()
    return np.stack([np.array(out.at(i)) for i in range(len(images_nhwc))])


def test_dali_blur_equals_the_torch_blur_used_by_degrade():
    from vrestore.trainer.dali_input import dali_blur

    spec = DegradationSpec()
    # photo-like content plus one frame of pure noise, whose borders differ under every
    # border rule but the right one
    images = torch.cat([photo_like(), torch.randint(0, 256, (1, 3, 96, 128)).float()])
    ours = blur(images, spec)
    nhwc = images.permute(0, 2, 3, 1).numpy().astype(np.uint8)
    dali = torch.from_numpy(run_dali(lambda x: dali_blur(x, spec, spec.blur_sigma), nhwc)).permute(0, 3, 1, 2).float()
    assert (dali - ours).abs().max().item() <= 1.0  # within 1/255, borders included
    assert (ours - images).abs().mean().item() > 2  # and the blur did blur
    # the border handling is pinned down too: a replicate-padded blur differs at the edges
    replicate = torch.nn.functional.pad(images, (3, 3, 3, 3), mode="replicate")
    assert (blur(replicate, spec)[..., 3:-3, 3:-3] - dali).abs().max().item() > 1.0


def test_dali_blur_at_per_frame_sigmas_equals_the_torch_blur():
    """The path training runs: T-frame sequences, one sigma drawn per frame by DALI
    (blur_sigmas + dali_blur, as region_crops calls them), against degradations.gaussian_blur
    at the sigmas DALI drew. Both take the same float sums of the same taps and round once, so
    they differ only where a sum lands within float error of a half level: at most 1 level, on
    a tiny share of pixels. A sigma 0.1 off moves most pixels of this content by a level or
    more, which both bounds below catch."""
    from vrestore.trainer.dali_input import blur_sigmas, dali_blur

    spec, T = DegradationSpec(blur_sigma=0.5, blur_sigma_max=3.0), 5
    clips = [torch.cat([photo_like(T - 1, seed=k), torch.randint(0, 256, (1, 3, 96, 128)).float()]) for k in range(3)]

    @pipeline_def(batch_size=len(clips), num_threads=1, device_id=None, seed=7)
    def pipe():
        x = fn.external_source(source=lambda: [np.ascontiguousarray(c.permute(0, 2, 3, 1).numpy().astype(np.uint8)) for c in clips], batch=True,
                               layout="FHWC", dtype=types.UINT8)
        sigma = blur_sigmas(spec, T)
        return dali_blur(x, spec, sigma, T), sigma

    p = pipe()
    p.build()
    blurred, sigmas = p.run()
    drawn = []
    for i, clip in enumerate(clips):
        sigma = torch.from_numpy(np.array(sigmas.at(i)))
        drawn += sigma.tolist()
        dali = torch.from_numpy(np.array(blurred.at(i))).permute(0, 3, 1, 2).float()
        ours = gaussian_blur(clip, sigma, spec.blur_window).round().clamp(0, 255)
        differ = (dali - ours).abs()
        assert differ.max().item() <= 1.0 and (differ > 0).float().mean().item() < 1e-3, (i, sigma)
        off = gaussian_blur(clip, sigma + 0.1, spec.blur_window).round().clamp(0, 255)
        assert (dali - off).abs().max().item() > 1.0 or ((dali - off).abs() > 0).float().mean().item() > 0.05
    assert len(set(drawn)) == len(drawn) == T * len(clips) and 0.5 <= min(drawn) and max(drawn) <= 3.0  # per frame, in range


def test_noise_has_the_configured_std():
    """Training draws its noise with `add_noise` too (trainer/dali_input.py, CPU and GPU alike)."""
    spec = DegradationSpec(noise_std=15.0)
    torch_noisy = add_noise(torch.full((8, 3, 64, 64), 128.0), spec, torch.Generator().manual_seed(0))
    assert abs(torch_noisy.std().item() - 15.0) < 0.3 and abs(torch_noisy.mean().item() - 128) < 0.3
    assert torch.equal(torch_noisy, torch_noisy.round()) and torch_noisy.min() >= 0 and torch_noisy.max() <= 255


def test_noise_is_clipped_to_the_8_bit_range():
    spec = DegradationSpec(noise_std=50)
    x = add_noise(torch.zeros(2, 3, 32, 32), spec, torch.Generator().manual_seed(0))
    assert x.min() == 0 and x.max() > 50 and (x == 0).float().mean() > 0.4


def connected_boxes(mask2d: np.ndarray):
    """Bounding boxes of the True regions (boxes may overlap, so count merged regions)."""
    from collections import deque

    seen = np.zeros_like(mask2d)
    boxes = []
    for y, x in zip(*np.nonzero(mask2d)):
        if seen[y, x]:
            continue
        q, ys, xs = deque([(y, x)]), [], []
        seen[y, x] = True
        while q:
            cy, cx = q.popleft()
            ys.append(cy), xs.append(cx)
            for ny, nx in ((cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)):
                if 0 <= ny < mask2d.shape[0] and 0 <= nx < mask2d.shape[1] and mask2d[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    q.append((ny, nx))
        boxes.append((max(ys) - min(ys) + 1, max(xs) - min(xs) + 1, len(ys)))
    return boxes


def test_boxes_follow_the_spec():
    spec = DegradationSpec()
    h, w = 120, 160
    masks = box_mask(400, h, w, spec, torch.Generator().manual_seed(0))[:, 0].numpy()
    counts = []
    for m in masks:
        regions = connected_boxes(m)
        counts.append(len(regions))
        for bh, bw, area in regions:
            if area == bh * bw:  # a lone rectangle (not two merged): its sides are in spec
                assert round(0.10 * h) <= bh <= round(0.25 * h)
                assert round(0.10 * w) <= bw <= round(0.25 * w)
    assert min(counts) >= 1 and max(counts) <= 3
    assert set(counts) == {1, 2, 3}  # each count occurs (merged boxes only lower a count)
    images = photo_like(n=400, h=h, w=w)
    boxed, mask = add_boxes(images, spec, torch.Generator().manual_seed(0))
    assert torch.equal(mask, box_mask(400, h, w, spec, torch.Generator().manual_seed(0)))
    assert (boxed[mask.expand_as(boxed)] == 128).all()
    assert torch.equal(boxed[~mask.expand_as(boxed)], images[~mask.expand_as(images)])


def test_degrade_is_reproducible_with_a_seed_and_ranges_draw_per_sample():
    spec = DegradationSpec(blur_sigma=0.5, blur_sigma_max=3.0, noise_std=0, noise_std_max=30)
    x = photo_like()
    a = degrade(x, spec, torch.Generator().manual_seed(5))
    b = degrade(x, spec, torch.Generator().manual_seed(5))
    c = degrade(x, spec, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])
    noise_only = add_noise(torch.full((64, 3, 32, 32), 128.0), spec, torch.Generator().manual_seed(0))
    stds = noise_only.flatten(1).std(dim=1)
    assert stds.min() < 10 and stds.max() > 20  # per-sample std drawn from [0, 30]


@pytest.mark.parametrize("bad", [dict(blur_window=6), dict(noise_std=-1), dict(boxes_min=4), dict(box_max_frac=1.5)])
def test_spec_rejects_bad_numbers(bad):
    with pytest.raises(ValueError):
        DegradationSpec(**bad)


def test_boxes_on_training_crops_match_crops_of_degraded_frames():
    """Boxes drawn for 64x64 crops of 240x320 frames look like 64x64 windows cut from
    full-frame masks: same share of windows without a box, same mean and spread of coverage.
    Boxes sized on the crop itself (the tempting shortcut) would never leave a crop empty."""
    n, spec, c = 4000, DegradationSpec(), 64
    full = box_mask(n, 240, 320, spec, torch.Generator().manual_seed(0))[:, 0]
    g = torch.Generator().manual_seed(1)
    ys, xs = torch.randint(0, 240 - c + 1, (n,), generator=g), torch.randint(0, 320 - c + 1, (n,), generator=g)
    windows = torch.stack([full[i, y : y + c, x : x + c] for i, (y, x) in enumerate(zip(ys.tolist(), xs.tolist()))])
    crops = box_mask(n, c, c, spec, torch.Generator().manual_seed(2), frame_hw=torch.tensor([[240, 320]] * n))[:, 0]
    cover = lambda m: m.flatten(1).float().mean(1)
    a, b = cover(windows), cover(crops)
    assert 0.4 < (a == 0).float().mean() < 0.9  # many windows miss every box
    assert abs((a == 0).float().mean() - (b == 0).float().mean()) < 0.03
    assert abs(a.mean() - b.mean()) < 0.1 * a.mean()
    assert abs((a > 0.25).float().mean() - (b > 0.25).float().mean()) < 0.02
    on_crop = cover(box_mask(n, c, c, spec, torch.Generator().manual_seed(3))[:, 0])
    assert (on_crop == 0).float().mean() == 0
