package mux

import "time"

// Receive windows. What each stream grants its peer starts at the protocol's 256 KiB and
// grows like TCP's receive-buffer autotuning: to twice what the stream's reader takes in
// one round trip of the link (measured with pings, the least so far, so that queueing on a
// busy link does not inflate it), if the reader had to wait for data (a reader that never
// waits is the bottleneck, and more window would only buffer more), up to MaxWindow. A
// window big enough for one stream at full speed on a long path (16 MiB at 100 ms) must
// not be granted to every stream: across the session, what the peer may have sent and
// readers not yet taken is kept under Budget, beyond the initial window every stream may
// always have. A stream held back by the budget gets its credit once others read.
const (
	// rttRefresh is how old a round-trip sample may get while streams are busy.
	rttRefresh = 2 * time.Second
	// minRTT keeps rate sampling periods from getting shorter than timer resolution makes
	// sensible.
	minRTT = 200 * time.Microsecond
)

// recvWin is one stream's receive accounting; the session's lock guards it.
type recvWin struct {
	granted  int64 // credit given to the peer, initial window included
	recvd    int64 // bytes the peer sent
	consumed int64 // bytes the reader took (or that were dropped)
	target   int64 // the window this stream may have now
	starved  bool  // held below target by the budget
	stopped  bool  // gets no more credit: closed for reading, finished or forgotten

	// Rate sampling for the target.
	mark      time.Time
	markBytes int64
	waited    bool // the reader waited for data since mark
}

// windows is a session's receive accounting; the session's lock guards it.
type windows struct {
	max, budget int64
	total       int64 // Σ granted − consumed: what peers may have sent and readers not taken
	starved     int   // streams with starved set

	rtt       time.Duration
	at        time.Time
	measuring bool
	pinned    bool
}

func (w *windows) init(max, budget int64) { w.max, w.budget = max, budget }

// open accounts for a new stream's implicit initial window.
func (w *windows) open(r *recvWin) {
	r.granted, r.target = InitialWindow, InitialWindow
	w.total += InitialWindow
}

// receive checks that n more bytes fit what r granted and records them.
func (w *windows) receive(r *recvWin, n int64) bool {
	if n > r.granted-r.recvd {
		return false
	}
	r.recvd += n
	return true
}

// forget stops r's credit: the peer sends nothing more, so what it was granted and did not
// use is no longer exposed. What it sent and is still buffered stays counted until read or
// dropped.
func (w *windows) forget(r *recvWin) {
	w.stop(r)
	w.total -= r.granted - r.recvd
	r.granted = r.recvd
}

// stop gives r no more credit.
func (w *windows) stop(r *recvWin) {
	r.stopped = true
	if r.starved {
		r.starved = false
		w.starved--
	}
}

// drop records that n buffered bytes of r were dropped unread.
func (w *windows) drop(r *recvWin, n int64) {
	r.consumed += n
	w.total -= n
}

// consume records that r's reader took n bytes (having waited for them if waited) at now,
// and adjusts r's target.
func (w *windows) consume(r *recvWin, n int64, waited bool, now time.Time) {
	r.consumed += n
	w.total -= n
	if r.stopped {
		return
	}
	rtt := max(w.rtt, minRTT)
	if r.mark.IsZero() {
		r.mark, r.markBytes = now, r.consumed-n
	}
	r.waited = r.waited || waited
	if el := now.Sub(r.mark); el >= rtt {
		want := 2 * (r.consumed - r.markBytes) * int64(rtt) / int64(el)
		if want > r.target && r.waited {
			r.target = max(min(want, w.max, w.budget), InitialWindow)
		}
		r.mark, r.markBytes, r.waited = now, r.consumed, false
	}
}

// stale reports whether a new round-trip measurement should start (and marks it started).
func (w *windows) stale(now time.Time) bool {
	if w.pinned || w.measuring || now.Sub(w.at) <= rttRefresh {
		return false
	}
	w.measuring = true
	return true
}

// sample records a round trip.
func (w *windows) sample(d time.Duration) {
	if w.pinned {
		return
	}
	if w.rtt == 0 || d < w.rtt {
		w.rtt = d
	}
	w.at = time.Now()
}

// allowance is how much more credit r may be given now.
func (w *windows) allowance(r *recvWin) int64 {
	if r.stopped {
		return 0
	}
	exposed := r.granted - r.consumed
	f := r.target - exposed
	if room := max(w.budget-w.total, InitialWindow-exposed); f > room {
		f = room
		if !r.starved {
			r.starved = true
			w.starved++
		}
	} else if r.starved {
		r.starved = false
		w.starved--
	}
	return max(f, 0)
}

// release returns the credit to pass on to r's peer now (and counts it as given), or 0 when
// it is too little to be worth a frame yet: an update waits until a quarter of the target
// can go, unless the peer is down to less than half of it.
func (w *windows) release(r *recvWin) int64 {
	f := w.allowance(r)
	if f == 0 || (f < r.target/4 && r.granted-r.consumed >= r.target/2) {
		return 0
	}
	r.granted += f
	w.total += f
	return f
}
