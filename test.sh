#!/usr/bin/env bash
# Set up (first time: .venv and the test browser) and run the test suite; arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
bash scripts/setup.sh
# Debian's chromium + chromium-driver for the browser tests; never fails (the tests say why they skip)
bash scripts/install_browser.sh
. .venv/bin/activate
export HF_HUB_OFFLINE=1
exec python -m pytest "$@"
