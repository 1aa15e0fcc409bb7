package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"maintproxy/internal/atomicfile"
	"maintproxy/tunnel"
)

// StatusFile is the file in data_dir that keeps each system's status across restarts.
const StatusFile = "status.json"

// Status store tuning.
const (
	// statusFlushEvery is the least time between two writes of the status file: a burst of
	// logins, or a flood of refused ones, costs one write per interval.
	statusFlushEvery = time.Second
	// statusHeartbeat is how often the last-seen time of connected systems is written, so
	// that a broker killed without a shutdown still knows roughly when it last saw them.
	statusHeartbeat = time.Minute
	// unknownKept is how many distinct unknown customer/system names are kept (the most
	// recent); the rest only count.
	unknownKept = 16
	// nameMax caps a stored name: a refused login's user name is whatever the client sent.
	nameMax = 64
	// statusFormat is the version of the file's layout.
	statusFormat = 1
)

// statusStore keeps, per configured system, what the pages must still know after a
// restart: when it was last connected and disconnected, the switches its agent last
// reported, and the last refused agent login and why (cleared by the next good login).
//
// The format is one JSON file, replaced atomically (write a temporary file, fsync,
// rename, fsync the directory). It holds one small record per configured system (about
// 270 bytes; 2.7 MB, written in under 0.1 s, for 10,000 systems) and is always read and
// written whole, so a key-value store buys nothing here; a JSON file can be read and
// repaired by hand, never locks out a second process (`maintproxy` commands), and a
// damaged file is simply set aside. Events only change memory under a mutex and wake the
// writer, which writes at most once per statusFlushEvery, encoding outside the mutex: the
// login and CONNECT paths never wait for the disk. A crash loses at most the last
// interval's changes, and the heartbeat bounds how stale a last-seen time can be. Refused
// logins of unknown names are aggregated into a count and the last few names, and records
// of systems no longer configured are dropped, so the file's size is bounded by the
// configuration, not by what clients send. In cluster mode each broker keeps its own
// file: a system held elsewhere is online by the cluster's presence.
type statusStore struct {
	path  string
	log   *slog.Logger
	now   func() time.Time
	known func(tunnel.Identity) bool
	// flushEvery and heartbeat are statusFlushEvery and statusHeartbeat (tests shorten them).
	flushEvery, heartbeat time.Duration

	mu      sync.Mutex
	systems map[tunnel.Identity]*systemRecord
	unknown unknownLogins
	dirty   bool

	kick    chan struct{}
	writeMu sync.Mutex // one write of the file at a time

	writes, writeErrors atomic.Int64 // for metrics
}

// systemRecord is one system's remembered status.
type systemRecord struct {
	Connected    time.Time      `json:"connected,omitzero"`    // when its last session started
	Disconnected time.Time      `json:"disconnected,omitzero"` // when its last session ended
	SeenAt       time.Time      `json:"seen_at,omitzero"`      // last heartbeat while connected
	Policy       *tunnel.Policy `json:"policy,omitempty"`      // the switches last reported
	LoginFailed  time.Time      `json:"login_failed,omitzero"` // last refused agent login
	LoginFailure string         `json:"login_failure,omitempty"`
	LoginDetail  string         `json:"login_detail,omitempty"`
	LoginRemote  string         `json:"login_remote,omitempty"`
	// LoginFailures counts refusals since the last good login.
	LoginFailures int64 `json:"login_failures,omitempty"`
}

// lastSeen is when the system was last known connected: the end of its last session, or,
// when the broker stopped without seeing it end, the last heartbeat.
func (r systemRecord) lastSeen() time.Time {
	if !r.Disconnected.Before(r.Connected) {
		return r.Disconnected
	}
	if r.SeenAt.After(r.Connected) {
		return r.SeenAt
	}
	return r.Connected
}

// unknownLogins aggregates refused logins of names the configuration does not have.
type unknownLogins struct {
	Count  int64          `json:"count"`
	Last   time.Time      `json:"last,omitzero"`
	Recent []unknownLogin `json:"recent,omitempty"`
}

