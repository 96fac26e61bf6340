#!/usr/bin/env bash
# Install everything (ffmpeg, .venv with the package and test dependencies), then run pytest on
# PYTEST_WORKERS processes (pytest-xdist; default 2, the CI machine's cores; 0: in this process).
# Extra arguments go to pytest, e.g. scripts/test.sh -k make_shards
set -euo pipefail
source "$(dirname "$0")/setup_env.sh" test
# --dist loadgroup: the tests of one xdist_group (the Slurm cluster's) run on one worker
exec python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadgroup "$@"
