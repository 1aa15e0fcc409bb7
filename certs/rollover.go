package certs

import (
	"errors"
	"fmt"
	"time"

	"maintproxy/config"
)

// The identity CA rollover. With R = tls.selfsigned.rollover_before (default a year of the
// CA's three):
//
//	current CA expiry − R     the next CA is made and published beside the current one
//	                          (tool bundle, GET /agent/v1/ca); agents fetch it and trust both
//	next CA's creation + R/2  the switch: leaves come from the next CA, which becomes current;
//	                          the old one becomes previous and stays published
//	previous CA's expiry      the previous CA leaves the published bundle
//
// The switch is never later than the current CA's expiry. A CA that expired before a next
// one was published (a broker stopped for years) is replaced at once, with an error in the
// log: clients that trust only the old CA cannot connect until they get the new one.
//
// `maintproxy certs regenerate` makes a next CA at any time (the switch follows R/2 later);
// with --now it switches at once.

// maxSteps bounds advance: interrupted switch, retire previous, retire expired next, add
// next, switch, retire the just-expired previous.
const maxSteps = 6

// minOverlap: a switch to a CA published for less than this is logged as an error.
const minOverlap = 24 * time.Hour

// beginAt is when the rollover away from cur begins.
func (s *selfSigned) beginAt(cur *identityCA) time.Time {
	return cur.cert.NotAfter.Add(-s.rolloverBefore)
}

// switchAt is when leaves start coming from next instead of cur.
func switchAt(cur, next *identityCA, rolloverBefore time.Duration) time.Time {
	return switchFrom(cur, next.created(), rolloverBefore)
}

// switchFrom is switchAt for a next CA made at created.
func switchFrom(cur *identityCA, created time.Time, rolloverBefore time.Duration) time.Time {
	t := created.Add(rolloverBefore / 2)
	if t.After(cur.cert.NotAfter) {
		return cur.cert.NotAfter
	}
	return t
}

// advance moves the rollover on to where it should be at now, writing to the store and
// loading the result. Called under renewMu.
func (s *selfSigned) advance(now time.Time) error {
	for range maxSteps {
		changed, err := s.step(s.current(), now)
		if err != nil || !changed {
			return err
		}
		set, err := s.store.load()
		if err != nil {
			return err
		}
		s.mu.Lock()
		s.set = set
		s.mu.Unlock()
	}
	return nil
}

// step makes the one change due first at now, if any.
func (s *selfSigned) step(set *caSet, now time.Time) (bool, error) {
	log := s.m.log
	switch {
	case set.interrupted:
		log.Warn("finishing an interrupted identity CA switch", "store", s.store.where())
		return true, s.store.finishSwitch()
	case set.prev != nil && !now.Before(set.prev.cert.NotAfter):
		log.Info("the previous identity CA expired; it is no longer published", "sha256", fingerprint(set.prev.cert))
		return true, s.store.retire(slotPrevious, set.prev, "expired")
	case set.next != nil && !now.Before(set.next.cert.NotAfter):
		log.Error("the next identity CA expired before it was used; making another", "sha256", fingerprint(set.next.cert))
		return true, s.store.retire(slotNext, set.next, "expired")
	case set.next == nil && !now.Before(s.beginAt(set.cur)):
		if err := s.store.addNext(s.m.cfg.Domain, now); err != nil {
			return false, err
		}
		if now.Before(set.cur.cert.NotAfter) {
			log.Info("identity CA rollover: made the next CA; it is published beside the current one",
				"current_expires", set.cur.cert.NotAfter.UTC().Format(time.DateOnly),
				"switch", switchFrom(set.cur, now, s.rolloverBefore).UTC().Format(time.DateOnly))
		}
		return true, nil
	case set.next != nil && !now.Before(switchAt(set.cur, set.next, s.rolloverBefore)):
		if err := s.store.promote(set); err != nil {
			return false, err
		}
		if now.Sub(set.next.created()) < minOverlap {
			log.Error("the identity CA expired before its successor was published (was the broker stopped?): "+
				"a new identity CA serves from now on, and technicians and agents that trust only the old one "+
				"cannot connect until they get it (tool bundle; agents: ca_file from /agent/v1/ca)",
				"expired", set.cur.cert.NotAfter.UTC().Format(time.DateOnly), "new_sha256", fingerprint(set.next.cert),
				"new_expires", set.next.cert.NotAfter.UTC().Format(time.DateOnly))
		} else {
			log.Info("identity CA rollover: leaves now come from the new CA; the old one stays published until it expires",
				"new_sha256", fingerprint(set.next.cert), "old_expires", set.cur.cert.NotAfter.UTC().Format(time.DateOnly))
		}
		return true, nil
	}
	return false, nil
}

