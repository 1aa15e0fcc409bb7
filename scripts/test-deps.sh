#!/usr/bin/env bash
# Installs the real clients and servers the tests drive, when missing and when run as root,
# and staticcheck. Without root it only reports the missing Debian packages; the tests that
# need one then fail with its name.
set -euo pipefail
cd "$(dirname "$0")/.."

# staticcheck, pinned; installed with `go install` into the user cache directory (shared by
# every checkout), so that nothing needs to be on PATH. `test-deps.sh staticcheck-path`
# prints where the Makefile finds it.
staticcheck_version=v0.8.2
staticcheck="${XDG_CACHE_HOME:-$HOME/.cache}/maintproxy-tools/staticcheck-$staticcheck_version/staticcheck"
if [[ ${1:-} == staticcheck-path ]]; then
  echo "$staticcheck"
  exit 0
fi
if [[ ! -x $staticcheck ]]; then
  echo "test-deps: go install honnef.co/go/tools/cmd/staticcheck@$staticcheck_version"
  mkdir -p "$(dirname "$staticcheck")"
  # Installed beside its final path and renamed, so a concurrent run never sees half a file.
  tmp=$(mktemp -d "$(dirname "$staticcheck")/.install-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  GOBIN="$tmp" go install "honnef.co/go/tools/cmd/staticcheck@$staticcheck_version"
  mv "$tmp/staticcheck" "$staticcheck"
fi

packages=(openssh-server openssh-client proxytunnel putty-tools curl chromium libnss3-tools openssl
  dnsutils xvfb freerdp2-x11 freerdp2-shadow-x11 winpr-utils etcd-server etcd-client)
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
