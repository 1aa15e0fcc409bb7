// Package cluster is the broker's cluster mode: several brokers sharing one etcd cluster
// act as one service.
//
// A Store is one broker's membership: it holds one etcd lease, keeps it alive, and hangs on
// it every key the broker owns (its directory entry, the presence of each agent session it
// holds, its per-account tunnel counts). When the keepalive stream ends or the lease is
// found gone, the Store grants a new lease and writes every owned key again; Ready is false
// meanwhile. Everything other brokers publish is watched into memory, so the lookups a
// CONNECT needs (Holders, Locked, Directory.Resolve) never wait on etcd.
//
// A Client is a plain connection for one-shot commands (config push, cluster status) that
// must not register as a broker; a Store embeds one.
//
// # Key layout
//
// Under the prefix P (default /maintproxy/); segments marked ‹…› are URL path-escaped:
//
//	P brokers/‹node›                               BrokerInfo JSON               broker lease
//	P presence/‹customer›/‹system›/‹node›/‹session›  presence JSON                broker lease
//	P tunnels/‹account›/‹node›                     open tunnels of the account   broker lease
//	P locks/‹account›                              lock JSON {until, node}       a lease of the lock's length
//	P config                                       YAML: accounts, customers, limits   none
//	P ca/identity                                  CA cert + sealed key JSON     none
//	P cache/‹namespace›/‹name›                     sealed bytes (ACME cache)     none
//	P people/‹bucket›/‹key›                        package people's records (JSON)     none
//
// The config is one key, so a push is atomic whatever its size up to MaxConfigBytes (etcd
// refuses requests over 1.5 MiB and transactions over 128 operations by default, so the
// Store also writes owned keys in transactions of at most 128 operations and 1 MiB).
package cluster
