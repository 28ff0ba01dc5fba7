#!/usr/bin/env bash
# Render Foundry's console (`GET /`, the runs list) in headless Chromium against a running `foundry serve`
# (or `foundry web`), check that it rendered, and save a screenshot to look at.
#
#   scripts/check_page.sh [URL] [SCREENSHOT]     # defaults: http://127.0.0.1:8000/  ./foundry-page.png
#
# When the server has FOUNDRY_API_TOKEN set, export the same FOUNDRY_API_TOKEN here: the page is
# opened with it as the HTTP Basic password, as a browser would sign in.
set -euo pipefail

url="${1:-http://127.0.0.1:8000/}"
shot="${2:-foundry-page.png}"

browser=""
for candidate in chromium chromium-browser google-chrome; do
    if command -v "$candidate" >/dev/null 2>&1; then browser="$candidate"; break; fi
done
if [ -z "$browser" ]; then
    echo "check_page: Chromium is not installed; install it with: sudo apt-get install -y chromium" >&2
    echo "            (macOS: brew install --cask chromium, then put it on PATH as chromium)" >&2
    exit 2
fi

curl_auth=()
page="$url"
if [ -n "${FOUNDRY_API_TOKEN:-}" ]; then
    curl_auth=(--user "operator:${FOUNDRY_API_TOKEN}")
    # user:password@host in the URL is how a headless browser signs in to HTTP Basic.
    page="${url/:\/\//://operator:${FOUNDRY_API_TOKEN}@}"
fi

status=$(curl -s -o /dev/null -w '%{http_code}' ${curl_auth[@]+"${curl_auth[@]}"} "$url" || true)
case "$status" in
    200) ;;
    000) echo "check_page: nothing answers at $url; start Foundry first: foundry serve" >&2; exit 1 ;;
    401|303) echo "check_page: $url wants a sign-in; export FOUNDRY_API_TOKEN (the server's token)" >&2; exit 1 ;;
    403) echo "check_page: $url refuses to serve: Foundry has no FOUNDRY_API_TOKEN and is not on loopback" >&2; exit 1 ;;
    *) echo "check_page: $url answered HTTP $status, not 200" >&2; exit 1 ;;
esac

flags=(--headless --no-sandbox --disable-gpu --disable-background-networking
       --disable-component-update --disable-sync --hide-scrollbars --window-size=1280,900)
dom=$("$browser" "${flags[@]}" --dump-dom "$page" 2>/dev/null)
for expected in "<h2>Runs</h2>" 'id="runs"'; do
    if ! grep -qF "$expected" <<<"$dom"; then
        echo "check_page: the rendered page has no $expected" >&2
        exit 1
    fi
done
"$browser" "${flags[@]}" --screenshot="$shot" "$page" 2>/dev/null
if [ ! -s "$shot" ]; then
    echo "check_page: Chromium wrote no screenshot to $shot" >&2
    exit 1
fi
echo "check_page: $url rendered ($(grep -o '<tr>' <<<"$dom" | wc -l) table rows); screenshot: $shot"
