package people

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// historyKeyTime orders history keys by time (fixed width, UTC).
const historyKeyTime = "20060102T150405.000000000Z"

// Record queues an audit history record for the store. It never blocks: when the queue is
// full the record is dropped and counted (Dropped); the broker's audit log has it anyway.
func (s *Service) Record(r Record) {
	if r.Time.IsZero() {
		r.Time = s.now()
	}
	r.Time = r.Time.UTC()
	if r.Node == "" {
		r.Node = s.o.Node
	}
	select {
	case s.history <- &r:
	default:
		s.dropped.Add(1)
	}
}

// Dropped is the number of history records the full queue dropped.
func (s *Service) Dropped() int64 { return s.dropped.Load() }

// historyBatch bounds the records one write stores, and historyLinger how long a record
// waits for others to join its write. Stored one by one, each record cost a transaction
// and a sync — at a few hundred tunnels a second most of a broker's work per connection;
// together, a burst costs one.
const (
	historyBatch  = 256
	historyLinger = 50 * time.Millisecond
)

// writeHistory stores queued records in batches until Close, then what is left.
func (s *Service) writeHistory() {
	batch := make(map[string][]byte, historyBatch)
	linger := time.NewTimer(historyLinger)
	linger.Stop()
	for {
		select {
		case r := <-s.history:
			s.addHistory(batch, r)
			if len(batch) == 1 {
				linger.Reset(historyLinger)
			}
			if len(batch) < historyBatch {
				continue
			}
		case <-linger.C:
		case <-s.ctx.Done():
			for {
				select {
				case r := <-s.history:
					s.addHistory(batch, r)
					if len(batch) == historyBatch {
						s.putHistory(batch)
					}
				default:
					s.putHistory(batch)
					return
				}
			}
		}
		linger.Stop()
		s.putHistory(batch)
	}
}

func (s *Service) addHistory(batch map[string][]byte, r *Record) {
	key := fmt.Sprintf("%s-%s-%08d", r.Time.Format(historyKeyTime), r.Node, s.seq.Add(1)%100_000_000)
	v, _ := json.Marshal(r)
	batch[key] = v
}

// putHistory stores batch and empties it.
func (s *Service) putHistory(batch map[string][]byte) {
	if len(batch) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.o.Backend.Put(ctx, bucketAudit, batch); err != nil {
		s.dropped.Add(int64(len(batch)))
		s.log.Warn("people store: audit history records not stored", "records", len(batch), "err", err.Error())
	}
	clear(batch)
}

// Query selects audit history records.
type Query struct {
	// Since and Until bound the time (zero: open).
	Since, Until time.Time
	// Keep, if set, selects records (e.g. one customer's, one organisation tree's).
	Keep func(*Record) bool
	// Limit keeps the newest Limit records (0: 1000).
	Limit int
}

// History returns the records Query selects, oldest first.
func (s *Service) History(ctx context.Context, q Query) ([]Record, error) {
	if q.Limit <= 0 {
		q.Limit = 1000
	}
	from, to := "", ""
	if !q.Since.IsZero() {
		from = q.Since.UTC().Format(historyKeyTime)
	}
	if !q.Until.IsZero() {
		to = q.Until.UTC().Format(historyKeyTime)
	}
	var out []Record
	err := s.o.Backend.Scan(ctx, bucketAudit, from, to, func(_ string, v []byte) error {
		var r Record
		if json.Unmarshal(v, &r) != nil {
			return nil
		}
		if q.Keep == nil || q.Keep(&r) {
			out = append(out, r)
			if len(out) > 2*q.Limit { // keep memory bounded on a long scan
				out = append(out[:0], out[len(out)-q.Limit:]...)
			}
		}
		return nil
	})
	if len(out) > q.Limit {
		out = out[len(out)-q.Limit:]
	}
	return out, err
}

// pruneLoop prunes at start and every pruneEvery until Close.
func (s *Service) pruneLoop() {
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		if err := s.Prune(s.ctx); err != nil && s.ctx.Err() == nil {
			s.log.Warn("people store: pruning failed", "err", err.Error())
		}
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Prune removes history older than people.audit_retention, answered requests older than
// people.request_ttl (pending ones too, once that old), grants ended a day ago, tokens
// expired a day ago (an expired token still in the store tells a revoked one apart) and
// idle web sessions.
func (s *Service) Prune(ctx context.Context) error {
	pol := s.o.Config().People
	now := s.now()
	if err := s.o.Backend.DeleteRange(ctx, bucketAudit, "", now.Add(-pol.AuditRetention).UTC().Format(historyKeyTime)); err != nil {
		return err
	}
	snap := s.snap.Load()
	changed := false
	del := func(bucket, key string) error {
		changed = true
		return s.o.Backend.Update(ctx, bucket, key, func([]byte) ([]byte, error) { return nil, nil })
	}
	for id, r := range snap.requests {
		if now.Sub(r.At) > pol.RequestTTL {
			if err := del(bucketRequests, id); err != nil {
				return err
			}
		}
	}
	for id, g := range snap.grants {
		if now.Sub(g.Until) > 24*time.Hour {
			if err := del(bucketGrants, id); err != nil {
				return err
			}
		}
	}
	for id, t := range snap.tokens {
		if now.Sub(t.Expires) > 24*time.Hour {
			if err := del(bucketTokens, id); err != nil {
				return err
			}
		}
	}
	for id, se := range snap.sessions {
		if now.Sub(se.LastSeen) > pol.SessionIdle {
			if err := del(bucketSessions, id); err != nil {
				return err
			}
		}
	}
	if !changed {
		return nil
	}
	return s.reload(ctx)
}
