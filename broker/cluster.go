package broker

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"maintproxy/certs"
	"maintproxy/cluster"
	"maintproxy/cluster/peer"
	"maintproxy/config"
	"maintproxy/proxy"
	"maintproxy/tunnel"
)

// caTimeout bounds the wait for the store at start for the shared identity CA: without it
// the broker cannot serve TLS, so it does not start.
const caTimeout = 30 * time.Second

// clustered is a broker's membership in a cluster: the store (presence, directory, shared
// config, locks and counts) and the peer link. Nil for a single broker.
type clustered struct {
	log      *slog.Logger
	store    *cluster.Store
	identity *peer.Identity
	peerLn   net.Listener
	server   *peer.Server
	dialer   *peer.Dialer
	cas      *clusterCAs
	// configRev is the revision of the shared config in force (config: store); 0: none yet.
	configRev atomic.Int64
}

// joinCluster binds the peer port and opens the store; b's listeners are bound and its
// ports pinned already. The proxy and the registry are wired later (wireCluster).
func (b *Broker) joinCluster(c *config.Broker) (err error) {
	cc := &c.Cluster
	k := &clustered{log: b.log.With("component", "cluster")}
	b.cluster = k
	if k.peerLn, err = net.Listen("tcp", cc.Peer.Listen); err != nil {
		return fmt.Errorf("cluster.peer.listen: %w", err)
	}
	cc.Peer.Listen = pinPort(cc.Peer.Listen, k.peerLn.Addr())
	advertise, err := cluster.AdvertiseAddr(cc.Peer.Listen, cc.Peer.Advertise)
	if err != nil {
		return err
	}
	if k.identity, err = peer.NewIdentity(cc.Node); err != nil {
		return err
	}
	opts, err := cluster.FromConfig(cc)
	if err != nil {
		return err
	}
	opts.Logger = k.log
	opts.OnReady = func(bool) { b.readyChanged() }
	opts.Self = cluster.BrokerInfo{
		PeerAddr: advertise, PeerFingerprint: k.identity.Fingerprint(),
		WebAddr: c.Listen.Web, ProxyAddr: c.Listen.Proxy, ConfigStore: c.SharedOnly(),
	}
	if k.store, err = cluster.Open(opts); err != nil {
		return err
	}
	return nil
}

// certOptions hands certs the shared identity CAs and ACME cache.
func (k *clustered) certOptions(c *config.Broker, o *certs.Options) {
	k.cas = &clusterCAs{store: k.store}
	k.cas.patient.Store(true)
	o.CAStore = k.cas
	ns := "acme"
	if u, err := url.Parse(c.TLS.ACME.DirectoryURL); err == nil && u.Host != "" {
		// One account and set of certificates per ACME directory, as in data_dir.
		ns += "-" + strings.NewReplacer(":", "_", "/", "_").Replace(u.Host)
	}
	o.ACMECache = k.store.Cache(ns)
}

// wireCluster connects the store to the proxy, the registry and the peer link.
func (b *Broker) wireCluster(po *proxy.Options) {
	k := b.cluster
	d := k.store.Directory()
	k.dialer = &peer.Dialer{Identity: k.identity, Resolve: d.Resolve, Logger: b.log.With("component", "peer")}
	k.server = &peer.Server{
		Identity: k.identity,
		Trust:    d.Trusted,
		Logger:   b.log.With("component", "peer"),
		Handle: func(ctx context.Context, req peer.Request, st *peer.Stream) {
			pr := proxy.PeerRequest{Customer: req.Customer, System: req.System, Port: req.Port,
				Account: req.Account, ClientAddr: req.ClientAddr, User: req.User, Through: req.Through}
			if req.IP != "" {
				ip, err := netip.ParseAddr(req.IP)
				if err != nil || !ip.Is4() {
					st.Reply(peer.Reply{Code: peer.CodeBadRequest, Message: "ip: not an IPv4 address"})
					return
				}
				pr.IP = ip
			}
			if raw, err := hex.DecodeString(req.Tunnel); err == nil {
				copy(pr.Session[:], raw)
			}
			b.proxy.ServePeer(ctx, req.From, pr, peerStream{st})
		},
	}
	po.Peers = &clusterPeers{k: k}
	po.SharedLimits = k.store
	po.SharedLocks = k.store
}

// publishSession keeps the cluster's presence in step with the registry. Add and Remove
// queue the change at once, in call order, and only then wait for the store; the registry
// must not wait, so the wait is cut short and the change is written when the store answers.
func (k *clustered) publishSession(s *tunnel.Session, up bool) {
	id := s.Identity()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var err error
	if up {
		sw, _ := json.Marshal(s.Policy())
		err = k.store.Presence().Add(ctx, id.Customer, id.System, s.ID(), cluster.AgentInfo{Since: s.Since(), Switches: sw})
	} else {
		err = k.store.Presence().Remove(ctx, id.Customer, id.System, s.ID())
	}
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, cluster.ErrClosed) {
		k.log.Error("agent presence not published", "identity", id.String(), "up", up, "err", err.Error())
	}
}

