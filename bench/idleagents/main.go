// Command idleagents measures what an idle agent session costs the broker: it runs a real
// broker in this process, starts N real agents in a child process (so that their memory is
// not counted), waits until all N are registered, and reports the broker process's RSS,
// Go heap and goroutines per agent. Run it through bench/idle.sh, which raises the file limit.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"

	"maintproxy/broker"
	"maintproxy/config"
	"maintproxy/tunnel"
)

const (
	customer = "12345"
	secret   = "idle-bench-secret-of-24-chars"
	// connectWait bounds the wait for all agents; startRate paces their first dials.
	connectWait = 10 * time.Minute
	startRate   = 400 // agents per second
)

func main() {
	n := flag.Int("n", 1000, "number of agents (1-50000)")
	child := flag.Bool("agents", false, "internal: run the agents (child process)")
	brokerURL := flag.String("broker", "", "internal: broker URL for -agents")
	caFile := flag.String("ca", "", "internal: CA file for -agents")
	heapFile := flag.String("heapprofile", "", "write the broker's heap profile with all agents connected to this file")
	flag.Parse()
	if *n < 1 || *n > 50000 {
		fmt.Fprintln(os.Stderr, "idleagents: -n must be 1-50000")
		os.Exit(2)
	}
	var err error
	if *child {
		err = runAgents(*n, *brokerURL, *caFile)
	} else {
		err = measure(*n, *heapFile)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "idleagents:", err)
		os.Exit(1)
	}
}

func systemName(i int) string { return "s" + strconv.Itoa(i) }

// measure runs the broker, the agent child and the measurement.
func measure(n int, heapFile string) error {
	dir, err := os.MkdirTemp("", "idleagents")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// The cheapest bcrypt cost: 10,000 logins at the default cost would take minutes of CPU,
	// and login cost is not what this measures.
	hash, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost)
	if err != nil {
		return err
	}
	systems := make([]config.System, n)
	for i := range systems {
		systems[i] = config.System{Name: systemName(i), Primary: i == 0, AgentSecretHash: string(hash)}
	}
	// Agents log in with an HMAC secret hash, as issued by `maintproxy agent-secret`: bcrypt
	// ones from one address would be held back by admission control.
	agentHash, err := config.HashAgentSecret(secret)
	if err != nil {
		return err
	}
	for i := range systems {
		systems[i].AgentSecretHash = agentHash
	}
	cfg, err := config.NewBroker(config.Broker{
		Domain: "example.test", DataDir: dir,
		Listen:    config.Listen{Proxy: "127.0.0.1:0", Web: "127.0.0.1:0"},
		Accounts:  []config.Account{{Username: "u", PasswordHash: string(hash), Customers: []string{customer}}},
		Customers: []config.Customer{{ID: customer, Systems: systems}},
		Log:       config.Log{Level: "error"},
		// Every agent comes from 127.0.0.1: the per-address cap must not be what stops them.
		Limits: config.Limits{Connections: config.Connections{PerAddress: n + 100, Total: 2*n + 1000}},
	})
	if err != nil {
		return err
	}
	brk, err := broker.New(broker.Options{Config: cfg})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	brokerDone := make(chan error, 1)
	go func() { brokerDone <- brk.Run(ctx) }()

	before := snapshot()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "-agents", "-n", strconv.Itoa(n),
		"-broker", "https://"+brk.WebAddr().String(), "-ca", filepath.Join(dir, "ca.pem"))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe() // the child stops when this closes
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	childDone := make(chan struct{})
	go func() { cmd.Wait(); close(childDone) }()
	defer func() { stdin.Close(); <-childDone }()

	start := time.Now()
	for brk.Registry().Len() < n {
		if time.Since(start) > connectWait {
			return fmt.Errorf("only %d of %d agents connected after %s", brk.Registry().Len(), n, connectWait)
		}
		select {
		case <-childDone:
			return errors.New("the agent process ended early")
		case <-time.After(100 * time.Millisecond):
		}
	}
	connected := time.Since(start)
	after := snapshot()
	if heapFile != "" {
		f, err := os.Create(heapFile)
		if err != nil {
			return err
		}
		pprof.Lookup("heap").WriteTo(f, 0)
		f.Close()
	}
	fmt.Printf("agents=%d connected_in=%s load=%s\n", n, connected.Round(time.Millisecond), loadavg())
	fmt.Printf("broker before: rss=%.1fMiB heap=%.1fMiB stacks=%.1fMiB goroutines=%d\n", mib(before.rss), mib(before.heap), mib(before.stack), before.goroutines)
	fmt.Printf("broker after:  rss=%.1fMiB heap=%.1fMiB stacks=%.1fMiB goroutines=%d\n", mib(after.rss), mib(after.heap), mib(after.stack), after.goroutines)
	per := func(a, b uint64) float64 { return float64(int64(a)-int64(b)) / 1024 / float64(n) }
	fmt.Printf("RESULT system=maintproxy test=idle agents=%d rss_kib_per_agent=%.1f heap_kib_per_agent=%.1f stack_kib_per_agent=%.1f goroutines_per_agent=%.2f\n",
		n, per(after.rss, before.rss), per(after.heap, before.heap), per(after.stack, before.stack),
		float64(after.goroutines-before.goroutines)/float64(n))
	cancel()
	select {
	case <-brokerDone:
	case <-time.After(time.Minute):
		return errors.New("broker did not stop within a minute")
	}
	return nil
}

type snap struct {
	rss, heap, stack uint64
	goroutines       int
}

// snapshot returns the process's resident memory after a full collection has returned
// what it can to the OS, so that garbage does not count as cost.
func snapshot() snap {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return snap{rss: rssBytes(), heap: ms.HeapInuse, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

func rssBytes() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kib, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kib << 10
		}
	}
	return 0
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], ",")
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// runAgents is the child: n real agents, paced, until stdin closes or a signal arrives.
func runAgents(n int, brokerURL, caFile string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// The parent closes our stdin when it is done (or dies).
		bufio.NewReader(os.Stdin).ReadByte()
		cancel()
	}()
	log := slog.New(slog.DiscardHandler)
	done := make(chan struct{}, n)
	tick := time.NewTicker(time.Second / startRate)
	defer tick.Stop()
	started := 0
	for i := 0; i < n; i++ {
		cfg, err := config.NewAgent(config.Agent{
			Broker: brokerURL, CAFile: caFile, ServerName: "admin.example.test",
			Customer: customer, System: systemName(i), Secret: secret,
			RemoteAccess: config.RemoteAccess{Enabled: true, Services: map[string]string{"22": "127.0.0.1:1"}},
		})
		if err != nil {
			return err
		}
		a, err := tunnel.NewAgent(cfg, log, "idle-bench")
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
		if ctx.Err() != nil {
			break
		}
		started++
		go func() { a.Run(ctx); done <- struct{}{} }()
	}
	<-ctx.Done()
	for range started {
		<-done
	}
	return nil
}
