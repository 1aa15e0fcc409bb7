#!/usr/bin/env bash
# One stream over a 100 ms round trip, both directions, through maintproxy and through one
# direct TLS hop over the same path. Three network namespaces this script creates (needs
# root): "b" (broker and technician), "c" (customer: agent, sink, TLS hop) and "m" between
# them, where bench/delayfwd bridges two veth pairs with DELAY_MS each way (the kernel here
# has no sch_netem). tcp_wmem/tcp_rmem max are raised to 32 MiB inside b and c.
#
# Usage: bench/wan.sh [REPS] [MIB]   (default 3 repetitions of 512 MiB per cell)
# Env:   DELAY_MS (default 50, one way), RATE (MiB/s link rate, default 0 = unlimited),
#        BASE_BIN=DIR adds "baseline" from older maintproxy/maintagent binaries, LOADGEN_SRC.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
reps=${1:-3}
mib=${2:-512}
delay=${DELAY_MS:-50}
rate=${RATE:-0}
(( reps >= 1 && reps <= 20 && mib >= 16 && mib <= 8192 && delay >= 0 && delay <= 1000 )) ||
	{ echo "usage: $0 [REPS 1-20] [MIB 16-8192]; DELAY_MS 0-1000" >&2; exit 2; }
[[ $(id -u) == 0 ]] || { echo "$0 needs root (ip netns)" >&2; exit 1; }
loadgen_src=$(loadgen_dir) || exit 2

work=$(mktemp -d)
tag=mpw$$
nb=$tag-b nc=$tag-c nm=$tag-m
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	for n in $nb $nc $nm; do ip netns del "$n" 2>/dev/null || true; done
	[[ ${KEEP:-} == 1 ]] && echo "work dir: $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT

build_tools "$work" "$loadgen_src" ./bench/delayfwd
lg=$work/loadgen

declare -A target=()
# b [vb 10.77.0.1] <-> [vbm] m: delayfwd [vcm] <-> [vc 10.77.0.2] c
for n in $nb $nc $nm; do ip netns add "$n"; ip -n "$n" link set lo up; done
ip link add vb netns "$nb" type veth peer name vbm netns "$nm"
ip link add vc netns "$nc" type veth peer name vcm netns "$nm"
ip -n "$nb" addr add 10.77.0.1/24 dev vb
ip -n "$nc" addr add 10.77.0.2/24 dev vc
for l in "$nb vb" "$nc vc" "$nm vbm" "$nm vcm"; do set -- $l; ip -n "$1" link set "$2" up; done
for n in $nb $nc; do
	ip netns exec "$n" sysctl -qw net.ipv4.tcp_wmem="4096 16384 33554432" net.ipv4.tcp_rmem="4096 131072 33554432"
done
ip netns exec "$nm" "$work/delayfwd" -a vbm -b vcm -delay "${delay}ms" -rate "$rate" & pids+=($!)
# Background processes are started with ip netns exec itself (which execs them), so that $! is
# their pid and cleanup can stop them.
inb() { ip netns exec "$nb" "$@"; }
inc() { ip netns exec "$nc" "$@"; }
ip netns exec "$nc" "$lg" sink 0.0.0.0:19000 2>/dev/null & pids+=($!)
ip netns exec "$nc" "$lg" tlsfwd 10.77.0.2:19443 127.0.0.1:19000 "$work/hop.pem" "$work/hop-key.pem" 2>/dev/null & pids+=($!)
target[tls]="--tls 10.77.0.2:19443 --cacert $work/hop-ca.pem --sni hop.test"
ok=
for _ in $(seq 50); do
	# shellcheck disable=SC2086
	inb "$lg" connrate ${target[tls]} --n 1 --c 1 >/dev/null 2>&1 && { ok=1; break; }
	sleep 0.2
done
[[ $ok ]] || { echo "no path between the namespaces" >&2; exit 1; }
# TCP connect time is one round trip.
echo "path: $(inb "$lg" connrate --direct 10.77.0.2:19000 --n 5 --c 1 | grep -o 'setup_p50_ms=[0-9.]*') (TCP connect = 1 RTT)"

start_mp() { # start_mp NAME BINDIR PORTBASE
	local name=$1 bin=$2 base=$3 d=$work/sys-$1
	mp_config "$d" "$bin" "127.0.0.1:$base" "10.77.0.1:$((base + 1))" "https://10.77.0.1:$((base + 1))" "127.0.0.1:19000"
	ip netns exec "$nb" "$bin/maintproxy" serve --config "$d/broker.yaml" & pids+=($!)
	wait_ca "$d"
	ip netns exec "$nc" "$bin/maintagent" --config "$d/agent.yaml" & pids+=($!)
	target[$name]=$(mp_target "127.0.0.1:$base" "$d")
	for _ in $(seq 100); do
		# shellcheck disable=SC2086
		inb "$lg" connrate ${target[$name]} --n 1 --c 1 >/dev/null 2>&1 && return
		sleep 0.2
	done
	echo "$name did not come up" >&2; exit 1
}
systems=(tls maintproxy)
start_mp maintproxy "$work" 16443
if [[ -n ${BASE_BIN:-} ]]; then start_mp baseline "$BASE_BIN" 17443; systems+=(baseline); fi

out=$work/results.txt
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
for rep in $(seq "$reps"); do
	k=$((rep % ${#systems[@]}))
	order=("${systems[@]:$k}" "${systems[@]:0:$k}")
	for dir in up down; do
		for sys in "${order[@]}"; do
			# shellcheck disable=SC2086
			inb "$lg" throughput ${target[$sys]} --system "$sys" --dir "$dir" --conns 1 --mib "$mib" --timeout 300s |
				sed "s/\$/ rep=$rep/" | tee -a "$out"
		done
	done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
echo
awk -v rtt="$((2 * delay))" "$awk_median"'
/^RESULT/ {
	delete kv
	for (i = 2; i <= NF; i++) { split($i, f, "="); kv[f[1]] = f[2] }
	k = kv["system"] SUBSEP kv["dir"]; v[k] = v[k] " " (kv["ok"] == "true" ? kv["mib_s"] : "fail"); sys[kv["system"]] = 1
}
function med(s) { return median(s) }
END {
	printf "| %d ms RTT, one stream, MiB/s (median) | up | down | up ÷ tls | down ÷ tls |\n|---|---|---|---|---|\n", rtt
	for (s in sys) {
		u = med(v[s SUBSEP "up"]); d = med(v[s SUBSEP "down"]); tu = med(v["tls" SUBSEP "up"]); td = med(v["tls" SUBSEP "down"])
		printf "| %s (all: up%s; down%s) | %s | %s | %.2f | %.2f |\n", s, v[s SUBSEP "up"], v[s SUBSEP "down"], u, d, (tu > 0 ? u / tu : 0), (td > 0 ? d / td : 0)
	}
}' "$out"
