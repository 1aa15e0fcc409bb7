// Package people keeps who may use the broker beyond the configuration file: the people of
// each organisation (technicians with a personal login and a role, and customer admins),
// their tokens, the customers' access modes and the access requests and grants of systems
// in approval mode, and the audit history.
//
// Organisations are the proxy accounts of the configuration (accounts[]); an account's
// parent (accounts[].parent) puts it below a distributor, which then reaches its resellers'
// customers too. The configuration stays the bootstrap: people, tokens, modes and grants
// are runtime state in a Backend — a bbolt file in data_dir for a single broker (NewBolt),
// etcd under the cluster prefix in cluster mode (NewEtcd) — with Backup and Restore.
//
// A Service answers every question a CONNECT asks (Person, VerifyToken, Authorize, Valid)
// from an in-memory snapshot, so a tunnel never waits on the store; writes go to the store
// and the snapshot is reloaded after each one, and in cluster mode whenever another broker
// writes (a watch). Subscribe tells the caller of every change, so that it can end the
// tunnels a change no longer allows.
//
// # Records
//
// Each bucket holds JSON values under a key:
//
//	people    ‹username›            Person
//	tokens    ‹sha-256 of token›    Token (the token itself is never stored)
//	modes     ‹customer›/‹system›   Mode
//	requests  ‹id›                  Request
//	grants    ‹id›                  Grant
//	sessions  ‹sha-256 of id›       Session (web sign-in; the cookie's id is never stored)
//	audit     ‹time›-‹node›-‹seq›   Record (ordered by time; pruned after people.audit_retention)
//	accounts  ‹account›             AccountPassword (a proxy account's password set at runtime)
package people
