#!/usr/bin/env bash
# Install everything (ffmpeg, .venv with the package and test dependencies), then run pytest.
# Extra arguments go to pytest, e.g. scripts/test.sh -k make_shards
set -euo pipefail
source "$(dirname "$0")/setup_env.sh" test
exec python -m pytest "$@"
