import io
import json
import math
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

import pytest
import webdataset as wds
from PIL import Image

from conftest import count_frames, videos_in
from cli_helpers import cli_run, clip, one_line
from vrestore.pipeline.atomic import TMP_MARK
from vrestore.pipeline.media.discover import SourceError
from vrestore.pipeline.dataset.make_shards import make_shards
from vrestore.pipeline.dataset.shard_config import ShardConfig


def shard(src, out, **kw):
    return make_shards(ShardConfig(src, out, progress=False, workers=2, **kw))


def tar_members(path):
    with tarfile.open(path) as t:
        return [(m.name, t.extractfile(m).read()) for m in t.getmembers()]


def read_samples(out):
    """(key -> {ext: bytes}) over every shard of a manifest, read with plain tarfile."""
    manifest = json.loads((out / "manifest.json").read_text())
    samples = {}
    for s in manifest["shards"]:
        for name, data in tar_members(out / s["tar"]):
            key, ext = name.split(".", 1)
            samples.setdefault(key, {})[ext] = data
    return manifest, samples


def shard_bytes(out):
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.suffix in (".tar", ".idx", ".json")}


def test_every_frame_of_every_video_becomes_a_decodable_sample(sample_tree, tmp_path):
    out = tmp_path / "shards"
    result = shard(sample_tree, out, max_frames=150)
    manifest, samples = read_samples(out)
    expected = {v.relative_to(sample_tree).as_posix(): count_frames(v) for v in videos_in(sample_tree)}
    assert {v["path"]: v["frames"] for v in manifest["videos"]} == expected
    assert manifest["num_samples"] == len(samples) == sum(expected.values())
    assert manifest["num_shards"] == len(manifest["shards"]) >= 2
    assert all(s["samples"] <= 150 for s in manifest["shards"])
    assert result.manifest == manifest
    for key, sample in samples.items():
        assert set(sample) == {"jpg", "json"}
        assert "." not in key.rsplit("/", 1)[-1]
        meta = json.loads(sample["json"])
        img = Image.open(io.BytesIO(sample["jpg"]))
        img.load()  # decodes every pixel: a cut-off JPEG raises here
        assert img.size == (meta["width"], meta["height"]) == (320, 240)
        assert key == f"{meta['video']}/{meta['frame']:06d}"
        assert meta["fps"] == 25.0 and meta["class"] in ("Astronaut", "Cat")
        assert meta["group"] in (1, 2) and meta["clip"] in (1, 2)


def test_frames_of_many_videos_are_interleaved(sample_tree, tmp_path):
    out = tmp_path / "shards"
    shard(sample_tree, out, max_frames=100)
    first = json.loads((out / "manifest.json").read_text())["shards"][0]
    names = [n for n, _ in tar_members(out / first["tar"]) if n.endswith(".jpg")]
    videos = Counter(n.rsplit("/", 1)[0] for n in names)
    assert len(videos) == 8  # every clip appears in the first 100 frames
    assert max(videos.values()) < 30


def test_stride_and_resize(sample_tree, tmp_path):
    out = tmp_path / "shards"
    shard(sample_tree, out, frame_stride=3, size=(160, 120), limit=2)
    manifest, samples = read_samples(out)
    for v in manifest["videos"]:
        assert v["frames"] == math.ceil(count_frames(sample_tree / v["path"]) / 3)
    for sample in samples.values():
        meta = json.loads(sample["json"])
        assert meta["frame"] % 3 == 0
        assert Image.open(io.BytesIO(sample["jpg"])).size == (160, 120)


def test_png_is_lossless_copy_of_the_decoded_frame(sample_tree, tmp_path):
    # decoded as ffmpeg does with an exact YUV -> RGB conversion (its default is ~1 level dark)
    out = tmp_path / "shards"
    shard(sample_tree, out, image_format="png", limit=1)
    _, samples = read_samples(out)
    key = "Astronaut/v_Astronaut_g01_c01/000010"
    ours = Image.open(io.BytesIO(samples[key]["png"])).tobytes()
    raw = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(sample_tree / "Astronaut/v_Astronaut_g01_c01.avi"),
         "-vf", "select=eq(n\\,10),scale=flags=accurate_rnd+full_chroma_int", "-vsync", "passthrough", "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True, check=True).stdout
    assert ours == raw


