#!/usr/bin/env bash
# ONNX -> Ascend OM with ATC; all logic lives in convert/atc.py (see --help).
# Usage: bash convert_om.sh --model X.onnx --bs N (--seq_len L | --buckets 32,64,128) --soc_version AscendXXX
#            [--output NAME] [--bin_dir DIR] [--out_dir DIR] [--dry-run]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="${here}${PYTHONPATH:+:${PYTHONPATH}}"
# --help names what the user typed, not `python -m convert.atc`
export CONVERT_OM_PROG="bash $0"
exec "${PYTHON:-python3}" -m convert.atc "$@"
