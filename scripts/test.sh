#!/usr/bin/env bash
# Set up (./scripts/setup.sh) and run every test: the unit tests and nbval over every notebook in fast mode.
# Data and checkpoints go to a fresh temporary folder, so the run proves a clean clone works.
set -euo pipefail
cd "$(dirname "$0")/.."
WORKERS="${MDLIB_TEST_WORKERS:-2}"
if ! [[ "$WORKERS" =~ ^[1-9][0-9]*$ ]]; then
  echo "MDLIB_TEST_WORKERS must be a whole number of test processes, 1 or more (got '$WORKERS')" >&2
  exit 2
fi
./scripts/setup.sh
. .venv/bin/activate
# The browser test (tests/test_browser.py) drives JupyterLab in Debian's headless chromium.
if ! command -v chromedriver >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" = 0 ] && echo "" || echo "sudo -n")
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver; } \
    >/dev/null 2>&1 || echo "WARNING: could not install chromium and chromium-driver: the browser test will be skipped"
fi
export CI=1 PYTHONHASHSEED=0
export MDLIB_DATA="${MDLIB_DATA:-$(mktemp -d -t mdlib-test-XXXXXX)}"
export MDLIB_RUNS="${MDLIB_RUNS:-$MDLIB_DATA/runs}"
echo "test data and checkpoints in $MDLIB_DATA"
# Two test processes with one math thread each (pytest-xdist; MDLIB_TEST_WORKERS=1 runs one): on two cores they
# finish sooner than one process with two threads (README, "Tests"). Each notebook and each test file stays in
# one process, in order; a checkpoint that both need is trained by one while the other waits
# (`mdlib.utils.exclusive`).
if [ "$WORKERS" -gt 1 ]; then
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" MKL_NUM_THREADS="${MKL_NUM_THREADS:-1}"
  PARALLEL=(-n "$WORKERS" --dist loadfile)
else
  PARALLEL=(-p no:xdist)
fi
python -m pytest "${PARALLEL[@]}" --nbval-lax --nbval-current-env -p no:cacheprovider tests notebooks "$@"
