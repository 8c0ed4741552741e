#!/usr/bin/env bash
# Set up (./scripts/setup.sh) and run the main job: the notebook sequence executed by papermill,
# writing executed notebooks, figures, metrics, results.csv and an HTML report (report/index.html)
# into runs/<name>/.
#   ./scripts/run.sh                  # full mode, seed 0, all image-text tasks where notebooks take one
#   ./scripts/run.sh --mode fast      # the quick version (minutes)
#   ./scripts/run.sh --seeds 0 1 2    # any option of python -m mdlib.pipeline.runner
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. .venv/bin/activate
python -m mdlib.pipeline.runner "$@"
