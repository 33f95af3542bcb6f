#!/usr/bin/env bash
# ONNX -> Ascend OM with ATC; all logic lives in convert/atc.py (see --help).
# Usage: bash convert_om.sh --model X.onnx --bs N --seq_len L --soc_version AscendXXX [--output NAME] [--dry-run]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export PYTHONPATH="${here}${PYTHONPATH:+:${PYTHONPATH}}"
exec "${PYTHON:-python3}" -m convert.atc "$@"
