#!/usr/bin/env bash
# Broker memory and goroutines per idle agent session, at 1,000 and 10,000 agents (or the
# counts given): a real broker in one process, real agents in a child process, on loopback.
# Usage: bench/idle.sh [COUNT...]
set -euo pipefail
cd "$(dirname "$0")/.."
counts=("$@")
[[ ${#counts[@]} -gt 0 ]] || counts=(1000 10000)
# Each agent is one socket on either side, plus the broker's listeners and the agents' resolvers.
ulimit -n "$(ulimit -Hn)"
for n in "${counts[@]}"; do
	(( n >= 1 && n <= 50000 )) || { echo "counts must be 1-50000" >&2; exit 2; }
	(( n + 100 <= $(ulimit -n) )) || { echo "ulimit -n $(ulimit -n) is too low for $n agents" >&2; exit 1; }
done
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/idleagents" ./bench/idleagents
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for n in "${counts[@]}"; do
	timeout 900 "$bin/idleagents" -n "$n"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