// applyShared puts a config pushed to the store in force (cluster.config: store), through
// the same path as a file reload; an invalid one is refused and the previous stays.
func (b *Broker) applyShared(doc []byte, rev int64) {
	cfg, err := b.opts.Config.WithShared(doc)
	if err != nil {
		b.log.Error("configuration in the store refused; keeping the previous one", "revision", rev, "err", err.Error())
		return
	}
	b.Apply(cfg)
	b.cluster.configRev.Store(rev)
	b.log.Info("configuration from the store in force", "revision", rev)
	b.readyChanged()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := b.cluster.store.UpdateSelf(ctx, func(bi *cluster.BrokerInfo) { bi.ConfigRevision = rev }); err != nil {
		b.log.Warn("config revision not yet published", "revision", rev, "err", err.Error())
	}
}

// close releases what joinCluster acquired, for a broker that does not Run.
func (k *clustered) close() error {
	var errs []error
	if k.peerLn != nil {
		errs = append(errs, k.peerLn.Close())
	}
	if k.store != nil {
		errs = append(errs, k.store.Close())
	}
	return errors.Join(errs...)
}

// Store is the broker's cluster store; nil for a single broker.
func (b *Broker) Store() *cluster.Store {
	if b.cluster == nil {
		return nil
	}
	return b.cluster.store
}

// clusterPeers is the proxy's view of the other brokers.
type clusterPeers struct{ k *clustered }

func (p *clusterPeers) Node() string { return p.k.store.Node() }

// Holders lists the brokers holding customer/system, oldest session first, so every broker
// picks the same one; brokers whose link just failed, then brokers that are draining, come
// last.
func (p *clusterPeers) Holders(customer, system string) []string {
	d := p.k.store.Directory()
	var nodes, suspect, draining []string
	seen := map[string]bool{}
	for _, h := range p.k.store.Presence().Holders(customer, system) {
		if seen[h.Node] {
			continue
		}
		seen[h.Node] = true
		switch b, ok := d.Lookup(h.Node); {
		case ok && b.Draining:
			draining = append(draining, h.Node)
		case p.k.dialer.Suspect(h.Node):
			// Its link failed a moment ago (dead until its lease expires, or hung):
			// tried after the others, so that each CONNECT does not wait for it again.
			suspect = append(suspect, h.Node)
		default:
			nodes = append(nodes, h.Node)
		}
	}
	return append(append(nodes, suspect...), draining...)
}

func (p *clusterPeers) Open(ctx context.Context, node string, req proxy.PeerRequest) (net.Conn, proxy.PeerCode, string, error) {
	pr := peer.Request{Customer: req.Customer, System: req.System, Port: req.Port,
		Account: req.Account, ClientAddr: req.ClientAddr, User: req.User, Tunnel: hex.EncodeToString(req.Session[:]), Through: req.Through}
	if req.IP.IsValid() {
		pr.IP = req.IP.String()
	}
	conn, reply, err := p.k.dialer.Open(ctx, node, pr)
	if err != nil {
		return nil, 0, "", err
	}
	return conn, proxy.PeerCode(reply.Code), reply.Message, nil
}

// peerStream adapts the peer link's stream to the proxy's.
type peerStream struct{ *peer.Stream }

func (s peerStream) Reply(code proxy.PeerCode, msg string) error {
	return s.Stream.Reply(peer.Reply{Code: peer.Code(code), Message: msg})
}

// SharedCAs is the cluster's identity CA record for `maintproxy certs` (show, regenerate).
func SharedCAs(c *cluster.Client) certs.CAStore { return &clusterCAs{store: c} }

// clusterCAs keeps the identity CAs in the cluster store for certs. While patient (the
// broker's start: it cannot serve TLS without a CA) a store without quorum is waited for up
// to caTimeout; afterwards a check that cannot reach the store keeps the CAs in use.
type clusterCAs struct {
	store interface {
		LoadCAs(context.Context) (cluster.CASet, int64, error)
		SwapCAs(context.Context, cluster.CASet, int64) (bool, error)
	}
	patient atomic.Bool
}

func (c *clusterCAs) LoadCAs() (certs.CASet, int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), caTimeout)
	defer cancel()
	for {
		set, ver, err := c.store.LoadCAs(ctx)
		if err == nil {
			return certs.CASet{Current: toCerts(set.Current), Next: toCerts(set.Next), Previous: toCerts(set.Previous)}, ver, nil
		}
		if !c.patient.Load() || !errors.Is(err, cluster.ErrNoQuorum) {
			return certs.CASet{}, 0, err
		}
		select { // the store is not there yet
		case <-ctx.Done():
			return certs.CASet{}, 0, err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (c *clusterCAs) SwapCAs(set certs.CASet, version int64) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), caTimeout)
	defer cancel()
	return c.store.SwapCAs(ctx, cluster.CASet{Current: toCluster(set.Current), Next: toCluster(set.Next),
		Previous: toCluster(set.Previous)}, version)
}

func toCerts(p *cluster.CAPair) *certs.CAPair {
	if p == nil {
		return nil
	}
	return &certs.CAPair{CertPEM: p.CertPEM, KeyPEM: p.KeyPEM}
}

func toCluster(p *certs.CAPair) *cluster.CAPair {
	if p == nil {
		return nil
	}
	return &cluster.CAPair{CertPEM: p.CertPEM, KeyPEM: p.KeyPEM}
}
