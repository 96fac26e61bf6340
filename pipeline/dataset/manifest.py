"""`manifest.json`: what a make-shards run wrote, and what training reads to size an epoch."""
import json
from pathlib import Path

from vrestore.pipeline.atomic import write_json_atomic

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


class ManifestError(Exception):
    pass


def node_manifest_name(node_rank: int, num_nodes: int) -> str:
    return MANIFEST if num_nodes == 1 else f"manifest-node{node_rank:03d}.json"


def build_manifest(params: dict, shards: list, videos: list, skipped: list, ffmpeg: str) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "params": params,
        "ffmpeg": ffmpeg,
        "num_samples": sum(s["samples"] for s in shards),
        "num_shards": len(shards),
        "shards": shards,
        "videos": videos,
        "skipped": skipped,
    }


def read_manifest(path) -> dict:
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST
    if not path.is_file():
        raise ManifestError(f"no manifest at {path} (run make-shards first, or merge-manifests for multi-node runs)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: not a readable manifest ({e}); run make-shards again with --overwrite") from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        version = manifest.get("format_version") if isinstance(manifest, dict) else None
        raise ManifestError(f"{path}: unsupported manifest version {version}")
    return manifest


def merge_manifests(out_dir) -> dict:
    """Combine the per-node manifests of a `--num-nodes K` run into one manifest.json."""
    out_dir = Path(out_dir)
    parts = sorted(out_dir.glob("manifest-node*.json"))
    if not parts:
        raise ManifestError(f"no manifest-node*.json in {out_dir}")
    manifests = [read_manifest(p) for p in parts]
    num_nodes = manifests[0]["params"]["num_nodes"]
    ranks = sorted(m["params"]["node_rank"] for m in manifests)
    if ranks != list(range(num_nodes)):
        missing = sorted(set(range(num_nodes)) - set(ranks))
        raise ManifestError(f"{out_dir}: expected {num_nodes} node manifests, missing node ranks {missing}")

    def shared(params):
        return {k: v for k, v in params.items() if k != "node_rank"}

    if any(shared(m["params"]) != shared(manifests[0]["params"]) for m in manifests):
        raise ManifestError(f"{out_dir}: node manifests were made with different settings")
    sources = {m.get("source") for m in manifests} - {None}  # older manifests did not record it
    if len(sources) > 1:
        raise ManifestError(f"{out_dir}: node manifests shard different sources ({', '.join(sorted(sources))}); "
                            "merge only the nodes of one make-shards run")
    single = out_dir / MANIFEST
    if single.is_file() and read_manifest(single).get("params", {}).get("num_nodes", 1) == 1:
        raise ManifestError(f"{single} is a single-node run's manifest; merging node manifests would replace it "
                            "(move it away first if that is meant)")
    merged = build_manifest(
        params=shared(manifests[0]["params"]),
        shards=[s for m in manifests for s in m["shards"]],
        videos=sorted((v for m in manifests for v in m["videos"]), key=lambda v: v["path"]),
        skipped=sorted((v for m in manifests for v in m["skipped"]), key=lambda v: v["path"]),
        ffmpeg=manifests[0]["ffmpeg"],
    )
    if sources:
        merged["source"] = sources.pop()
    write_json_atomic(out_dir / MANIFEST, merged)
    return merged
