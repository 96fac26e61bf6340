"""restore --gallery: an HTML page and its gallery_files/ folder, checked in a real headless
browser (Debian's chromium): it loads from the file system, every player's video decodes, and a
screenshot of it is a picture, not a blank page."""
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from cli_helpers import clip, run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def headless(*args, timeout=120):
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--mute-audio", "--allow-file-access-from-files",
                           "--autoplay-policy=no-user-gesture-required", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (scripts/setup_env.sh test installs it)")
def test_gallery_opens_from_disk_with_every_video_playing(tmp_path, weights):
    src, originals = tmp_path / "degraded", tmp_path / "originals"
    for d in (src, originals):
        d.mkdir()
    for name in ("one", "two"):
        clip(originals / f"{name}.avi", seconds=2, size="160x120")
    assert run("vrestore", "degrade", originals, src, "--quiet").returncode == 0
    out = tmp_path / "restored"
    r = run("vrestore", "restore", src, "--weights", weights, "--output-dir", out, "--originals", originals, "--gallery", "--quiet")
    assert r.returncode == 0, r.stderr
    page = out / "gallery.html"
    text = page.read_text()
    assert "gallery:" in r.stdout and not re.search(r'src="(?!gallery_files/)', text)  # nothing outside its folder
    assert len(text) < 20_000  # the previews are files, not inlined: the page stays small
    elsewhere = tmp_path / "elsewhere"  # the page and its folder work away from the videos too
    elsewhere.mkdir()
    shutil.move(str(page), elsewhere / "gallery.html")
    shutil.move(str(out / "gallery_files"), elsewhere / "gallery_files")
    page = elsewhere / "gallery.html"
    # the players decode on their own threads while the page's virtual clock runs ahead: on a
    # busy machine (another suite on the same cores) 15 virtual seconds have passed before every
    # video loaded, so look again with a longer budget before calling it a failure
    for budget in (15000, 40000, 90000):
        dom = headless(f"--virtual-time-budget={budget}", "--dump-dom", page.as_uri())
        assert dom.returncode == 0, dom.stderr[-2000:]
        body = re.search(r'<body data-expected="(\d+)" data-loaded="(\d+)"', dom.stdout)
        if body and body.group(1) == body.group(2):
            break
    assert body and body.group(1) == "6" and body.group(2) == "6", (body and body.groups(), dom.stderr[-1000:])
    assert dom.stdout.count("<section>") == 2 and "one.avi" in dom.stdout and "two.avi" in dom.stdout
    shot = tmp_path / "shot.png"
    assert headless("--virtual-time-budget=15000", "--window-size=1200,900", f"--screenshot={shot}", page.as_uri()).returncode == 0
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=float)
    assert pixels.std() > 20, pixels.std()  # text, tables and frames, not a blank page
