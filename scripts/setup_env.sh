# Sourced by demo.sh and test.sh: installs what is missing, then activates .venv.
# Idempotent: a second run only checks (ffmpeg on PATH, the install stamp) and returns.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
EXTRAS="${1:-}"  # "test" adds the test dependencies

# Debian packages: ffmpeg always; for the tests chromium (restore --gallery is checked in a
# real headless browser) and Slurm with munge (the tests start a one-node cluster of their own)
PACKAGES=""
if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then PACKAGES=" ffmpeg"; fi
if [ "$EXTRAS" = "test" ] && ! command -v chromium >/dev/null; then PACKAGES="$PACKAGES chromium"; fi
if [ "$EXTRAS" = "test" ] && ! { command -v slurmctld && command -v slurmd && command -v munged; } >/dev/null; then
  PACKAGES="$PACKAGES slurm-wlm munge"
fi
if [ -n "$PACKAGES" ]; then
  echo "==> installing the Debian packages:$PACKAGES"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $PACKAGES >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PYTHON" -m venv .venv
fi
# Reinstall only when the requirements, the pinned versions or the package list changed (an
# editable install maps the packages setup.cfg listed when it ran).
STAMP=".venv/.installed-$(cat setup.cfg pyproject.toml constraints.txt | sha256sum | cut -c1-12)${EXTRAS:+-$EXTRAS}"
if [ ! -f "$STAMP" ]; then
  echo "==> installing video-restoration-gan${EXTRAS:+[$EXTRAS]} into .venv (torch, DALI: a few minutes the first time)"
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
  # constraints.txt: the exact versions this project is tested with (setup.cfg gives ranges)
  .venv/bin/python -m pip install -q -c constraints.txt -e ".${EXTRAS:+[$EXTRAS]}" 2>&1 | grep -v "is ignored" || true
  .venv/bin/python -c "import torch, nvidia.dali, webdataset, ffmpeg, click" # fail here, not mid-run
  rm -f .venv/.installed-*
  touch "$STAMP"
fi
export PATH="$ROOT/.venv/bin:$PATH"