type unknownLogin struct {
	Identity string    `json:"identity"`
	Remote   string    `json:"remote"`
	Detail   string    `json:"detail"`
	At       time.Time `json:"at"`
	Count    int64     `json:"count"`
}

// statusFileData is the file's layout.
type statusFileData struct {
	Format  int                      `json:"format"`
	Written time.Time                `json:"written"`
	Systems map[string]*systemRecord `json:"systems"` // key: customer/system, lower case
	Unknown unknownLogins            `json:"unknown_logins"`
}

// openStatusStore loads path. A missing file is a first start; a file that cannot be read
// or parsed is renamed aside (path.corrupt-<time>) with an error logged naming it, and the
// store starts empty: the broker serves on, and the pages say "waiting for first
// connection" until the agents are back. known says which systems are configured.
func openStatusStore(path string, log *slog.Logger, known func(tunnel.Identity) bool) *statusStore {
	s := &statusStore{path: path, log: log, now: time.Now, known: known, flushEvery: statusFlushEvery, heartbeat: statusHeartbeat,
		systems: map[tunnel.Identity]*systemRecord{}, kick: make(chan struct{}, 1)}
	if err := s.load(); err != nil {
		aside := fmt.Sprintf("%s.corrupt-%d", path, s.now().Unix())
		moved := os.Rename(path, aside)
		if moved != nil {
			aside = "(could not move it aside: " + moved.Error() + ")"
		}
		log.Error("status file unreadable; starting with no remembered status (last seen, refused logins)",
			"file", path, "err", err.Error(), "moved_to", aside)
		s.systems = map[tunnel.Identity]*systemRecord{}
		s.unknown = unknownLogins{}
	}
	return s
}

func (s *statusStore) load() error {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var f statusFileData
	if err := json.Unmarshal(data, &f); err != nil {
		return fmt.Errorf("parsing: %w", err)
	}
	if f.Format != statusFormat {
		return fmt.Errorf("format %d, this broker reads format %d", f.Format, statusFormat)
	}
	for key, r := range f.Systems {
		customer, system, ok := cutIdentity(key)
		if !ok || r == nil {
			return fmt.Errorf("systems: bad key %q", key)
		}
		s.systems[tunnel.NewIdentity(customer, system)] = r
	}
	s.unknown = f.Unknown
	if len(s.unknown.Recent) > unknownKept {
		s.unknown.Recent = s.unknown.Recent[:unknownKept]
	}
	return nil
}

func cutIdentity(key string) (customer, system string, ok bool) {
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			return key[:i], key[i+1:], i > 0 && i < len(key)-1
		}
	}
	return "", "", false
}

// record returns id's record, making it; s.mu must be held.
func (s *statusStore) record(id tunnel.Identity) *systemRecord {
	r := s.systems[id]
	if r == nil {
		r = &systemRecord{}
		s.systems[id] = r
	}
	return r
}

// changed marks the store dirty and wakes the writer without waiting; s.mu must be held.
func (s *statusStore) changed() {
	s.dirty = true
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// connected records that a session of id started at since with policy p: a good login,
// so a remembered refusal is cleared.
func (s *statusStore) connected(id tunnel.Identity, since time.Time, p tunnel.Policy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.record(id)
	r.Connected, r.SeenAt, r.Policy = since, since, &p
	r.LoginFailed, r.LoginFailure, r.LoginDetail, r.LoginRemote, r.LoginFailures = time.Time{}, "", "", "", 0
	s.changed()
}

// disconnected records that id's session ended at, with the policy it had last.
func (s *statusStore) disconnected(id tunnel.Identity, at time.Time, p tunnel.Policy) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.record(id)
	r.Disconnected, r.Policy = at, &p
	s.changed()
}