// warning tells operators about the next switch from 90 days ahead, or about a CA that
// expires without a successor.
func (s *selfSigned) warning(now time.Time) string {
	set := s.current()
	cur := set.cur.cert
	if set.next == nil {
		if now.Before(cur.NotAfter.Add(-caWarnBefore)) {
			return ""
		}
		if !now.Before(cur.NotAfter) {
			return fmt.Sprintf("the identity CA %s and no successor is published yet (see the log)", expiresIn(cur.NotAfter, now))
		}
		return fmt.Sprintf("the identity CA %s; its successor is published from %s (tls.selfsigned.rollover_before) "+
			"and serves from %s: technicians must then download the tool bundle again",
			expiresIn(cur.NotAfter, now), s.beginAt(set.cur).UTC().Format(time.DateOnly),
			cur.NotAfter.Add(-s.rolloverBefore/2).UTC().Format(time.DateOnly))
	}
	sw := switchAt(set.cur, set.next, s.rolloverBefore)
	if now.Before(sw.Add(-caWarnBefore)) {
		return ""
	}
	return fmt.Sprintf("the identity CA changes on %s (in %d days): technicians must trust the new one by then "+
		"(the tool bundle holds both; download it again); agents fetch it themselves",
		sw.UTC().Format(time.DateOnly), max(0, int(sw.Sub(now).Hours()/24)))
}

// Regenerate makes a new identity CA in cfg's data_dir on purpose (`maintproxy certs
// regenerate`) and returns the resulting description. The new CA becomes the next CA,
// published beside the current one; leaves switch to it half of
// tls.selfsigned.rollover_before later, so agents fetch it first. With now set, the next
// CA (the new one, or one already published) becomes current at once: agents and
// technicians whose trust holds only the old CA cannot connect until they get the new one.
// A running broker picks the change up within its check interval.
func Regenerate(cfg *config.Broker, at time.Time, now bool) (*Description, error) {
	return RegenerateIn(cfg, nil, at, now)
}

// RegenerateIn is Regenerate on the identity CAs in shared (cluster mode: the store every
// broker reads), or in data_dir when shared is nil.
func RegenerateIn(cfg *config.Broker, shared CAStore, at time.Time, now bool) (*Description, error) {
	if cfg.TLS.Mode != config.ModeSelfSigned {
		return nil, fmt.Errorf("tls.mode: %s; regenerate makes a new self-signed identity CA (tls.mode selfsigned)", cfg.TLS.Mode)
	}
	st := storeFor(cfg, shared)
	set, err := st.load()
	if errors.Is(err, errNoCA) {
		if err := st.create(cfg.Domain, at); err != nil {
			return nil, err
		}
		return InspectIn(cfg, shared, at)
	}
	if err != nil {
		return nil, err
	}
	if set.interrupted {
		if err := st.finishSwitch(); err != nil {
			return nil, err
		}
		if set, err = st.load(); err != nil {
			return nil, err
		}
	}
	rb := cfg.TLS.SelfSigned.RolloverBefore
	switch {
	case set.next != nil && !now:
		return nil, fmt.Errorf("a next identity CA is already published (made %s; leaves switch to it on %s): "+
			"`certs regenerate --now` switches to it at once", set.next.created().UTC().Format(time.DateOnly),
			switchAt(set.cur, set.next, rb).UTC().Format(time.DateOnly))
	case set.next == nil:
		if err := st.addNext(cfg.Domain, at); err != nil {
			return nil, err
		}
	}
	if now {
		if set, err = st.load(); err != nil {
			return nil, err
		}
		if err := st.promote(set); err != nil {
			return nil, err
		}
	}
	return InspectIn(cfg, shared, at)
}
