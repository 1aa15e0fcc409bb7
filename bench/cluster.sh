#!/usr/bin/env bash
# Cluster mode figures, measured in one run: forwarded vs local CONNECT setup latency and
# single-stream throughput (two brokers on an embedded etcd, in one process), agent logins
# per second, and the failover gaps (real broker processes on a 3-member etcd, kill -9)
# for an agent with one and with two connections and for 200 agents, and a hung holder
# (SIGSTOP).
# Needs Debian's etcd-server for the failover part (scripts/test-deps.sh installs it).
# Usage: bench/cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT

echo "== setup latency (request to 200, TLS up), 2000 CONNECTs each, interleaved"
go test -run '^$' -bench 'BenchmarkClusterSetup$' -benchtime 1x ./bench/ | grep -E '^Benchmark' | tr -s ' \t' ' '
echo "== single-stream throughput, local and forwarded interleaved, 64 MiB each, medians of 5 pairs"
go test -run '^$' -bench 'BenchmarkClusterThroughput' -benchtime 5x ./bench/ | grep -E '^Benchmark' | tr -s ' \t' ' '
echo "== agent logins per second (50 agents at once, one broker)"
go test -run '^$' -bench 'BenchmarkAgentLogins' -benchtime 1x ./bench/ | grep -E '^Benchmark' | tr -s ' \t' ' '
echo "== failover (real processes, kill -9 and SIGSTOP) and config push"
go test -count=1 -v -run 'TestClusterFailover|TestClusterHolderHangs|TestClusterAgentsFailOver|TestClusterConfigPushAndDrain' ./e2e/ >"$out" 2>&1 || { tail -50 "$out"; exit 1; }
grep -E 'cluster_test.go:[0-9]+: (connections|tunnel through|stopped|[0-9]+ agents|config push|push without)' "$out" | sed 's/^ *cluster_test.go:[0-9]*: /  /'
