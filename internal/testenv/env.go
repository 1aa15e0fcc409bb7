// Package testenv starts the real broker, real agents and real targets on loopback for the
// project's end-to-end tests: the binaries are built once per test process and run as
// processes; their JSON logs are collected so tests can wait for what they announce.
package testenv

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"maintproxy/certs"
	"maintproxy/config"
)

// Domain is the provider domain of every test broker.
const Domain = "example.test"

// Account is a proxy account of the test broker, with its plain-text password.
type Account struct {
	Username  string
	Password  string
	Customers []string
}

// Customer is a customer of the test broker; the first system is the primary.
type Customer struct {
	ID      string
	Systems []string
}

// DefaultAccounts: reseller A manages 12345 and 67890, reseller B only 55555.
var DefaultAccounts = []Account{
	{Username: "resa", Password: "pass-a", Customers: []string{"12345", "67890"}},
	{Username: "resb", Password: "pass-b", Customers: []string{"55555"}},
}

// DefaultCustomers: 12345 has a primary SE1 and a secondary SE2.
var DefaultCustomers = []Customer{
	{ID: "12345", Systems: []string{"SE1", "SE2"}},
	{ID: "67890", Systems: []string{"SE1"}},
	{ID: "55555", Systems: []string{"SE1"}},
}

// Options shape a test broker. Zero values give the defaults above.
type Options struct {
	Accounts  []Account
	Customers []Customer
	// Extra top-level configuration keys (e.g. "limits", "tls", "dns", "listen" entries
	// other than proxy and web are merged into "listen").
	Extra map[string]any
	// Broker is the maintproxy binary to run (default: the one Bin builds).
	Broker string
}

// Env is one running test broker. Its listeners are on 127.0.0.1:0 unless Options say
// otherwise; the addresses below are the ones it bound, from its "broker started" log.
type Env struct {
	Dir        string
	ConfigPath string
	DataDir    string
	CAFile     string // the self-signed identity CA
	ProxyAddr  string // 127.0.0.1:port
	WebAddr    string // 127.0.0.1:port
	HTTPAddr   string // listen.http, when configured
	DNSAddr    string // listen.dns (UDP and TCP), when configured
	Domain     string
	Accounts   []Account
	Customers  []Customer
	// MetricsAddr is listen.metrics (127.0.0.1:port unless the test turned it off).
	MetricsAddr string

	t      testing.TB
	conf   map[string]any
	proc   *Proc
	broker string
}

// Secret is the agent secret the test broker expects for a system.
func Secret(customer, system string) string {
	return "secret-" + strings.ToLower(customer) + "-" + strings.ToLower(system)
}

// Start runs a broker and stops it when the test ends.
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	if o.Accounts == nil {
		o.Accounts = DefaultAccounts
	}
	if o.Customers == nil {
		o.Customers = DefaultCustomers
	}
	dir := t.TempDir()
	e := &Env{
		Dir: dir, ConfigPath: filepath.Join(dir, "maintproxy.yaml"), DataDir: filepath.Join(dir, "data"),
		Domain: Domain, Accounts: o.Accounts, Customers: o.Customers, t: t, broker: o.Broker,
	}
	e.CAFile = filepath.Join(e.DataDir, certs.CACertFile)
	e.conf = map[string]any{
		"domain":    Domain,
		"data_dir":  e.DataDir,
		"listen":    map[string]any{"proxy": "127.0.0.1:0", "web": "127.0.0.1:0", "metrics": "127.0.0.1:0"},
		"log":       map[string]any{"level": "debug"},
		"accounts":  accountsConf(o.Accounts),
		"customers": customersConf(o.Customers),
		// Tests stop and restart brokers with tunnels open: a short drain keeps them quick.
		"shutdown_timeout": "2s",
	}
	for _, a := range o.Accounts {
		NoteCredentials(a.Username, a.Password)
	}
	for k, v := range o.Extra {
		if k == "listen" {
			for lk, lv := range v.(map[string]any) {
				e.conf["listen"].(map[string]any)[lk] = lv
			}
			continue
		}
		e.conf[k] = v
	}
	e.WriteConfig(t, nil)
	e.startProc(t)
	return e
}

