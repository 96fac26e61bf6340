#!/usr/bin/env bash
# Install everything, then run the main job on embedded sample data:
# sample videos (UCF-101 layout) -> shards -> train the restorer -> degrade the test split ->
# restore it and score it against the originals.
#   DEMO_OUT=dir      where everything goes (default demo_output)
#   DEMO_MINUTES=n    training time (default 10)
#   DEMO_FRAMES=T     frames the generator sees, odd (default 5: bench/frames.py; 1: one frame at a time)
#   DEMO_PRESET=p     seed (default: blur, noise, boxes) or real (blur, resize, noise, JPEG, grain,
#                     fade and a real video encoder, drawn per video: README, Degradation presets)
set -euo pipefail
source "$(dirname "$0")/setup_env.sh" all  # every extra: training, sample data, plots, export, cluster
OUT="${DEMO_OUT:-demo_output}"
MINUTES="${DEMO_MINUTES:-10}"
FRAMES="${DEMO_FRAMES:-5}"
PRESET="${DEMO_PRESET:-seed}"
LISTS="$OUT/videos/ucfTrainTestlist"
TEST_LIST="$LISTS/testlist01.txt"

echo "==> 1. sample videos (UCF-101 layout; photographs and real clips shipped in packages; no source in two splits) -> $OUT/videos"
vrestore sample-videos "$OUT/videos"

SHARDS="$OUT/shards_t$FRAMES"; MODEL="$OUT/model"; DEGRADED="$OUT/degraded"; RESTORED="$OUT/restored"
if [ "$PRESET" != seed ]; then
  SHARDS="${SHARDS}_$PRESET"; MODEL="${MODEL}_$PRESET"; DEGRADED="${DEGRADED}_$PRESET"; RESTORED="${RESTORED}_$PRESET"
fi
echo "==> 2. make-shards, each frame once for windows of $FRAMES frames, preset $PRESET: train split -> $SHARDS/train, validation split -> $SHARDS/val"
make-shards "$OUT/videos" "$SHARDS/train" --split-file "$LISTS/trainlist01.txt" --clip-len "$FRAMES" --preset "$PRESET"
make-shards "$OUT/videos" "$SHARDS/val" --split-file "$LISTS/vallist01.txt" --clip-len "$FRAMES" --preset "$PRESET"

echo "==> 3. preview: one training batch, clean | degraded frames of each window -> $OUT/preview_$PRESET.png"
vrestore preview "$SHARDS/train" --out "$OUT/preview_$PRESET.png" --crop 64

# the recipe: bench/recipe.py's choice on the validation split at 10 minutes (docs/benchmarks.md)
echo "==> 4. train for $MINUTES minutes ($FRAMES frames in, 64 px crops, a 16-wide U-Net, lr 2e-3: what learned most in 10 minutes on 2 CPU cores; GPU when present) -> $MODEL"
vrestore train --shards "$SHARDS/train" --val-shards "$SHARDS/val" --out "$MODEL" \
    --crop 64 --ngf 16 --ndf 16 --batch-size 16 --lr 2e-3 --max-minutes "$MINUTES" --val-every 500 --overwrite

echo "==> 5. degrade the test split (sources never trained or validated on; preset $PRESET; lossless FFV1) -> $DEGRADED"
vrestore degrade "$OUT/videos" "$DEGRADED" --split-file "$TEST_LIST" --save-masks --preset "$PRESET" --quiet

echo "==> 6. restore the degraded test split and score it against the originals -> $RESTORED"
vrestore restore "$DEGRADED" --weights "$MODEL/generator.pth" --output-dir "$RESTORED" \
    --originals "$OUT/videos" --side-by-side --gallery --report "$RESTORED/report.json" --overwrite --quiet

echo "==> done. outputs:"
echo "    videos:    $OUT/videos (clean), $DEGRADED (inputs, with NAME_mask.avi box masks)"
echo "    shards:    $SHARDS/train, $SHARDS/val (manifest.json in each)"
echo "    model:     $MODEL/generator.pth (EMA weights; + generator_best.pth, discriminator.pth, checkpoint.pt, metrics.jsonl, curves.png, samples/)"
echo "    restored:  $RESTORED (gallery.html: open it in a browser; report.json, report.csv; side_by_side/*.png: degraded | restored | original)"
echo "    preview:   $OUT/preview_$PRESET.png"
