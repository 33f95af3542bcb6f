#!/usr/bin/env bash
# Set up (first time) and run the whole flow end to end; arguments go to scripts/run_all.sh.
set -euo pipefail
cd "$(dirname "$0")"
# help first: it must not wait for (or fail on) the setup
for arg in "$@"; do
  case "$arg" in
    -h|--help)
      echo "Usage: bash run.sh [OPTIONS]: set up .venv (first time), then run scripts/run_all.sh [OPTIONS]"
      echo
      sed -n '2,11p' scripts/run_all.sh | sed 's/^# \{0,1\}//'
      exit 0 ;;
  esac
done
bash scripts/setup.sh
. .venv/bin/activate
exec bash scripts/run_all.sh "$@"