def test_split_file_selects_exactly_its_videos(sample_tree, tmp_path):
    out = tmp_path / "shards"
    split = tmp_path / "testlist.txt"
    # one path spelled with another case, as UCF-101's own lists do for one class
    split.write_text("Astronaut/v_Astronaut_g01_c01.avi\ncat/V_CAT_g02_c02.avi\nCat/v_Cat_g09_c01.avi\n")
    shard(sample_tree, out, split_file=split)
    manifest, samples = read_samples(out)
    assert [v["path"] for v in manifest["videos"]] == ["Astronaut/v_Astronaut_g01_c01.avi", "Cat/v_Cat_g02_c02.avi"]
    assert manifest["skipped"] == [{"path": "Cat/v_Cat_g09_c01.avi", "reason": "listed in the split file but not found"}]
    assert {k.rsplit("/", 1)[0] for k in samples} == {"Astronaut/v_Astronaut_g01_c01", "Cat/v_Cat_g02_c02"}


def test_shards_read_back_with_webdataset_and_dali(sample_tree, tmp_path):
    from nvidia.dali import fn, pipeline_def

    out = tmp_path / "shards"
    manifest = shard(sample_tree, out, max_frames=200).manifest
    tars = [str(out / s["tar"]) for s in manifest["shards"]]
    wds_keys = [s["__key__"] for s in wds.WebDataset(tars, shardshuffle=False)]
    assert len(wds_keys) == len(set(wds_keys)) == manifest["num_samples"]

    @pipeline_def(batch_size=32, num_threads=2, device_id=None)
    def read(shard_id, num_shards):
        jpg, meta = fn.readers.webdataset(
            paths=tars, index_paths=[str(out / s["index"]) for s in manifest["shards"]],
            ext=["jpg", "json"], missing_component_behavior="error",
            shard_id=shard_id, num_shards=num_shards, name="reader")
        return fn.decoders.image(jpg, device="cpu"), meta

    dali_keys = []
    for rank in range(2):
        pipe = read(rank, 2)
        pipe.build()
        n = pipe.reader_meta("reader")["epoch_size_padded"] // 2
        seen = 0
        while seen < n:
            images, metas = pipe.run()
            for i in range(min(len(images), n - seen)):
                assert images.at(i).shape == (240, 320, 3)
                m = json.loads(bytes(metas.at(i)))
                dali_keys.append(f"{m['video']}/{m['frame']:06d}")
            seen += len(images)
    assert sorted(dali_keys) == sorted(wds_keys)


def test_bad_files_are_skipped_reported_and_the_rest_sharded(tree_copy, tmp_path):
    good = videos_in(tree_copy)
    (tree_copy / "Cat" / "v_Cat_g03_c01.avi").write_bytes(os.urandom(50_000))  # corrupt
    (tree_copy / "Cat" / "v_Cat_g03_c02.avi").write_bytes(b"")  # empty
    (tree_copy / "Cat" / "notes.mp4").write_text("this is not a video\n" * 20)  # text
    truncated = tree_copy / "Astronaut" / "v_Astronaut_g03_c01.avi"
    data = (tree_copy / "Astronaut/v_Astronaut_g01_c01.avi").read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    out = tmp_path / "shards"
    manifest = shard(tree_copy, out).manifest
    skipped = {s["path"]: s["reason"] for s in manifest["skipped"]}
    assert set(skipped) == {"Cat/v_Cat_g03_c01.avi", "Cat/v_Cat_g03_c02.avi", "Cat/notes.mp4"}
    assert "empty" in skipped["Cat/v_Cat_g03_c02.avi"]
    assert all(reason for reason in skipped.values())
    videos = {v["path"]: v for v in manifest["videos"]}
    for v in good:
        rel = v.relative_to(tree_copy).as_posix()
        assert videos[rel]["frames"] == count_frames(v) and not videos[rel]["partial"]
    part = videos["Astronaut/v_Astronaut_g03_c01.avi"]
    assert 0 < part["frames"] < count_frames(tree_copy / "Astronaut/v_Astronaut_g01_c01.avi")
    assert part["partial"] and part["warning"]


def run_cli(*args, **kw):
    """The installed make-shards: in this process (click's runner) unless `kw` asks for a
    process of its own."""
    if not kw:
        return cli_run("make-shards", *args)
    exe = Path(sys.executable).with_name("make-shards")
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, **kw)