// WriteConfig rewrites the broker's configuration file, after edit changes the map (which
// may be nil). A running broker picks it up within about a second.
func (e *Env) WriteConfig(t testing.TB, edit func(conf map[string]any)) {
	t.Helper()
	if edit != nil {
		edit(e.conf)
	}
	// JSON is valid YAML, and needs no YAML encoder here.
	data, err := json.MarshalIndent(e.conf, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.ConfigPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startProc runs the broker and learns the addresses it bound from its "broker started"
// record. They go into the configuration the next WriteConfig writes (not now: a test
// waiting for the reload of its own edit must not see one of ours), so that a restart
// binds the same ports again, which agents and clients were given.
func (e *Env) startProc(t testing.TB) {
	t.Helper()
	bin := e.broker
	if bin == "" {
		bin = filepath.Join(Bin(t), "maintproxy")
	}
	e.proc = StartProc(t, "broker", bin, "serve", "--config", e.ConfigPath)
	r := e.proc.WaitLog(t, 20*time.Second, func(r Record) bool { return r.Msg() == "broker started" })
	e.ProxyAddr, e.WebAddr, e.HTTPAddr, e.DNSAddr = r.Str("proxy"), r.Str("web"), r.Str("http"), r.Str("dns")
	e.MetricsAddr = r.Str("metrics")
	if e.ProxyAddr == "" || e.WebAddr == "" {
		t.Fatalf("broker started record names no proxy or web address: %v", r)
	}
	listen := e.conf["listen"].(map[string]any)
	for k, v := range map[string]string{"proxy": e.ProxyAddr, "web": e.WebAddr, "http": e.HTTPAddr, "dns": e.DNSAddr, "metrics": e.MetricsAddr} {
		if v != "" {
			listen[k] = v
		}
	}
}

// Proc returns the broker process (logs, kill).
func (e *Env) Proc() *Proc { return e.proc }

// Restart stops the broker with SIGTERM and starts it again on the same ports and data.
// The ports are free between the two (another process could take one then; the restart
// would fail naming it).
func (e *Env) Restart(t testing.TB) {
	t.Helper()
	e.proc.Stop(t)
	e.WriteConfig(t, nil)
	e.startProc(t)
}

// Crash kills the broker with SIGKILL (no shutdown: what it had not written is lost),
// runs down (if not nil) while it is gone, and starts it again on the same ports and data.
func (e *Env) Crash(t testing.TB, down func()) {
	t.Helper()
	e.proc.Kill()
	<-e.proc.Done()
	if down != nil {
		down()
	}
	e.WriteConfig(t, nil)
	e.startProc(t)
}

// ProxyURL is the proxy as clients give it: https://127.0.0.1:port.
func (e *Env) ProxyURL() string { return "https://" + e.ProxyAddr }

// Host returns the maintenance host name for a target part, e.g. Host("12345-SE2").
func (e *Env) Host(prefix string) string { return prefix + ".maint." + e.Domain }

// Password returns the password of a configured account.
func (e *Env) Password(user string) string {
	for _, a := range e.Accounts {
		if a.Username == user {
			return a.Password
		}
	}
	return ""
}

// TargetCert issues a certificate signed by the broker's identity CA for names (DNS names
// or IPs), so a client trusting the CA trusts the target too.
func (e *Env) TargetCert(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	c, err := certs.IssueFromDataDir(e.DataDir, names...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Agent describes an agent to start; Secret defaults to the system's right secret.
type Agent struct {
	Customer     string
	System       string
	Secret       string
	RemoteAccess bool
	// Services maps requested ports to target addresses.
	Services  map[int]string
	Colocated bool
	Tunnels   []config.Tunnel
	// NoWait returns without waiting for the broker to report the agent online.
	NoWait bool
	// MaxBackoff caps reconnect waits (default 2s in tests).
	MaxBackoff time.Duration
	// CAFile verifies the broker (default: the broker's self-signed CA).
	CAFile string
	// BrokerAddrs and Connections are the agent's settings of the same names (cluster).
	BrokerAddrs []string
	Connections int
	// Network is network.systems: systems this agent reaches, by name, at an IPv4 address.
	Network map[string]string
	// ConfigPath, when set, is where the agent's configuration file goes, so that the test
	// can change it with RewriteAgent; by default a fresh file in the broker's directory.
	ConfigPath string
}

// StartAgent runs a maintagent process and waits until the broker reports it connected.
func (e *Env) StartAgent(t testing.TB, a Agent) *Proc {
	t.Helper()
	a = e.agentDefaults(a)
	NoteCredentials(a.Customer+"/"+a.System, a.Secret)
	path := a.ConfigPath
	if path == "" {
		path = filepath.Join(e.Dir, fmt.Sprintf("agent-%s-%s-%d.yaml", a.Customer, a.System, time.Now().UnixNano()))
	}
	if err := os.WriteFile(path, e.agentConfig(a), 0o600); err != nil {
		t.Fatal(err)
	}
	mark := e.proc.Mark()
	p := StartProc(t, "agent-"+a.Customer+"-"+a.System, filepath.Join(Bin(t), "maintagent"), "--config", path)
	if !a.NoWait {
		e.WaitAgent(t, a.Customer, a.System, mark)
	}
	return p
}

// RewriteAgent replaces the configuration file of the agent started with a.ConfigPath by
// a's, the way editors save: a new file renamed over the old one. A running agent applies
// it within about a second.
func (e *Env) RewriteAgent(t testing.TB, a Agent) {
	t.Helper()
	if a.ConfigPath == "" {
		t.Fatal("RewriteAgent: the agent has no ConfigPath")
	}
	tmp := a.ConfigPath + ".new"
	if err := os.WriteFile(tmp, e.agentConfig(e.agentDefaults(a)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, a.ConfigPath); err != nil {
		t.Fatal(err)
	}
}

func (e *Env) agentDefaults(a Agent) Agent {
	if a.Secret == "" {
		a.Secret = Secret(a.Customer, a.System)
	}
	if a.MaxBackoff == 0 {
		a.MaxBackoff = 2 * time.Second
	}
	if a.CAFile == "" {
		a.CAFile = e.CAFile
	}
	return a
}

// agentConfig is a's configuration file (JSON, which is YAML too).
func (e *Env) agentConfig(a Agent) []byte {
	services := map[string]string{}
	for p, addr := range a.Services {
		services[fmt.Sprint(p)] = addr
	}
	tunnels := []map[string]any{}
	for _, tu := range a.Tunnels {
		tunnels = append(tunnels, map[string]any{"application": tu.Application, "ip": tu.IP, "port": tu.Port})
	}
	conf := map[string]any{
		"broker": "https://" + e.WebAddr, "ca_file": a.CAFile, "server_name": "admin." + e.Domain,
		"customer": a.Customer, "system": a.System, "secret": a.Secret,
		"remote_access": map[string]any{"enabled": a.RemoteAccess, "services": services},
		"colocated":     map[string]any{"enabled": a.Colocated, "tunnels": tunnels},
		"max_backoff":   a.MaxBackoff.String(), "dial_timeout": "3s",
		"log": map[string]any{"level": "debug"},
	}
	if len(a.Network) > 0 {
		conf["network"] = map[string]any{"systems": a.Network}
	}
	if len(a.BrokerAddrs) > 0 {
		conf["broker_addrs"] = a.BrokerAddrs
	}
	if a.Connections > 0 {
		conf["connections"] = a.Connections
	}
	data, _ := json.Marshal(conf)
	return data
}

// WaitAgent waits until the broker logs the system's agent as connected after mark.
func (e *Env) WaitAgent(t testing.TB, customer, system string, mark int) {
	t.Helper()
	id := strings.ToLower(customer + "/" + system)
	e.proc.WaitLogAfter(t, mark, 20*time.Second, func(r Record) bool {
		return r.Msg() == "agent connected" && r.Str("identity") == id
	})
}

// Record is one JSON log line.
type Record map[string]any

// Msg is the record's message.
func (r Record) Msg() string { return r.Str("msg") }

// Str returns a field as a string ("" if absent).
func (r Record) Str(k string) string {
	v, ok := r[k]
	if !ok {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// Num returns a numeric field (0 if absent).
func (r Record) Num(k string) float64 {
	f, _ := r[k].(float64)
	return f
}

// Proc is a process under test with its collected log.
type Proc struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error

	mu      sync.Mutex
	cond    *sync.Cond
	records []Record
	lines   []string
}

// StartProc starts bin with args; its stderr is parsed as JSON log lines. The process is
// killed when the test ends if still running.
func StartProc(t testing.TB, name, bin string, args ...string) *Proc {
	t.Helper()
	p := &Proc{Name: name, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stdout = p.cmd.Stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	logFile := processLog(name, p.cmd.Process.Pid)
	var readDone sync.WaitGroup
	readDone.Add(1)
	go func() {
		defer readDone.Done()
		if logFile != nil {
			defer logFile.Close()
		}
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if logFile != nil {
				logFile.WriteString(line + "\n")
			}
			var r Record
			_ = json.Unmarshal([]byte(line), &r)
			p.mu.Lock()
			p.lines = append(p.lines, line)
			if r != nil {
				p.records = append(p.records, r)
			}
			p.cond.Broadcast()
			p.mu.Unlock()
		}
	}()
	go func() {
		readDone.Wait()
		p.err = p.cmd.Wait()
		close(p.done)
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	}()
	t.Cleanup(func() {
		p.Kill()
		<-p.done
		p.mu.Lock()
		for i, l := range p.lines {
			// Binaries built for `make test-race` report races here and go on.
			if strings.HasPrefix(l, "WARNING: DATA RACE") {
				t.Errorf("%s: data race:\n%s", name, strings.Join(p.lines[i:min(i+80, len(p.lines))], "\n"))
				break
			}
		}
		p.mu.Unlock()
		if t.Failed() {
			p.mu.Lock()
			n := len(p.lines)
			from := max(0, n-60)
			t.Logf("last %d log lines of %s:\n%s", n-from, name, strings.Join(p.lines[from:], "\n"))
			p.mu.Unlock()
		}
	})
	return p
}

// Mark returns a position in the log for WaitLogAfter.
func (p *Proc) Mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.records)
}

// WaitLog waits for a record matching pred anywhere in the log.
func (p *Proc) WaitLog(t testing.TB, timeout time.Duration, pred func(Record) bool) Record {
	t.Helper()
	return p.WaitLogAfter(t, 0, timeout, pred)
}

// WaitLogAfter waits for a record matching pred at or after mark; it fails the test on
// timeout or if the process exits first.
func (p *Proc) WaitLogAfter(t testing.TB, mark int, timeout time.Duration, pred func(Record) bool) Record {
	t.Helper()
	r, ok := p.FindAfter(mark, timeout, pred)
	if !ok {
		t.Fatalf("%s: no matching log record within %v", p.Name, Scale(timeout))
	}
	return r
}

// FindAfter is WaitLogAfter without failing: it reports whether a record was found. The
// timeout is stretched by Scale.
func (p *Proc) FindAfter(mark int, timeout time.Duration, pred func(Record) bool) (Record, bool) {
	timeout = Scale(timeout)
	timer := time.AfterFunc(timeout, func() {
		p.mu.Lock()
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	defer timer.Stop()
	deadline := time.Now().Add(timeout)
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := mark; ; {
		for ; i < len(p.records); i++ {
			if pred(p.records[i]) {
				return p.records[i], true
			}
		}
		select {
		case <-p.done:
			return nil, false
		default:
		}
		if time.Now().After(deadline) {
			return nil, false
		}
		p.cond.Wait()
	}
}

// Records returns a copy of the records logged so far.
func (p *Proc) Records() []Record {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Record(nil), p.records...)
}

// CountAfter is how many records at or after mark match pred.
func (p *Proc) CountAfter(mark int, pred func(Record) bool) int {
	n := 0
	for _, r := range p.Records()[mark:] {
		if pred(r) {
			n++
		}
	}
	return n
}

// Lines returns the raw log lines so far.
func (p *Proc) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// Kill ends the process at once (SIGKILL to its process group).
func (p *Proc) Kill() {
	if p.cmd.Process != nil {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
}

// Err is the process's exit error once Done is closed (nil for a clean exit).
func (p *Proc) Err() error {
	<-p.done
	return p.err
}

// Stop sends SIGTERM and waits up to 15 s for a clean exit, failing the test otherwise.
func (p *Proc) Stop(t testing.TB) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("%s exited uncleanly after SIGTERM: %v", p.Name, p.err)
		}
	case <-time.After(Scale(15 * time.Second)):
		p.Kill()
		t.Errorf("%s did not stop within 15s of SIGTERM", p.Name)
	}
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Pid is the process's id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the process (not its group) and does not wait.
func (p *Proc) Signal(sig syscall.Signal) error { return p.cmd.Process.Signal(sig) }

func accountsConf(accts []Account) []map[string]any {
	out := []map[string]any{}
	for _, a := range accts {
		out = append(out, map[string]any{"username": a.Username, "password_hash": Hash(a.Password), "customers": a.Customers})
	}
	return out
}

func customersConf(custs []Customer) []map[string]any {
	out := []map[string]any{}
	for _, c := range custs {
		var systems []map[string]any
		for i, s := range c.Systems {
			systems = append(systems, map[string]any{"name": s, "primary": i == 0, "agent_secret_hash": Hash(Secret(c.ID, s))})
		}
		out = append(out, map[string]any{"id": c.ID, "systems": systems})
	}
	return out
}

// Hash is a cheap bcrypt hash for test configurations.
func Hash(secret string) string {
	h, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
}
