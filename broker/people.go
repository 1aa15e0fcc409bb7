package broker

import (
	"context"
	"sync"
	"time"

	"maintproxy/config"
	"maintproxy/people"
)

// revalidateEvery is how often open tunnels are checked against the people store besides
// its changes: an access grant ends by the clock, not by a write.
const revalidateEvery = 500 * time.Millisecond

// peopleStore is the broker's people store and what closes it once.
type peopleStore struct {
	svc  *people.Service
	once sync.Once
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
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svc, err := people.Open(ctx, people.Options{Backend: backend, Config: b.Config, Now: b.opts.Now,
		Node: node, Logger: b.log.With("component", "people")})
	if err != nil {
		backend.Close()
		return err
	}
	b.people = &peopleStore{svc: svc}
	return nil
}

// closePeople closes the people store once (Run's end, or Close for a broker never run).
func (b *Broker) closePeople() error {
	p := b.people
	if p == nil {
		return nil
	}
	var err error
	p.once.Do(func() { err = p.svc.Close() })
	return err
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
