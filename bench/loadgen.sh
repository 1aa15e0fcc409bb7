#!/usr/bin/env bash
# Measures maintproxy with the shared loadgen tool (../shared/bench/loadgen), the same way as
# the reference figures there: broker + agent + sink on loopback, every byte checked.
# Usage: bench/loadgen.sh [REPS] [MIB]   (default 3 repetitions of 1024 MiB per cell)
set -euo pipefail
cd "$(dirname "$0")/.."
reps=${1:-3}
mib=${2:-1024}
loadgen_src=${LOADGEN_SRC:-../shared/bench/loadgen}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

go build -o "$work/" ./cmd/maintproxy ./cmd/maintagent
(cd "$loadgen_src" && go build -o "$work/loadgen" .)
hash=$(echo pw | "$work/maintproxy" passwd)
cat > "$work/broker.yaml" <<YAML
domain: example.test
listen: {proxy: "127.0.0.1:16443", web: "127.0.0.1:16444"}
data_dir: $work/data
log: {level: warn}
limits: {per_account: 100000, per_system: 100000}
accounts: [{username: u, password_hash: "$hash", customers: ["12345"]}]
customers: [{id: "12345", systems: [{name: SE1, primary: true, agent_secret_hash: "$hash"}]}]
YAML
"$work/maintproxy" serve --config "$work/broker.yaml" & pids+=($!); broker=$!
"$work/loadgen" sink 127.0.0.1:19000 2>/dev/null & pids+=($!)
for _ in $(seq 100); do [[ -f $work/data/ca.pem ]] && break; sleep 0.1; done
cat > "$work/agent.yaml" <<YAML
broker: https://127.0.0.1:16444
ca_file: $work/data/ca.pem
server_name: admin.example.test
customer: "12345"
system: SE1
secret: pw
log: {level: warn}
remote_access: {enabled: true, services: {"7071": "127.0.0.1:19000"}}
YAML
"$work/maintagent" --config "$work/agent.yaml" & pids+=($!); agent=$!
target=(--proxy https://u:pw@127.0.0.1:16443 --dest 12345-SE1.maint.example.test:7071 --cacert "$work/data/ca.pem" --sni maint.example.test --system maintproxy)
for _ in $(seq 100); do "$work/loadgen" connrate "${target[@]}" --n 1 --c 1 >/dev/null 2>&1 && break; sleep 0.1; done

cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
out="$work/results.txt"
for rep in $(seq "$reps"); do
  c0=$(( $(cpu $broker) + $(cpu $agent) ))
  "$work/loadgen" throughput "${target[@]}" --dir up --mib "$mib" --conns 1 | sed "s/\$/ rep=$rep/" | tee -a "$out"
  c1=$(( $(cpu $broker) + $(cpu $agent) ))
  echo "RESULT system=maintproxy test=cpu_s_per_gib value=$(awk -v d=$((c1-c0)) -v hz="$(getconf CLK_TCK)" -v m="$mib" 'BEGIN{printf "%.2f", d/hz/(m/1024)}') rep=$rep" | tee -a "$out"
  "$work/loadgen" throughput "${target[@]}" --dir up --mib "$mib" --conns 8 | sed "s/\$/ rep=$rep/" | tee -a "$out"
  "$work/loadgen" throughput "${target[@]}" --dir down --mib "$mib" --conns 1 | sed "s/\$/ rep=$rep/" | tee -a "$out"
  "$work/loadgen" throughput "${target[@]}" --dir up --mib 64 --conns 1 --halfclose | sed "s/\$/ rep=$rep/" | tee -a "$out"
  "$work/loadgen" connrate "${target[@]}" --n 2000 --c 50 | sed "s/\$/ rep=$rep/" | tee -a "$out"
done
echo "broker RSS peak: $(awk '/VmHWM/{print $2/1024 " MiB"}' /proc/$broker/status); agent RSS peak: $(awk '/VmHWM/{print $2/1024 " MiB"}' /proc/$agent/status)"
"$work/loadgen" summarize "$out"
