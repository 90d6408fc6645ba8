#!/usr/bin/env bash
# Make sure headless Chromium and Firefox are here for the browser tests (X3: every page the system
# ships works in both): installs Debian's packages when they are missing. Where it cannot (not root,
# no apt), it says so and the rest of the suite still runs: the browser tests then fail, naming
# what is missing.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
chromium_here() { have chromium || have chromium-browser; }
firefox_here() { have firefox-esr || have firefox; }

if chromium_here && firefox_here; then
  echo "Chromium and Firefox are here"
  exit 0
fi
if ! have apt-get || [ "$(id -u)" != 0 ]; then
  echo "WARNING: Chromium and Firefox are needed by tests/standalone/test_pages_in_browsers.py;" \
       "install them (Debian, as root: apt-get install chromium firefox-esr)" >&2
  exit 0
fi
echo "installing Chromium and Firefox (Debian packages)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium firefox-esr >/dev/null
chromium_here && firefox_here
