package broker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"maintproxy/config"
	"maintproxy/people"
	"maintproxy/people/api"
)

// AdminSocket is the file name, in data_dir, of a single broker's local API socket: the
// people API with the operator's rights, for the maintproxy people, grants, backup and
// restore commands while the broker runs (the bbolt file admits one process). Whoever can
// open it is the operator: it is made 0600 in data_dir, like the CA key beside it.
const AdminSocket = "admin.sock"

// revalidateEvery is how often open tunnels are checked against the people store besides
// its changes: an access grant ends by the clock, not by a write.
const revalidateEvery = 500 * time.Millisecond

// peopleStore is the broker's people store and what closes it once, with the local API
// socket (single broker only).
type peopleStore struct {
	svc      *people.Service
	once     sync.Once
	adminLn  net.Listener
	adminSrv *http.Server
}

// openPeople opens the people store of this broker.
func (b *Broker) openPeople(c *config.Broker) error {
	var backend people.Backend
	if k := b.cluster; k != nil {
		backend = people.NewEtcd(k.store.Etcd(), k.store.Prefix())
	} else {
		var err error
		if backend, err = people.NewBolt(c.DataDir); err != nil {
			return err
		}
	}
	node := ""
	if c.Cluster.Enabled() {
		node = c.Cluster.Node
	}
	// In cluster mode a broker starts while etcd is away (as it does for presence): the
	// people store then starts empty, refusing personal logins, and loads when etcd answers.
	wait := 30 * time.Second
	if b.cluster != nil {
		wait = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	svc, err := people.Open(ctx, people.Options{Backend: backend, Config: b.Config, Now: b.opts.Now,
		HashCost: b.opts.PasswordCost, Node: node, Logger: b.log.With("component", "people"), StartUnloaded: b.cluster != nil})
	if err != nil {
		backend.Close()
		return err
	}
	b.people = &peopleStore{svc: svc}
	b.logSuperseded()
	if b.cluster == nil {
		// Without the socket the commands need the broker stopped: worth a warning, not
		// a refusal to start.
		if err := b.listenAdmin(c); err != nil {
			b.log.Warn("no local API socket: the people, grants, backup and restore commands work only while the broker is stopped",
				"err", err.Error())
		}
	}
	return nil
}

// listenAdmin opens the local API socket. The broker holds the store's lock, so a socket
// file left by a broker that died is stale and removed.
func (b *Broker) listenAdmin(c *config.Broker) error {
	path := filepath.Join(c.DataDir, AdminSocket)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("data_dir: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("data_dir: the local API socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("data_dir: %w", err)
	}
	b.people.adminLn = ln
	return nil
}

// adminServer makes the local API socket's server, once the proxy exists.
func (b *Broker) adminServer() {
	if b.people.adminLn == nil {
		return
	}
	b.people.adminSrv = &http.Server{
		Handler:           api.New(api.Options{People: b.people.svc, Config: b.Config, Admin: true, Tunnels: b.proxy}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          errorLog(b.log, "admin"),
	}
}

// serveAdmin serves the local API socket until closePeople.
func (b *Broker) serveAdmin() error {
	if b.people.adminSrv == nil {
		return nil
	}
	return serve(b.people.adminSrv, b.people.adminLn)
}

// closePeople closes the people store once (Run's end, or Close for a broker never run).
func (b *Broker) closePeople() error {
	p := b.people
	if p == nil {
		return nil
	}
	var err error
	p.once.Do(func() {
		if p.adminSrv != nil {
			p.adminSrv.Close()
		}
		if p.adminLn != nil {
			p.adminLn.Close() // never served (Close without Run)
		}
		err = p.svc.Close()
	})
	return err
}

// logSuperseded warns of proxy account passwords set at runtime that the file's
// password_hash replaced since (the file wins); never a hash.
func (b *Broker) logSuperseded() {
	if b.people == nil {
		return
	}
	for _, a := range b.people.svc.Superseded() {
		b.log.Warn("proxy account password set at runtime no longer applies: password_hash of the configuration changed since, and wins (maintproxy account clear removes the stored one)",
			"account", a)
	}
}

// People is the broker's people store.
func (b *Broker) People() *people.Service { return b.people.svc }

// revalidate ends, twice a second and on every change of the people store, the tunnels
// the store no longer allows; it returns when ctx is done.
func (b *Broker) revalidate(ctx context.Context) {
	b.people.svc.Subscribe(func() { b.proxy.Revalidate() })
	t := time.NewTicker(revalidateEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.proxy.Revalidate()
		}
	}
}
