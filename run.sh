#!/usr/bin/env bash
# Set up (first time) and run the whole flow end to end; arguments go to scripts/run_all.sh.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
. .venv/bin/activate
exec bash scripts/run_all.sh "$@"
