import json
import subprocess

from vrestore.pipeline.dataset.sample_videos import SampleConfig, make_sample_videos


def stream_info(path):
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,codec_tag_string,width,height,r_frame_rate,nb_frames:format=format_name,duration",
         "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out)


def test_tree_has_ucf101_shape(sample_tree):
    videos = sorted(p.relative_to(sample_tree).as_posix() for p in sample_tree.rglob("*.avi"))
    assert videos == [
        f"{c}/v_{c}_g{g:02d}_c{k:02d}.avi" for c in ("Astronaut", "Cat") for g in (1, 2) for k in (1, 2)
    ]
    for v in videos:
        info = stream_info(sample_tree / v)
        s = info["streams"][0]
        assert (s["codec_name"], s["codec_tag_string"], s["width"], s["height"], s["r_frame_rate"]) == (
            "mpeg4", "XVID", 320, 240, "25/1")
        assert info["format"]["format_name"] == "avi"
        assert 2.0 <= float(info["format"]["duration"]) <= 4.1


def test_split_files_follow_ucf101_format(sample_tree):
    split = sample_tree / "ucfTrainTestlist"
    train = split.joinpath("trainlist01.txt").read_text().splitlines()
    test = split.joinpath("testlist01.txt").read_text().splitlines()
    # trainlist: "Class/v_Class_gGG_cCC.avi label"; testlist: path only; test = group 1
    assert train[0] == "Astronaut/v_Astronaut_g02_c01.avi 1"
    assert all(line.split()[1] == "2" for line in train if line.startswith("Cat/"))
    assert test == [f"{c}/v_{c}_g01_c{k:02d}.avi" for c in ("Astronaut", "Cat") for k in (1, 2)]
    assert not {line.split()[0] for line in train} & set(test)  # paths, without train's labels
    assert split.joinpath("classInd.txt").read_text() == "1 Astronaut\n2 Cat\n"


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    small = dict(classes=1, groups=2, clips=1)
    make_sample_videos(SampleConfig(tmp_path / "a", seed=3, **small))
    make_sample_videos(SampleConfig(tmp_path / "b", seed=3, **small))
    make_sample_videos(SampleConfig(tmp_path / "c", seed=4, **small))
    name = "Astronaut/v_Astronaut_g02_c01.avi"
    a, b, c = (tmp_path / d / name for d in "abc")
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
