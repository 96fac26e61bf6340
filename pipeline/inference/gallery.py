"""`vrestore restore --gallery`: gallery.html and its folder gallery_files/ beside the restored
videos.

Per video: degraded | restored | original (when given) players that start, pause and scrub
together, a still of the middle frame of each, and the video's scores. Previews (VP9 WebM) and
stills (PNG) are files in gallery_files/, written one at a time and linked by relative paths, so
the page opens from the file system with no server, stays small however many videos it shows
(a browser loads the players it scrolls to), and the process never holds more than one preview.
Copy the page together with its folder. Previews are made by ffmpeg at most `max_width` wide and
`max_seconds` long (the restored files themselves are .avi/.mp4 that browsers do not all play):
about 50-300 kB per player.
"""
import html
import json
import subprocess
from pathlib import Path

import ffmpeg

from vrestore.pipeline.atomic import atomic_path
from vrestore.pipeline.evaluation.metrics import Scores
from vrestore.pipeline.media.ffmpeg_cmd import arg_path, ffmpeg_command
from vrestore.pipeline.media.probe import probe_video

GALLERY = "gallery.html"
GALLERY_FILES = "gallery_files"  # beside gallery.html: its previews and stills


def preview_webm(path: Path, max_width: int, max_seconds: float) -> bytes:
    """A small VP9 WebM of the video's first `max_seconds`, no audio; width at most `max_width`."""
    stream = ffmpeg.input(arg_path(path), t=max_seconds)["v:0"].filter("scale", f"min({max_width},iw)", -2, flags="area")
    args = ffmpeg_command(stream.output("pipe:", format="webm", vcodec="libvpx-vp9", crf=34, **{"b:v": 0}, deadline="realtime",
                                        **{"cpu-used": 8}, pix_fmt="yuv420p", an=None))
    return subprocess.run(args, capture_output=True, check=True).stdout


def still_png(path: Path, at_seconds: float, max_width: int) -> bytes:
    stream = ffmpeg.input(arg_path(path), ss=at_seconds)["v:0"].filter("scale", f"min({max_width},iw)", -2, flags="area")
    args = ffmpeg_command(stream.output("pipe:", format="image2pipe", vcodec="png", frames=1))
    return subprocess.run(args, capture_output=True, check=True).stdout


def write_file(path: Path, data: bytes) -> str:
    """One preview or still under its name in gallery_files/ (written atomically); its URL
    relative to the page."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return f"{GALLERY_FILES}/{path.name}"


def score_rows(report: dict) -> list:
    """(name, input, restored) rows of the figures this video has."""
    rows = []
    for key in (*Scores.names(), "niqe"):
        a, b = report.get(f"{key}_input"), report.get(f"{key}_restored")
        if a is not None and b is not None:
            about = Scores.about(key)
            rows.append((about["label"], format(a, about["fmt"]), format(b, about["fmt"])))
    return rows


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vrestore gallery</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; background: #f6f6f4; color: #222; }}
section {{ background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 1em; margin-bottom: 1.5em; }}
.row {{ display: flex; gap: 1em; flex-wrap: wrap; }}
figure {{ margin: 0; }} figcaption {{ font-weight: 600; margin-bottom: .3em; }}
video, img.still {{ display: block; max-width: 100%; background: #000; }}
img.still {{ margin-top: .4em; }}
table {{ border-collapse: collapse; margin-top: .8em; }} td, th {{ padding: .2em .8em; border-bottom: 1px solid #eee; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.controls {{ display: flex; align-items: center; gap: .8em; margin: .6em 0; }} input[type=range] {{ flex: 1; }}
</style></head>
<body data-expected="{expected}" data-loaded="0">
<h1>Restored videos</h1>
<p>{intro}</p>
{sections}
<script>
// Each section's players are driven together: one button, one slider; the first player leads
// and the others are pulled back to its time when they drift.
let loaded = 0;
document.querySelectorAll("video").forEach(v => v.addEventListener("loadeddata", () => {{
  loaded += 1; document.body.dataset.loaded = loaded;
}}, {{ once: true }}));
document.querySelectorAll("section").forEach(section => {{
  const players = [...section.querySelectorAll("video")], lead = players[0];
  const button = section.querySelector("button"), slider = section.querySelector("input[type=range]"), clock = section.querySelector(".time");
  const all = f => players.forEach(f);
  button.addEventListener("click", () => {{
    if (lead.paused) {{ all(v => v.play()); button.textContent = "Pause"; }} else {{ all(v => v.pause()); button.textContent = "Play"; }}
  }});
  lead.addEventListener("loadedmetadata", () => {{ slider.max = lead.duration; }});
  slider.addEventListener("input", () => all(v => {{ v.currentTime = Number(slider.value); }}));
  lead.addEventListener("timeupdate", () => {{
    slider.value = lead.currentTime; clock.textContent = lead.currentTime.toFixed(2) + " s";
    players.slice(1).forEach(v => {{ if (Math.abs(v.currentTime - lead.currentTime) > 0.08) v.currentTime = lead.currentTime; }});
  }});
  lead.addEventListener("ended", () => {{ all(v => v.pause()); button.textContent = "Play"; }});
}});
</script>
</body></html>
"""


