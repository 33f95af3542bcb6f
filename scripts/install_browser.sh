#!/usr/bin/env bash
# Install Debian's chromium + chromium-driver for the browser tests (report page, demo page).
# Never fails the caller: when apt cannot be reached or used, it says so, records
# "unreachable: ..." in the status file and exits 0; the browser tests then skip with that reason.
# Any other failure is recorded as "failed: ..." and the browser tests fail (they must not hide it).
# Status file: $NER_BROWSER_STATUS, default ${TMPDIR:-/tmp}/ner-install-browser.status (tests/browser_support.py reads it).
set -uo pipefail
status_file=${NER_BROWSER_STATUS:-${TMPDIR:-/tmp}/ner-install-browser.status}
record() { echo "$1" > "$status_file"; echo "install_browser: $1"; }

if command -v chromedriver >/dev/null 2>&1 && { command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; }; then
  record "ok: already installed"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  record "unreachable: no apt-get on this machine"
  exit 0
fi
sudo=()
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    record "unreachable: not root and no password-less sudo for apt-get"
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
network_trouble="could not resolve|failed to fetch|temporary failure|connection (timed out|refused)|unable to connect|some index files failed"
# apt-get update can exit 0 with only warnings when no mirror answers: read its log as well.
if ! timeout 300 "${sudo[@]}" apt-get update -qq >"$log" 2>&1 || grep -qiE "$network_trouble" "$log"; then
  record "unreachable: apt-get update failed ($(grep -iE "$network_trouble" "$log" | tail -n 1 || tail -n 1 "$log"))"
  rm -f "$log"
  exit 0
fi
if timeout 900 "${sudo[@]}" apt-get install -y -qq chromium chromium-driver >"$log" 2>&1; then
  record "ok: installed $(chromium --version 2>/dev/null | head -n 1)"
else
  # apt answered but the install failed: a download error is still the network; anything else is ours.
  if grep -qiE "$network_trouble" "$log"; then
    record "unreachable: apt-get install could not download ($(grep -iE "$network_trouble" "$log" | tail -n 1))"
  else
    record "failed: apt-get install chromium chromium-driver ($(tail -n 1 "$log"))"
  fi
fi
rm -f "$log"
exit 0
