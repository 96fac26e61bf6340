"""The lines make-shards prints when it is done: what went in, what came out, how fast, what was
skipped and why."""


def format_summary(result) -> str:
    """`result`: make_shards.ShardResult."""
    m = result.manifest
    mb = sum(s["bytes"] for s in m["shards"]) / 2**20
    partial = sum(1 for v in m["videos"] if v.get("partial"))
    lines = []
    if result.already_complete:
        lines.append(f"{result.manifest_path} is already complete with these settings; nothing to do (--overwrite starts over)")
    stride = m["params"].get("frame_stride", 1)
    # With a stride the kept frames undersell the work: ffmpeg decodes every frame.
    unit = "frames/s" if stride == 1 else f"kept frames/s; --frame-stride {stride}: ffmpeg decoded about {stride}x as many"
    clip_len = m["params"].get("clip_len", 1)
    if clip_len == 1:
        samples = "frames"
    elif m["params"].get("layout", "clips") == "frames":
        windows = sum(v.get("clips", 0) for v in m["videos"])
        copies = m["num_samples"] - sum(v["frames"] for v in m["videos"])  # context at the cuts of long videos
        stored = "each stored once" if not copies else f"{copies} stored twice, as context where a long video was cut"
        samples = f"frames, {stored} ({windows} windows of up to {clip_len})"
    else:
        samples = f"clips of {clip_len} frames"
    frames = sum(v["frames"] for v in m["videos"])
    rate = frames / result.seconds if result.seconds > 0 and not result.already_complete else None
    lines.append(
        f"{len(m['videos'])} videos -> {m['num_samples']} {samples} in {m['num_shards']} shards ({mb:.1f} MB) in {result.out}"
        + (f", {result.seconds:.1f} s ({rate:.0f} {unit})" if rate else "")
    )
    if result.resumed_shards:
        lines.append(f"resumed: kept {result.resumed_shards} finished shards from the interrupted run")
    if partial:
        lines.append(f"{partial} videos decoded only partly (kept the frames ffmpeg could decode)")
    lines.append(f"{len(m['skipped'])} skipped" + ("" if not m["skipped"] else ":"))
    lines += [f"  {s['path']}: {s['reason']}" for s in m["skipped"]]
    lines.append(f"manifest: {result.manifest_path}")
    return "\n".join(lines)
