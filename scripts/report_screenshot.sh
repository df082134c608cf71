#!/usr/bin/env bash
# A full-page screenshot of a report's index.html in headless Chromium (Debian's chromium), for docs/.
#   bash scripts/report_screenshot.sh demo-output/report/index.html [docs/demo-report.png]
set -euo pipefail
page="$(realpath "$1")"
out="$(realpath -m "${2:-docs/demo-report.png}")"
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$profile" --virtual-time-budget=5000 \
    --hide-scrollbars --window-size=1280,2600 --screenshot="$out" "file://$page" 2>/dev/null
echo "$out"
