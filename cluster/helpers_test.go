package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"maintproxy/cluster/etcdtest"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// testTTL is the shortest lease etcd grants with its default election timeout.
const testTTL = 2 * time.Second

var testSecret = []byte("0123456789abcdef0123456789abcdef-test-secret")

func opts(endpoints []string, node string) Options {
	o := Options{
		Node:      node,
		Endpoints: endpoints,
		Prefix:    "/mp-test/",
		LeaseTTL:  testTTL,
		Secret:    testSecret,
		Self:      BrokerInfo{PeerAddr: "127.0.0.1:" + fmt.Sprint(6000+len(node)), PeerFingerprint: "fp-" + node},
	}
	if testing.Verbose() {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return o
}

// open starts a Store, waits for it to be ready, and closes it when the test ends.
func open(t *testing.T, o Options) *Store {
	t.Helper()
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		t.Fatalf("%s: %v", o.Node, err)
	}
	return s
}

func raw(t *testing.T, endpoints []string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond until it holds or the deadline passes, and returns how long it took.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	return waitState(t, within, what, func() (bool, string) { return cond(), "" })
}

// waitState is waitFor with a description of the state, reported if it times out.
func waitState(t *testing.T, within time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(within)
	for {
		ok, state := cond()
		if ok {
			return time.Since(start)
		}
		select {
		case <-tick.C:
		case <-timeout:
			t.Fatalf("%s: not within %s; %s", what, within, state)
		}
	}
}

// readyLog records OnReady calls.
type readyLog struct {
	mu  sync.Mutex
	got []bool
}

func (r *readyLog) on(ready bool) {
	r.mu.Lock()
	r.got = append(r.got, ready)
	r.mu.Unlock()
}

func (r *readyLog) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return fmt.Sprint(r.got)
}

func (r *readyLog) sawFalse() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.got {
		if !b {
			return true
		}
	}
	return false
}

func nodes(bs []BrokerInfo) string {
	var n []string
	for _, b := range bs {
		n = append(n, b.Node)
	}
	sort.Strings(n)
	return strings.Join(n, ",")
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

func startEtcd(t *testing.T) []string {
	return etcdtest.Endpoints(etcdtest.Start(t))
}
