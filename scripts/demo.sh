#!/usr/bin/env bash
# Install everything, then run the main job on embedded sample data:
# sample videos (UCF-101 layout) -> shards -> train the restorer -> degrade the test split ->
# restore it and score it against the originals.
#   DEMO_OUT=dir      where everything goes (default demo_output)
#   DEMO_MINUTES=n    training time (default 10)
#   DEMO_FRAMES=T     frames the generator sees, odd (default 5: bench/frames.py; 1: one frame at a time)
set -euo pipefail
source "$(dirname "$0")/setup_env.sh" plots  # matplotlib for curves.png
OUT="${DEMO_OUT:-demo_output}"
MINUTES="${DEMO_MINUTES:-10}"
FRAMES="${DEMO_FRAMES:-5}"
LISTS="$OUT/videos/ucfTrainTestlist"
TEST_LIST="$LISTS/testlist01.txt"

echo "==> 1. sample videos (UCF-101 layout; photographs and real clips shipped in packages; no source in two splits) -> $OUT/videos"
vrestore sample-videos "$OUT/videos"

SHARDS="$OUT/shards_t$FRAMES"
echo "==> 2. make-shards, clips of $FRAMES frames: train split -> $SHARDS/train, validation split -> $SHARDS/val"
make-shards "$OUT/videos" "$SHARDS/train" --split-file "$LISTS/trainlist01.txt" --clip-len "$FRAMES"
make-shards "$OUT/videos" "$SHARDS/val" --split-file "$LISTS/vallist01.txt" --clip-len "$FRAMES"

echo "==> 3. preview: one training batch, clean | degraded frames of each clip -> $OUT/preview.png"
vrestore preview "$SHARDS/train" --out "$OUT/preview.png" --crop 64

echo "==> 4. train for $MINUTES minutes ($FRAMES frames in, 64 px crops, a 16-wide U-Net: small enough to learn on 2 CPU cores; GPU when present) -> $OUT/model"
vrestore train --shards "$SHARDS/train" --val-shards "$SHARDS/val" --out "$OUT/model" \
    --crop 64 --ngf 16 --ndf 16 --batch-size 16 --lr 1e-3 --max-minutes "$MINUTES" --val-every 500 --overwrite

echo "==> 5. degrade the test split (sources never trained or validated on; blur, noise, boxes; lossless FFV1) -> $OUT/degraded"
vrestore degrade "$OUT/videos" "$OUT/degraded" --split-file "$TEST_LIST" --save-masks --quiet

echo "==> 6. restore the degraded test split and score it against the originals -> $OUT/restored"
vrestore restore "$OUT/degraded" --weights "$OUT/model/generator.pth" --output-dir "$OUT/restored" \
    --originals "$OUT/videos" --side-by-side --report "$OUT/restored/report.json" --overwrite --quiet

echo "==> done. outputs:"
echo "    videos:    $OUT/videos (clean), $OUT/degraded (inputs, with NAME_mask.avi box masks)"
echo "    shards:    $SHARDS/train, $SHARDS/val (manifest.json in each)"
echo "    model:     $OUT/model/generator.pth (EMA weights; + generator_best.pth, discriminator.pth, checkpoint.pt, metrics.jsonl, curves.png, samples/)"
echo "    restored:  $OUT/restored (report.json, report.csv; side_by_side/*.png: degraded | restored | original)"
echo "    preview:   $OUT/preview.png"