def section(title: str, players: list, report: dict) -> str:
    figures = "".join(
        f'<figure><figcaption>{html.escape(name)}</figcaption><video muted playsinline preload="auto" src="{video}"></video>'
        f'<img class="still" alt="{html.escape(name)}: middle frame" src="{still}"></figure>'
        for name, video, still in players)
    rows = score_rows(report)
    table = ("<table><tr><th></th><th>input</th><th>restored</th></tr>"
             + "".join(f"<tr><td>{html.escape(n)}</td><td>{a}</td><td>{b}</td></tr>" for n, a, b in rows) + "</table>") if rows else ""
    return (f'<section><h2>{html.escape(title)}</h2><div class="row">{figures}</div>'
            f'<div class="controls"><button type="button">Play</button><input type="range" min="0" max="1" step="0.01" value="0">'
            f'<span class="time">0.00 s</span></div>{table}</section>')


def write_gallery(path: Path, items: list, model: dict, max_width: int = 480, max_seconds: float = 10.0) -> Path:
    """`items`: (title, [(name, video path)], report dict) per video. Writes `path` atomically."""
    sections, players_total = [], 0
    files = path.parent / GALLERY_FILES
    files.mkdir(parents=True, exist_ok=True)
    for i, (title, streams, report) in enumerate(items):
        info = probe_video(streams[0][1])
        middle = min(info.duration or 0.0, max_seconds) / 2
        players = [(name, write_file(files / f"{i:05d}-{j}.webm", preview_webm(p, max_width, max_seconds)),
                    write_file(files / f"{i:05d}-{j}.png", still_png(p, middle, max_width)))
                   for j, (name, p) in enumerate(streams)]
        players_total += len(players)
        sections.append(section(title, players, report))
    intro = (f"Model {html.escape(str(model.get('weights')))}: {html.escape(str(model.get('arch')))}, {model.get('frames')} frame(s), "
             f"trained for the {html.escape(str(model.get('trained_for_preset')))} degradation preset. Previews: the first "
             f"{max_seconds:g} s, at most {max_width} px wide (VP9); scores over the whole videos (the report's definitions).")
    page = PAGE.format(expected=players_total, intro=intro, sections="\n".join(sections))
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


def gallery_items(result, input_root: Path) -> list:
    """What write_gallery needs, from a RestoreResult: every restored video, its input and its
    output, and the original it was scored against."""
    items = []
    for r in result.videos:
        src = input_root / r.video if input_root.is_dir() else input_root
        streams = [("degraded input", src), ("restored", Path(r.output))]
        if r.original and r.score("psnr_restored") is not None:
            streams.append(("original", Path(r.original)))
        items.append((r.video, streams, json.loads(json.dumps(r.row(), default=str))))
    return items
