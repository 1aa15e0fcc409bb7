#!/usr/bin/env bash
# Compares, in one run and interleaved, direct TCP, one TLS hop (`loadgen tlsfwd`) and
# maintproxy (the built broker and agent processes) on loopback with the shared loadgen tool,
# and prints each figure plus the maintproxy ÷ TLS-hop ratios, which are what travel between
# machines. Every byte is checked end to end by loadgen.
#
# Usage: bench/compare.sh [REPS] [MIB]     (default 3 repetitions, 512 MiB per cell)
# Env:   BASE_BIN=DIR adds a system "baseline" run from maintproxy/maintagent binaries in DIR
#        (an older build), interleaved with the others.
#        LOADGEN_SRC (default ../shared/bench/loadgen or ../../shared/…), KEEP=1 keeps the work directory.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
reps=${1:-3}
mib=${2:-512}
(( reps >= 1 && reps <= 20 && mib >= 16 && mib <= 8192 )) || { echo "usage: $0 [REPS 1-20] [MIB 16-8192]" >&2; exit 2; }
loadgen_src=$(loadgen_dir) || exit 2
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[[ ${KEEP:-} == 1 ]] && echo "work dir: $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT

# Random free loopback ports, so that runs of other people on the same machine do not collide.
used=$(ss -Htln | awk '{print $4}')
port() { # port VAR: sets VAR to a port nobody listens on and we have not handed out
	local p
	for _ in $(seq 200); do
		p=$((20000 + RANDOM % 12000)) # below the ephemeral range
		grep -q ":$p\$" <<<"$used" || { used+=$'\n'"127.0.0.1:$p"; printf -v "$1" %s "$p"; return; }
	done
	echo "no free port" >&2; exit 1
}
port sink_port; port hop_port

build_tools "$work" "$loadgen_src"
lg=$work/loadgen

