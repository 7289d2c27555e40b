#!/usr/bin/env bash
# Debian's chromium for the report's browser test (Playwright drives it; Playwright's own browser download is
# not reachable from CI). make test and .ci/run call this first: it installs chromium when it is missing and
# this user can (root, or sudo without a password), and otherwise stops at once with the one command to run.
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "make test needs Debian's chromium for the report's browser test (/usr/bin/chromium is missing) and" >&2
    echo "cannot install it as this user; run once:  sudo apt-get install -y chromium" >&2
    exit 2
fi
echo "installing Debian's chromium for the report's browser test (apt-get, about a minute)"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
[ -x /usr/bin/chromium ] || { echo "apt-get did not install /usr/bin/chromium" >&2; exit 2; }
