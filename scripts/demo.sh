#!/usr/bin/env bash
# Install everything, then run the main job on embedded sample data:
# sample videos (UCF-101 layout) -> WebDataset shards of the train split.
set -euo pipefail
source "$(dirname "$0")/setup_env.sh"
OUT="${DEMO_OUT:-demo_output}"

echo "==> 1. sample videos (UCF-101 layout, from photographs bundled with scikit-image) -> $OUT/videos"
vrestore sample-videos "$OUT/videos"

echo "==> 2. make-shards: train split -> $OUT/shards/train, test split -> $OUT/shards/test"
make-shards "$OUT/videos" "$OUT/shards/train" --split-file "$OUT/videos/ucfTrainTestlist/trainlist01.txt"
make-shards "$OUT/videos" "$OUT/shards/test" --split-file "$OUT/videos/ucfTrainTestlist/testlist01.txt"

echo "==> 3. preview: one training batch, clean | degraded -> $OUT/preview.png"
vrestore preview "$OUT/shards/train" --out "$OUT/preview.png"

echo "==> 4. degrade the test split (blur, noise, boxes; lossless FFV1) -> $OUT/degraded"
vrestore degrade "$OUT/videos" "$OUT/degraded" --split-file "$OUT/videos/ucfTrainTestlist/testlist01.txt" --save-masks --quiet

echo "==> done. outputs:"
echo "    videos:   $OUT/videos"
echo "    shards:   $OUT/shards/train, $OUT/shards/test (manifest.json in each)"
echo "    preview:  $OUT/preview.png"
echo "    degraded: $OUT/degraded (with NAME_mask.avi box masks)"