// refused records a refused agent login: on the system's record when it is configured,
// else in the bounded aggregate of unknown names.
func (s *statusStore) refused(e tunnel.LoginRefused) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.Known {
		r := s.record(e.ID)
		r.LoginFailed, r.LoginFailure, r.LoginDetail, r.LoginRemote = e.At, e.Reason, e.Detail, e.Remote
		r.LoginFailures++
		s.changed()
		return
	}
	u := &s.unknown
	u.Count++
	u.Last = e.At
	name := clip(e.ID.Customer) + "/" + clip(e.ID.System)
	for i := range u.Recent {
		if u.Recent[i].Identity == name {
			n := u.Recent[i].Count + 1
			copy(u.Recent[1:i+1], u.Recent[:i])
			u.Recent[0] = unknownLogin{Identity: name, Remote: e.Remote, Detail: e.Detail, At: e.At, Count: n}
			s.changed()
			return
		}
	}
	if len(u.Recent) < unknownKept {
		u.Recent = append(u.Recent, unknownLogin{})
	}
	copy(u.Recent[1:], u.Recent[:len(u.Recent)-1])
	u.Recent[0] = unknownLogin{Identity: name, Remote: e.Remote, Detail: e.Detail, At: e.At, Count: 1}
	s.changed()
}

func clip(name string) string {
	if len(name) > nameMax {
		return name[:nameMax] + "…"
	}
	return name
}

// liveSystem is a connected system and the switches its session holds now.
type liveSystem struct {
	id     tunnel.Identity
	policy tunnel.Policy
}

// touch notes that the systems live are connected at time at (the heartbeat), with the
// switches they hold now: an agent that reports a change during its session is kept
// up to date without waiting for its disconnect.
func (s *statusStore) touch(live []liveSystem, at time.Time) {
	if len(live) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range live {
		r := s.record(l.id)
		p := l.policy
		r.SeenAt, r.Policy = at, &p
	}
	s.changed()
}

// get returns id's record (a copy) and whether there is one.
func (s *statusStore) get(id tunnel.Identity) (systemRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.systems[id]
	if r == nil {
		return systemRecord{}, false
	}
	return *r, true
}

// run writes the file after changes, at most once per statusFlushEvery, and writes the
// connected systems' heartbeat (live lists them) every statusHeartbeat, until ctx is done.
// The final write is flush's, after the agents' sessions have ended.
func (s *statusStore) run(ctx context.Context, live func() []liveSystem) {
	heartbeat := time.NewTicker(s.heartbeat)
	defer heartbeat.Stop()
	pause := time.NewTimer(0)
	defer pause.Stop()
	<-pause.C
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		case <-heartbeat.C:
			s.touch(live(), s.now())
		}
		s.flush()
		pause.Reset(s.flushEvery)
		select {
		case <-ctx.Done():
			return
		case <-pause.C:
		}
	}
}

// flush writes the file if anything changed since the last write. Records of systems no
// longer configured are dropped first.
func (s *statusStore) flush() error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return nil
	}
	// Copies under the lock, JSON outside it: logins and sessions wait for no encoding.
	f := statusFileData{Format: statusFormat, Written: s.now().UTC(), Systems: make(map[string]*systemRecord, len(s.systems)),
		Unknown: s.unknown}
	f.Unknown.Recent = append([]unknownLogin(nil), s.unknown.Recent...)
	for id, r := range s.systems {
		if s.known != nil && !s.known(id) {
			delete(s.systems, id)
			continue
		}
		cp := *r
		f.Systems[id.String()] = &cp
	}
	s.dirty = false
	s.mu.Unlock()
	data, err := json.Marshal(f)
	if err == nil {
		if err = os.MkdirAll(filepath.Dir(s.path), 0o700); err == nil {
			err = atomicfile.Write(s.path, data, 0o600)
		}
	}
	if err == nil {
		s.writes.Add(1)
	} else {
		s.writeErrors.Add(1)
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		s.log.Error("writing the status file failed; retrying with the next change", "file", s.path, "err", err.Error())
	}
	return err
}
