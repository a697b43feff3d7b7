#!/usr/bin/env bash
# Renders NormFold's HTML report of the bundled resnet_tiny fold in headless Chromium and checks it as a person would
# see it: the page loads with no console message (it has no script, so any would be an error), references nothing
# outside itself, the rendered DOM holds the drift chart (one point per compared tensor) and the error histogram, and a
# screenshot is taken.
#
#   tests/html/render.sh [OUT_DIR]      # default OUT_DIR: a new temporary folder
#
# Needs Debian's chromium (apt-get install -y chromium). Exit 0 and the screenshot's path when every check passes.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
command -v chromium >/dev/null || { echo "render.sh: chromium not found (apt-get install -y chromium)" >&2; exit 2; }

dotnet build src/NormFold.Cli -c Release -nologo -v q >/dev/null
normfold() { dotnet run --project src/NormFold.Cli -c Release --no-build -- "$@"; }
html="$out/resnet_tiny.html"
normfold fold tests/models/resnet_tiny.onnx -o "$out/resnet_tiny.folded.onnx" --check --html "$html" -q >/dev/null

fail() { echo "render.sh: $*" >&2; exit 1; }
# Nothing from outside: no script, no stylesheet link, no URL but the SVG namespace.
grep -qiE '<(script|link|img|iframe)[ >]' "$html" && fail "$html: has a script, link, img or iframe"
sed 's#xmlns="http://www.w3.org/2000/svg"##g' "$html" | grep -qiE 'https?:|url\(' && fail "$html: references something outside itself"

profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --user-data-dir="$profile" --enable-logging=stderr --v=0)
chromium "${flags[@]}" --dump-dom "file://$html" >"$out/dom.html" 2>"$out/chromium.log"
chromium "${flags[@]}" --hide-scrollbars --window-size=1100,1900 --screenshot="$out/resnet_tiny.png" "file://$html" \
  >/dev/null 2>>"$out/chromium.log"

# Chromium logs each console message as ":CONSOLE:"; a page without script must log none.
if grep -q ':CONSOLE' "$out/chromium.log"; then grep ':CONSOLE' "$out/chromium.log" >&2; fail "console messages while rendering"; fi
grep -q 'class="chart drift"' "$out/dom.html" || fail "the rendered page has no drift chart"
grep -q 'class="chart histogram"' "$out/dom.html" || fail "the rendered page has no error histogram"
points=$(grep -o '<circle[^>]*class="point[^"]*"' "$out/dom.html" | wc -l)
# 28 shared intermediate tensors + 1 output, plus the legend's three sample points.
[ "$points" -ge 29 ] || fail "the drift chart has $points points, expected at least 29"
[ -s "$out/resnet_tiny.png" ] || fail "no screenshot"
echo "render.sh: ok: $html rendered without console messages; drift chart ($points points) and histogram present"
echo "$out/resnet_tiny.png"
