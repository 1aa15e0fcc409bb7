# Shared by bench/compare.sh and bench/wan.sh (sourced from the repository root, not run):
# finding and building the tools, one maintproxy system's configuration, and the median
# used by the result tables.

# loadgen_dir prints the shared loadgen source directory: LOADGEN_SRC, else the first of
# ../shared/bench/loadgen and ../../shared/bench/loadgen that exists.
loadgen_dir() {
	local d src=${LOADGEN_SRC:-}
	for d in ../shared/bench/loadgen ../../shared/bench/loadgen; do [[ -z $src && -d $d ]] && src=$d; done
	[[ -d $src ]] || { echo "set LOADGEN_SRC to the shared loadgen source directory" >&2; return 2; }
	echo "$src"
}

# build_tools WORK LOADGEN_SRC [PKG...]: maintproxy and maintagent built like `make build`
# (static, stripped) with the extra packages, loadgen, and the TLS hop's certificate, all in
# WORK: hop.pem (leaf and CA), hop-key.pem, and hop-ca.pem for its clients to trust. Like the
# broker's it is ECDSA P-256 issued by a CA and served with it, so that handshakes cost the
# same on both sides: a self-signed certificate trusted as it is would spare the hop's
# clients a signature check. Both negotiate Go's defaults (TLS 1.3, X25519MLKEM768,
# AES-128-GCM).
build_tools() {
	local work=$1 src=$2
	shift 2
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/" ./cmd/maintproxy ./cmd/maintagent "$@"
	(cd "$src" && go build -o "$work/loadgen" .)
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=hop-ca \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
		-keyout "$work/hop-ca-key.pem" -out "$work/hop-ca.pem" 2>/dev/null
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=hop.test \
		-keyout "$work/hop-key.pem" -out "$work/hop.csr" 2>/dev/null
	openssl x509 -req -in "$work/hop.csr" -CA "$work/hop-ca.pem" -CAkey "$work/hop-ca-key.pem" -days 2 \
		-extfile <(printf 'subjectAltName=DNS:hop.test\nextendedKeyUsage=serverAuth\n') -out "$work/hop-leaf.pem" 2>/dev/null
	cat "$work/hop-leaf.pem" "$work/hop-ca.pem" >"$work/hop.pem"
}

# mp_config DIR BIN PROXY WEB BROKER_URL SINK [YAML]: DIR/broker.yaml (listening on PROXY and
# WEB, no metrics listener — its fixed default port would collide between systems — data in
# DIR/data, with the extra YAML lines) and DIR/agent.yaml (dialling BROKER_URL,
# offering port 7071 as SINK) for account u and system 12345/SE1, password pw for both.
mp_config() {
	local d=$1 bin=$2 proxy=$3 web=$4 url=$5 sink=$6 extra=${7:-} hash
	mkdir -p "$d"
	hash=$(echo pw | "$bin/maintproxy" passwd)
	cat >"$d/broker.yaml" <<YAML
domain: example.test
listen: {proxy: "$proxy", web: "$web", metrics: ""}
data_dir: $d/data
log: {level: warn}
$extra
accounts: [{username: u, password_hash: "$hash", customers: ["12345"]}]
customers: [{id: "12345", systems: [{name: SE1, primary: true, agent_secret_hash: "$hash"}]}]
YAML
	cat >"$d/agent.yaml" <<YAML
broker: $url
ca_file: $d/data/ca.pem
server_name: admin.example.test
customer: "12345"
system: SE1
secret: pw
log: {level: warn}
remote_access: {enabled: true, services: {"7071": "$sink"}}
YAML
}

# wait_ca DIR: waits (10 s at most) for the broker of DIR to write its CA.
wait_ca() {
	for _ in $(seq 100); do [[ -f $1/data/ca.pem ]] && return; sleep 0.1; done
}

# mp_target PROXY DIR: loadgen's arguments for the sink through the broker at PROXY.
mp_target() {
	echo "--proxy https://u:pw@$1 --dest 12345-SE1.maint.example.test:7071 --cacert $2/data/ca.pem --sni maint.example.test"
}

# awk_median is an awk function: median(s) of the numbers in the space-separated string s
# ("" when there are none).
awk_median='
function median(s,   n, a, i, j, t) {
	n = split(s, a, " ")
	for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j-1] + 0 > a[j] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
	if (n == 0) return ""
	return n % 2 ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}'
