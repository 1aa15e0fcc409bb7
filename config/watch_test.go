package config

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const networkAgent = `broker: https://admin.example.com
customer: "12345"
system: SE1
secret: s3cret
remote_access: {enabled: true}
network:
  systems: {SE2: 192.168.1.21}
`

// TestAgentNetworkSystems: network.systems is read with names in any case; bad entries
// are refused naming the field.
func TestAgentNetworkSystems(t *testing.T) {
	a, err := ParseAgent([]byte(networkAgent))
	if err != nil {
		t.Fatal(err)
	}
	if ip, ok := a.NetworkSystem("Se2"); !ok || ip.String() != "192.168.1.21" {
		t.Fatalf("se2: %v %v (systems %v)", ip, ok, a.Network.Systems)
	}
	for _, c := range []struct{ from, to, field string }{
		{"SE2: 192.168.1.21", "SE2: 192.168.1.300", "network.systems[se2]: "},
		{"SE2: 192.168.1.21", "SE2: fe80::1", "network.systems[se2]: "},
		{"SE2: 192.168.1.21", "SE1: 192.168.1.21", "network.systems[se1]: that is this agent's own system"},
		{"SE2: 192.168.1.21", "-SE2: 192.168.1.21", "network.systems[-se2]: "},
	} {
		_, err := ParseAgent([]byte(strings.Replace(networkAgent, c.from, c.to, 1)))
		if err == nil || !strings.HasPrefix(err.Error(), c.field) {
			t.Errorf("%s: %v, want an error starting %q", c.to, err, c.field)
		}
	}
}

// TestWatchAgent: an edit written in place and one renamed over the file (as editors do)
// are both applied; an invalid edit is reported naming the field and applies nothing.
func TestWatchAgent(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(path, []byte(networkAgent), 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadAgent(path)
	if err != nil {
		t.Fatal(err)
	}
	applied, refused := make(chan *Agent, 4), make(chan error, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- WatchAgent(ctx, path, loaded, func(a *Agent) { applied <- a }, func(err error) { refused <- err })
	}()
	defer func() { cancel(); <-done }()
	next := func() (*Agent, error) {
		select {
		case a := <-applied:
			return a, nil
		case err := <-refused:
			return nil, err
		case <-time.After(5 * time.Second):
			t.Fatal("no reaction to the edit within 5s")
			return nil, nil
		}
	}
	// Even if the watch is not in place yet, its first look sees this edit.
	os.WriteFile(path, []byte(strings.Replace(networkAgent, "enabled: true", "enabled: false", 1)), 0o600)
	if a, err := next(); err != nil || a.RemoteAccess.Enabled {
		t.Fatalf("in-place edit: %+v, %v", a, err)
	}
	tmp := filepath.Join(dir, ".agent.yaml.swp")
	os.WriteFile(tmp, []byte(networkAgent), 0o600)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if a, err := next(); err != nil || !a.RemoteAccess.Enabled {
		t.Fatalf("renamed edit: %+v, %v", a, err)
	}
	os.WriteFile(path, []byte(strings.Replace(networkAgent, "192.168.1.21", "192.168.1.999", 1)), 0o600)
	if a, err := next(); a != nil || err == nil || !strings.Contains(err.Error(), "network.systems[se2]") {
		t.Fatalf("invalid edit: applied %+v, error %v", a, err)
	}
}

// TestWatchAgentSymlinkSwap: a file mounted the way Kubernetes mounts a ConfigMap (the file
// a link into "..data", itself a link swapped to a new directory) is seen when the link
// is swapped, though no event names the file.
func TestWatchAgentSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	for i, body := range []string{networkAgent, strings.Replace(networkAgent, "enabled: true", "enabled: false", 1)} {
		sub := filepath.Join(dir, fmt.Sprintf("ts%d", i))
		os.Mkdir(sub, 0o700)
		if err := os.WriteFile(filepath.Join(sub, "agent.yaml"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink("ts0", filepath.Join(dir, "..data"))
	path := filepath.Join(dir, "agent.yaml")
	os.Symlink(filepath.Join("..data", "agent.yaml"), path)
	loaded, err := LoadAgent(path)
	if err != nil {
		t.Fatal(err)
	}
	applied := make(chan *Agent, 2)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- WatchAgent(ctx, path, loaded, func(a *Agent) { applied <- a }, func(err error) { t.Error(err) })
	}()
	defer func() { cancel(); <-done }()
	os.Symlink("ts1", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-applied:
		if a.RemoteAccess.Enabled {
			t.Fatal("the swapped-in configuration was not the one applied")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the link swap was not seen within 5s")
	}
}
