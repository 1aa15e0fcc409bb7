package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"maintproxy/tunnel"
)

// floodEnv names the variable that turns TestFloodProcess into a flood generator.
const floodEnv = "MAINTPROXY_E2E_FLOOD"

// floodSpec describes a flood of wrong credentials run in a child process at the lowest
// CPU priority, so that the attacker shares neither the measuring test's scheduler nor, as
// far as can be on one machine, its CPU (on a real network it would share neither).
type floodSpec struct {
	Kind       string // "proxy": CONNECT with random usernames; "agent": agent logins as Users
	Addr       string
	ServerName string
	CAFile     string
	Target     string   // CONNECT authority (proxy)
	Users      []string // customer/system names (agent), taken in turn by the workers
	Workers    int      // concurrent connections, kept open while the broker allows
	Fresh      int      // of them, how many open a new connection (and address) per request
	Block      int      // source addresses are 127.<Block>.x.y
	Duration   time.Duration
	// With On and Off set, the flood runs in bursts: On long from Start, then quiet for
	// Off, and so on (requests under way at the end of a burst finish).
	Start   time.Time
	On, Off time.Duration
	Out     string // where the child writes its floodResult
}

// floodResult is what a flood got back.
type floodResult struct {
	Statuses     map[int]int
	Answers      int64
	Dials        int64
	NoRetryAfter int // 429/503 answers without Retry-After
	// BusyP50, BusyP90 and BusyMax are the answer times of 429 (proxy) or 503 (agent).
	BusyP50, BusyP90, BusyMax time.Duration
	// ShedP50, ShedP90 and ShedMax are the answer times of refusals that need no wait for
	// a slot (reason rate or busy), for the first request on a connection: later requests
	// on a refused connection wait out its Retry-After first.
	ShedP50, ShedP90, ShedMax time.Duration
	Shed                      int
	Elapsed                   time.Duration
}

type flood struct {
	cmd  *exec.Cmd
	spec floodSpec
	done chan error
}

// startFlood runs the flood in a child process (this test binary, TestFloodProcess).
func startFlood(t *testing.T, s floodSpec) *flood {
	t.Helper()
	s.Out = filepath.Join(t.TempDir(), "flood.json")
	spec, _ := json.Marshal(s)
	// At the lowest CPU priority: a real attacker's CPU is not the broker's machine's.
	cmd := exec.Command("nice", "-n", "19", os.Args[0], "-test.run=^TestFloodProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), floodEnv+"="+string(spec))
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f := &flood{cmd: cmd, spec: s, done: make(chan error, 1)}
	go func() { f.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-f.done
		if t.Failed() {
			t.Logf("flood process output:\n%s", out.String())
		}
	})
	return f
}

// wait waits for the flood to end (its duration plus a margin) and returns its result.
func (f *flood) wait(t *testing.T) floodResult {
	t.Helper()
	select {
	case err := <-f.done:
		f.done <- err // for the cleanup
		if err != nil {
			t.Fatalf("flood process: %v", err)
		}
	case <-time.After(f.spec.Duration + 60*time.Second):
		t.Fatal("flood process did not end")
	}
	data, err := os.ReadFile(f.spec.Out)
	if err != nil {
		t.Fatal(err)
	}
	var r floodResult
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestFloodProcess is the flood generator when run by startFlood; otherwise it is skipped.
func TestFloodProcess(t *testing.T) {
	raw := os.Getenv(floodEnv)
	if raw == "" {
		t.Skip("helper process of the flood tests")
	}
	var s floodSpec
	if err := json.Unmarshal([]byte(raw), &s); err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tc := &tls.Config{RootCAs: pool, ServerName: s.ServerName}
	busyStatus := http.StatusTooManyRequests
	if s.Kind == "agent" {
		busyStatus = http.StatusServiceUnavailable
	}

	ctx, cancel := context.WithTimeout(context.Background(), s.Duration)
	defer cancel()
	var (
		mu       sync.Mutex
		res      = floodResult{Statuses: map[int]int{}}
		busyTook []time.Duration
		shedTook []time.Duration
		dials    atomic.Int64
		wg       sync.WaitGroup
		start    = time.Now()
	)
	for w := range s.Workers {
		wg.Go(func() {
			var l *loopConn
			defer func() {
				if l != nil {
					l.c.Close()
				}
			}()
			for i := 0; ctx.Err() == nil && i < 10_000_000; i++ {
				if s.On > 0 {
					cycle := s.On + s.Off
					if into := time.Since(s.Start) % cycle; into >= s.On {
						select {
						case <-ctx.Done():
							return
						case <-time.After(cycle - into):
						}
					}
				}
				if l == nil {
					var err error
					if l, err = dialFrom(srcAddr(s.Block, w+int(dials.Add(1)-1)*s.Workers), s.Addr, tc); err != nil {
						continue
					}
				}
				pw := "floodpw-" + strconv.Itoa(i)
				begin := time.Now()
				var resp *http.Response
				var keep bool
				var err error
				if s.Kind == "agent" {
					resp, keep, err = l.do("GET", tunnel.AgentPath, s.ServerName, "Upgrade: websocket\r\nConnection: Upgrade\r\n",
						basic("Authorization", s.Users[w%len(s.Users)], pw))
				} else {
					user := fmt.Sprintf("spray%d", rand.N(1_000_000))
					resp, keep, err = l.do("CONNECT", s.Target, s.Target, basic("Proxy-Authorization", user, pw))
				}
				took := time.Since(begin)
				if err != nil {
					l.c.Close()
					l = nil
					continue
				}
				mu.Lock()
				res.Statuses[resp.StatusCode]++
				res.Answers++
				if resp.StatusCode == busyStatus {
					busyTook = append(busyTook, took)
					if resp.Header.Get("Retry-After") == "" {
						res.NoRetryAfter++
					}
					if l.requests == 1 && !strings.Contains(l.lastBody, "(timeout)") {
						shedTook = append(shedTook, took)
					}
				}
				mu.Unlock()
				if !keep || w < s.Fresh {
					l.c.Close()
					l = nil
				}
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Dials = dials.Load()
	res.BusyP50, res.BusyP90, res.BusyMax = percentile(busyTook, 0.5), percentile(busyTook, 0.9), percentile(busyTook, 1)
	res.ShedP50, res.ShedP90, res.ShedMax = percentile(shedTook, 0.5), percentile(shedTook, 0.9), percentile(shedTook, 1)
	res.Shed = len(shedTook)
	data, _ := json.Marshal(res)
	if err := os.WriteFile(s.Out, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// lockedBuffer collects a child's output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