# start_mp NAME BINDIR: a broker and an agent built from BINDIR, with their own ports and data.
declare -A target=() procs=()
start_mp() {
	local name=$1 bin=$2 d=$work/sys-$1 proxy_port web_port broker agent
	port proxy_port; port web_port
	mp_config "$d" "$bin" "127.0.0.1:$proxy_port" "127.0.0.1:$web_port" "https://127.0.0.1:$web_port" "127.0.0.1:$sink_port" \
		"limits: {per_account: 100000, per_system: 100000}"
	"$bin/maintproxy" serve --config "$d/broker.yaml" & pids+=($!); broker=$!
	wait_ca "$d"
	"$bin/maintagent" --config "$d/agent.yaml" & pids+=($!); agent=$!
	target[$name]=$(mp_target "127.0.0.1:$proxy_port" "$d")
	procs[$name]="$broker $agent"
	for _ in $(seq 100); do
		# shellcheck disable=SC2086
		"$lg" connrate ${target[$name]} --n 1 --c 1 >/dev/null 2>&1 && return
		sleep 0.1
	done
	echo "$name did not come up" >&2; exit 1
}
"$lg" sink "127.0.0.1:$sink_port" 2>/dev/null & pids+=($!)
"$lg" tlsfwd "127.0.0.1:$hop_port" "127.0.0.1:$sink_port" "$work/hop.pem" "$work/hop-key.pem" 2>/dev/null & pids+=($!); hop=$!
target[direct]="--direct 127.0.0.1:$sink_port"
target[tlshop]="--tls 127.0.0.1:$hop_port --cacert $work/hop-ca.pem --sni hop.test"
procs[direct]="" procs[tlshop]=$hop
systems=(direct tlshop maintproxy)
start_mp maintproxy "$work"
if [[ -n ${BASE_BIN:-} ]]; then start_mp baseline "$BASE_BIN"; systems+=(baseline); fi
ticks() { local t=0 p; for p in $1; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$t"; }
hz=$(getconf CLK_TCK)
out=$work/results.txt
run() { # run SYSTEM REP loadgen-args...
	local sys=$1 rep=$2; shift 2
	# shellcheck disable=SC2086
	"$lg" "$@" ${target[$sys]} --system "$sys" | sed "s/\$/ rep=$rep/" | tee -a "$out"
}
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
for rep in $(seq "$reps"); do
	declare -A cpu=()
	# Rotate the order each repetition so that no system always runs right after another.
	k=$((rep % ${#systems[@]}))
	order=("${systems[@]:$k}" "${systems[@]:0:$k}")
	for sys in "${order[@]}"; do for p in ${procs[$sys]}; do echo 5 >"/proc/$p/clear_refs"; done; done
	for cell in "up 1" "up 8" "down 1"; do
		set -- $cell
		for sys in "${order[@]}"; do
			t0=$(ticks "${procs[$sys]}")
			run "$sys" "$rep" throughput --dir "$1" --conns "$2" --mib "$mib"
			cpu[$sys]=$(( ${cpu[$sys]:-0} + $(ticks "${procs[$sys]}") - t0 ))
		done
	done
	for sys in "${order[@]}"; do
		[[ -n ${procs[$sys]} ]] || continue
		echo "RESULT system=$sys test=cpu s_per_gib=$(awk -v t="${cpu[$sys]}" -v hz="$hz" -v m="$mib" 'BEGIN{printf "%.3f", t/hz/(3*m/1024)}') rep=$rep" | tee -a "$out"
	done
	for sys in "${order[@]}"; do run "$sys" "$rep" throughput --dir up --conns 1 --mib 64 --halfclose; done
	for sys in "${order[@]}"; do run "$sys" "$rep" connrate --n 2000 --c 50; done
	hwm() { awk '/VmHWM/{print $2}' "/proc/$1/status"; }
	echo "RESULT system=tlshop test=rss srv_kib=$(hwm "$hop") rep=$rep" | tee -a "$out"
	for sys in maintproxy baseline; do
		[[ -n ${procs[$sys]:-} ]] || continue
		set -- ${procs[$sys]}
		echo "RESULT system=$sys test=rss srv_kib=$(hwm "$1") agt_kib=$(hwm "$2") rep=$rep" | tee -a "$out"
	done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out"
echo
"$lg" summarize "$out"
echo
# Medians per system, then maintproxy ÷ TLS hop (for CPU and p99 lower is better).
awk "$awk_median"'
function med(key) { return median(vals[key]) }
/^RESULT/ {
	delete kv
	for (i = 2; i <= NF; i++) { split($i, f, "="); kv[f[1]] = f[2] }
	s = kv["system"]; m = ""
	if (kv["test"] == "throughput" && kv["halfclose"] == "false") { m = kv["dir"] kv["conns"]; v = kv["mib_s"] }
	if (kv["test"] == "cpu") { m = "cpu"; v = kv["s_per_gib"] }
	if (kv["test"] == "connrate") { add(s, "conn_s", kv["conn_s"]); add(s, "p50", kv["p50_ms"]); m = "p99"; v = kv["p99_ms"] }
	if (kv["test"] == "rss") { add(s, "srss", kv["srv_kib"] / 1024); if ("agt_kib" in kv) add(s, "arss", kv["agt_kib"] / 1024) }
	if (m != "") add(s, m, v)
}
function num(v) { return v == "" ? "–" : v + 0 >= 100 ? sprintf("%.0f", v) : v + 0 >= 10 ? sprintf("%.1f", v) : sprintf("%.2f", v) }
function add(s, m, v) { if (s == "baseline") base = 1; vals[s SUBSEP m] = vals[s SUBSEP m] " " v }
END {
	split("up1 up8 down1 cpu conn_s p50 p99 srss arss", ms, " ")
	split("up 1 conn MiB/s|up 8 conns MiB/s|down 1 conn MiB/s|CPU s/GiB (server+agent)|conn/s|p50 ms|p99 ms|server RSS MiB|agent RSS MiB", names, "|")
	printf "| medians | direct | tlshop | maintproxy | maintproxy ÷ tlshop |%s\n|---|---|---|---|---|%s\n", base ? " baseline | baseline ÷ tlshop |" : "", base ? "---|---|" : ""
	for (i = 1; i <= 9; i++) {
		d = med("direct" SUBSEP ms[i]); h = med("tlshop" SUBSEP ms[i]); p = med("maintproxy" SUBSEP ms[i])
		r = (h != "" && p != "" && h + 0 > 0) ? sprintf("%.2f", p / h) : "–"
		printf "| %s | %s | %s | %s | %s |", names[i], num(d), num(h), num(p), r
		if (base) { b = med("baseline" SUBSEP ms[i]); printf " %s | %s |", num(b), (h != "" && b != "" && h + 0 > 0) ? sprintf("%.2f", b / h) : "–" }
		printf "\n"
	}
}' "$out"