def test_cli_bad_source_is_a_one_line_error_with_exit_2(tmp_path):
    for src in (tmp_path / "missing", tmp_path):
        r = run_cli(src, tmp_path / "out", "--quiet")
        assert r.returncode == 2, r.stderr
        assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.avi").write_text("not a video")
    r = run_cli(junk, tmp_path / "out2", "--quiet")
    assert r.returncode == 2 and "no readable video" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "out2" / "manifest.json").exists()


def test_cli_strict_fails_on_a_skipped_video(tree_copy, tmp_path):
    (tree_copy / "bad.avi").write_bytes(b"\0" * 1000)
    r = run_cli(tree_copy, tmp_path / "a", "--quiet")
    assert r.returncode == 0 and "bad.avi" in r.stdout and "1 skipped" in r.stdout
    r = run_cli(tree_copy, tmp_path / "b", "--quiet", "--strict")
    assert r.returncode == 1 and "--strict" in r.stderr


class Interrupt(KeyboardInterrupt):
    pass


@pytest.mark.parametrize("clip_len", [1, 3])
def test_interrupted_run_resumes_to_the_same_shards_writing_nothing_twice(sample_tree, tmp_path, clip_len):
    # clip_len 3: whole runs of a video's frames, several shards per window of 3 videos, so the
    # resume lands inside a window, between runs
    settings = dict(max_frames=60, mix_window=3, seed=7, clip_len=clip_len)
    shard(sample_tree, tmp_path / "whole", **settings)
    out = tmp_path / "resumed"
    closed = []

    def stop_after_three(info):
        closed.append(info.tar)
        if len(closed) == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        make_shards(ShardConfig(sample_tree, out, progress=False, workers=2, **settings), on_shard=stop_after_three)
    assert not (out / "manifest.json").exists()
    assert not [p for p in out.iterdir() if TMP_MARK in p.name]
    kept = {name: (out / name).stat().st_mtime_ns for name in closed}
    rewritten = []
    result = make_shards(ShardConfig(sample_tree, out, progress=False, workers=2, **settings), on_shard=lambda i: rewritten.append(i.tar))
    assert result.resumed_shards == 3
    assert not set(rewritten) & set(closed)
    assert {name: (out / name).stat().st_mtime_ns for name in closed} == kept
    assert shard_bytes(out) == shard_bytes(tmp_path / "whole")
    again = shard(sample_tree, out, **settings)
    assert again.already_complete


@pytest.mark.slow
def test_killed_run_leaves_no_truncated_shard_and_resumes(sample_tree, tmp_path):
    settings = ["--max-frames", "40", "--mix-window", "2", "--workers", "1", "--quiet"]
    assert run_cli(sample_tree, tmp_path / "whole", *settings).returncode == 0
    out = tmp_path / "killed"
    proc = subprocess.Popen([str(Path(sys.executable).with_name("make-shards")), str(sample_tree), str(out), *settings],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while not (out / "shard-000002.tar").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists(), "the run finished before it could be killed"
    with_real_names = [p for p in out.glob("shard-*.tar")]
    for p in with_real_names:  # every tar under a real name is complete and has its index
        assert len(tar_members(p)) > 0 and p.with_suffix(".idx").exists()
    r = run_cli(sample_tree, out, *settings)
    assert r.returncode == 0, r.stderr
    assert "resumed" in r.stdout
    assert not [p for p in out.iterdir() if TMP_MARK in p.name]
    assert shard_bytes(out) == shard_bytes(tmp_path / "whole")


def test_changed_settings_on_an_existing_out_are_refused_until_overwrite(sample_tree, tmp_path):
    out = tmp_path / "shards"
    shard(sample_tree, out, limit=2)
    with pytest.raises(SourceError, match="quality"):
        shard(sample_tree, out, limit=2, quality=5)
    m = shard(sample_tree, out, limit=2, quality=5, overwrite=True).manifest
    assert m["params"]["quality"] == 5


def test_nodes_write_disjoint_shards_that_merge_into_one_manifest(sample_tree, tmp_path):
    from vrestore.pipeline.dataset.manifest import merge_manifests

    out = tmp_path / "shards"
    for rank in range(3):
        shard(sample_tree, out, num_nodes=3, node_rank=rank, max_frames=100)
    merged = merge_manifests(out)
    single = shard(sample_tree, tmp_path / "single").manifest
    assert sorted(v["path"] for v in merged["videos"]) == sorted(v["path"] for v in single["videos"])
    assert merged["num_samples"] == single["num_samples"]
    tars = [s["tar"] for s in merged["shards"]]
    assert len(tars) == len(set(tars)) and all((out / t).exists() for t in tars)
    assert sum(len(tar_members(out / t)) for t in tars) == 2 * single["num_samples"]


def test_other_containers_rates_and_short_side_resize(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=300x180:rate=30000/1001:duration=1",
                    "-c:v", "libx264" if b"libx264" in subprocess.run(["ffmpeg", "-v", "error", "-encoders"], capture_output=True).stdout else "mpeg4",
                    "-pix_fmt", "yuv420p", str(src / "clip.v2.mp4")], check=True)
    out = tmp_path / "shards"
    manifest = shard(src, out, short_side=90).manifest
    (video,) = manifest["videos"]
    assert video["id"] == "clip_v2"  # no dot may stay in a key
    assert (video["width"], video["height"], video["fps"]) == (150, 90, round(30000 / 1001, 6))
    assert video["frames"] == count_frames(src / "clip.v2.mp4")
    _, samples = read_samples(out)
    assert all(Image.open(io.BytesIO(s["jpg"])).size == (150, 90) for s in samples.values())


