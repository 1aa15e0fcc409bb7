#!/usr/bin/env bash
# Installs the real clients and servers the tests drive, when missing and when run as root.
# Without root it only reports what is missing; the tests that need it then fail with that name.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(openssh-server openssh-client proxytunnel putty-tools curl chromium libnss3-tools
  dnsutils xvfb freerdp2-x11 freerdp2-shadow-x11 winpr-utils)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "test-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q "${missing[@]}" >/dev/null
  else
    echo "test-deps: missing Debian packages (install as root): ${missing[*]}" >&2
  fi
fi

if [[ -f e2e/browser/package-lock.json ]] && [[ ! -d e2e/browser/node_modules/playwright-core ]]; then
  echo "test-deps: npm ci in e2e/browser"
  npm ci --prefix e2e/browser --no-audit --no-fund >/dev/null
fi
