import csv
import json
import subprocess

import numpy as np
import pytest

from vrestore.pipeline.dataset.sample_videos import SOURCES, SampleConfig, make_sample_videos

# one pytest worker makes the full tree (40 s) for all the tests that read it
pytestmark = pytest.mark.xdist_group("sample_videos")


def stream_info(path):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,codec_tag_string,width,height,r_frame_rate,nb_frames:format=format_name,duration",
         "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out)


@pytest.fixture(scope="module")
def full_tree(tmp_path_factory):
    """What `vrestore sample-videos` makes by default, every source and every split, with 4
    clips per source instead of 6 (2 regions or time segments, not 3)."""
    root = tmp_path_factory.mktemp("full")
    make_sample_videos(SampleConfig(root, groups=2))
    return root


def test_tree_has_ucf101_shape(sample_tree):
    videos = sorted(p.relative_to(sample_tree).as_posix() for p in sample_tree.rglob("*.avi"))
    assert videos == [f"{c}/v_{c}_g{g:02d}_c{k:02d}.avi" for c in ("Astronaut", "Cat") for g in (1, 2) for k in (1, 2)]
    for v in videos:
        info = stream_info(sample_tree / v)
        s = info["streams"][0]
        assert (s["codec_name"], s["codec_tag_string"], s["width"], s["height"], s["r_frame_rate"]) == ("mpeg4", "XVID", 320, 240, "25/1")
        assert info["format"]["format_name"] == "avi"
        assert 2.0 <= float(info["format"]["duration"]) <= 4.1


def read_sources(root):
    return list(csv.DictReader((root / "ucfTrainTestlist" / "sources.csv").open()))


@pytest.mark.slow
def test_split_files_follow_ucf101_format_and_record_sources(full_tree):
    split = full_tree / "ucfTrainTestlist"
    lines = {s: split.joinpath(f"{s}list01.txt").read_text().splitlines() for s in ("train", "val", "test")}
    classes = dict(line.split()[::-1] for line in split.joinpath("classInd.txt").read_text().splitlines())
    # trainlist: "Class/v_Class_gGG_cCC.avi label"; val/test lists: path only
    assert all(line.split()[1] == classes[line.split("/")[0]] for line in lines["train"])
    assert all(len(line.split()) == 1 for s in ("val", "test") for line in lines[s])
    paths = {s: {line.split()[0] for line in lines[s]} for s in lines}
    rows = read_sources(full_tree)
    assert {r["path"] for r in rows} == set().union(*paths.values()) == {p.relative_to(full_tree).as_posix() for p in full_tree.rglob("*.avi")}
    for r in rows:
        assert r["path"] in paths[r["split"]] and r["split"] == SOURCES[r["path"].split("/")[0]].split
    kinds = {r["kind"] for r in rows if r["split"] == "test"}
    assert kinds == {"photo", "video"}  # real camera footage among the test sources


@pytest.mark.slow
def test_no_test_clip_shares_a_source_with_training_or_validation(full_tree):
    """From the recorded sources, and from the pictures themselves: every test clip's nearest
    clip (colour histogram of its frames) is another test clip, never a training or validation
    one, as it would be if a test clip panned over a training photograph."""
    rows = read_sources(full_tree)
    by_split = {s: {r["source"] for r in rows if r["split"] == s} for s in ("train", "val", "test")}
    assert len(by_split["test"]) >= 3
    assert not by_split["test"] & (by_split["train"] | by_split["val"]) and not by_split["val"] & by_split["train"]

    def histogram(path):  # every 5th frame at 160x120: ffmpeg alone, one call per clip
        raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(full_tree / path), "-vf", r"select=not(mod(n\,5)),scale=160:120",
                              "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
        q = (np.frombuffer(raw, np.uint8) // 32).reshape(-1, 3).astype(int)
        h = np.bincount(q[:, 0] * 64 + q[:, 1] * 8 + q[:, 2], minlength=512).astype(float)
        return h / h.sum()

    hist = {r["path"]: histogram(r["path"]) for r in rows}
    split = {r["path"]: r["split"] for r in rows}
    for clip in (p for p, s in split.items() if s == "test"):
        dist = {q: np.abs(hist[clip] - h).sum() for q, h in hist.items() if q != clip}
        nearest = min(dist, key=dist.get)
        assert split[nearest] == "test", (clip, nearest, dist[nearest])


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    small = dict(sources=("Astronaut", "Carphone"), groups=2, clips=1)
    make_sample_videos(SampleConfig(tmp_path / "a", seed=3, **small))
    make_sample_videos(SampleConfig(tmp_path / "b", seed=3, **small))
    make_sample_videos(SampleConfig(tmp_path / "c", seed=4, **small))
    for name in ("Astronaut/v_Astronaut_g02_c01.avi", "Carphone/v_Carphone_g02_c01.avi", "ucfTrainTestlist/sources.csv"):
        a, b = (tmp_path / d / name for d in "ab")
        assert a.read_bytes() == b.read_bytes(), name
    assert (tmp_path / "a" / "Astronaut/v_Astronaut_g02_c01.avi").read_bytes() != (tmp_path / "c" / "Astronaut/v_Astronaut_g02_c01.avi").read_bytes()


def test_unknown_source_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="--sources: unknown Nope"):
        SampleConfig(tmp_path, sources=("Nope",))