def test_a_long_video_is_cut_into_runs_that_fit_a_shard_and_keep_their_neighbours(tmp_path):
    """A 150-frame video, --clip-len 5, --max-frames 40: no shard holds more than 40 samples,
    each cut run carries 2 context frames either side, every frame is the centre of exactly
    one window, and a window at a cut holds the frame's real neighbours (mirrored only at the
    video's ends), for windows of 5 and of 3."""
    from cli_helpers import clip
    from vrestore.pipeline.dataset.shard_set import load_shard_set
    from vrestore.pipeline.dataset.windows import read_frame_index

    src = tmp_path / "src" / "Long" / "v_Long_g01_c01.avi"
    src.parent.mkdir(parents=True)
    clip(src, seconds=15, rate=10, size="64x48")
    out = tmp_path / "shards"
    manifest = shard(tmp_path / "src", out, clip_len=5, max_frames=40).manifest
    assert manifest["num_shards"] >= 4 and all(s["samples"] <= 40 for s in manifest["shards"])
    assert manifest["videos"][0]["clips"] == 150
    for frames in (5, 3):
        shards = load_shard_set(out, frames)
        assert shards.num_samples == 150
        centres = []
        for idx in shards.indexes:
            for line in Path(idx).read_text().splitlines()[1:]:
                names = line.split()[3::4]  # every component's member name
                members = [int(n.rsplit("/", 1)[1].split(".")[0].lstrip("c")) for n in names[:frames]]
                centre = int(names[-1].rsplit("/", 1)[1].split(".")[0])  # the json's frame: never a context frame
                assert not names[-1].rsplit("/", 1)[1].startswith("c")
                centres.append(centre)
                expected = [abs(f) if f >= 0 else -f for f in range(centre - frames // 2, centre + frames // 2 + 1)]
                expected = [2 * 149 - f if f > 149 else f for f in expected]  # mirrored at the video's ends only
                assert members == expected, (centre, members)
        assert sorted(centres) == list(range(150))
    context = [s for idx in (out / s["index"] for s in manifest["shards"]) for s in read_frame_index(idx) if s[2]]
    assert len(context) == 2 * 2 * (len(manifest["shards"]) - 1)  # two frames either side of every cut


@pytest.mark.slow
def test_make_shards_memory_does_not_grow_with_a_videos_length(tmp_path):
    """Peak RSS of make-shards for a 4 s and a 40 s 640x480 video, at --clip-len 5 and 1: the
    longer one's frames, held in memory, would add what its shards weigh (~40 MB); they wait on
    disk instead (dataset/spool.py), so the peaks stay within a few MB."""
    from cli_helpers import clip

    # the peak of the run itself: importing torch peaks higher than a short run, so the peak is
    # reset (clear_refs 5) once the imports are done, and read (VmHWM) after the run
    script = ("import sys; from pathlib import Path; "
              "from vrestore.pipeline.dataset.make_shards import make_shards; from vrestore.pipeline.dataset.shard_config import ShardConfig; "
              "open('/proc/self/clear_refs', 'w').write('5'); "
              "make_shards(ShardConfig(Path(sys.argv[1]), Path(sys.argv[2]), clip_len=int(sys.argv[3]), progress=False, workers=1)); "
              "print([line for line in open('/proc/self/status') if line.startswith('VmHWM')][0].split()[1])")
    peaks, weights = {}, {}
    for seconds, clip_len in ((4, 5), (40, 5), (40, 1)):
        src = tmp_path / f"src{seconds}" / "A" / "v_A_g01_c01.avi"
        src.parent.mkdir(parents=True, exist_ok=True)
        if not src.exists():
            clip(src, seconds=seconds, rate=25, size="640x480", extra=("-q:v", "4"))
        out = tmp_path / f"out{seconds}-{clip_len}"
        r = subprocess.run([sys.executable, "-c", script, str(src.parents[1]), str(out), str(clip_len)],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        peaks[seconds, clip_len] = int(r.stdout.split()[-1]) / 1024  # MB
        weights[seconds, clip_len] = sum(p.stat().st_size for p in out.glob("*.tar")) / 2**20
    print(f"peak RSS {peaks}, shards {weights} (MB)")
    assert weights[40, 5] > 30  # what holding the long video's frames would have added
    for long in ((40, 5), (40, 1)):
        assert peaks[long] - peaks[4, 5] < 12 and peaks[long] < 1.3 * peaks[4, 5], (peaks, weights)


def test_a_manifest_names_only_its_own_shards_and_counts_that_add_up(tiny_shards, tmp_path):
    """An edited or foreign manifest: a shard outside its folder, or counts that are not counts
    or do not add up, is one line before DALI opens anything."""
    import shutil

    from vrestore.pipeline.dataset.shard_set import ManifestError, load_shard_set

    good = json.loads((tiny_shards / "manifest.json").read_text())
    edits = {"../elsewhere.tar": lambda m: m["shards"][0].update(tar="../" + m["shards"][0]["tar"]),
             "/abs.idx": lambda m: m["shards"][0].update(index="/abs.idx"),
             "samples -3": lambda m: m["shards"][0].update(samples=-3),
             "num_samples": lambda m: m.update(num_samples=m["num_samples"] + 1)}
    for words, edit in edits.items():
        folder = tmp_path / f"s{len(words)}"
        shutil.copytree(tiny_shards, folder)
        m = json.loads(json.dumps(good))
        edit(m)
        (folder / "manifest.json").write_text(json.dumps(m))
        with pytest.raises(ManifestError) as err:
            load_shard_set(folder)
        line = str(err.value)
        assert "\n" not in line and "manifest.json" in line and "make-shards" in line, line
        r = cli_run("vrestore", "preview", folder, "--out", tmp_path / f"p{len(words)}.png")
        assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error:"), r.stderr
    load_shard_set(tiny_shards)  # the untouched one loads


def test_merge_manifests_joins_only_the_nodes_of_one_source_and_keeps_a_single_nodes_manifest(tmp_path):
    from vrestore.pipeline.dataset.make_shards import make_shards
    from vrestore.pipeline.dataset.shard_config import ShardConfig

    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        clip(d / "x.avi")
        clip(d / "y.avi")
    out = tmp_path / "shards"
    make_shards(ShardConfig(a, out, num_nodes=2, node_rank=0, progress=False, workers=1))
    make_shards(ShardConfig(b, out, num_nodes=2, node_rank=1, progress=False, workers=1))  # another collection
    assert "different sources" in one_line(cli_run("vrestore", "merge-manifests", out))
    single = tmp_path / "single"
    make_shards(ShardConfig(a, single, progress=False, workers=1))
    before = (single / "manifest.json").read_bytes()
    make_shards(ShardConfig(a, single, num_nodes=2, node_rank=0, progress=False, workers=1, prefix="n"))
    make_shards(ShardConfig(a, single, num_nodes=2, node_rank=1, progress=False, workers=1, prefix="n"))
    assert "single-node run's manifest" in one_line(cli_run("vrestore", "merge-manifests", single))
    assert (single / "manifest.json").read_bytes() == before
