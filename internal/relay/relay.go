// Package relay carries a tunnel's bytes once both ends are connected: Copy moves both
// directions at once and passes a clean end on as a half-close, and BufferedConn keeps the
// bytes a reader had already buffered when a connection changed hands after an HTTP
// exchange. The broker, the agent and the technician's client all use it, so it imports
// only the standard library: the client must not link the broker's dependencies.
package relay

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// bufSize is large enough that one read fills a yamux frame of useful size, and a write to a
// technician's TLS connection (four full records) leaves in one system call. Larger is not
// better: with 256 KiB buffers a forwarded tunnel measured about 1.5× the CPU per byte (a
// 256 KiB frame does not fit the links' pooled batch buffers, sized for 64 KiB batches, so
// every batch is allocated anew).
const bufSize = 64 << 10

// waitSize is the buffer a relay waits for data in. A tunnel spends most of its life
// waiting (an idle ssh or RDP session for hours, and every tunnel of a connection burst
// between its few bytes), so it holds a large buffer only while data flows: a wait buffer
// per direction, and a pooled 64 KiB one for what is ready behind a full wait buffer.
// 4 KiB carries a keystroke, an ssh packet or a small RDP update in one write.
const waitSize = 4 << 10

var (
	bufs     = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}
	waitBufs = sync.Pool{New: func() any { b := make([]byte, waitSize); return &b }}
)

// closeWriter is a connection whose write side can be shut on its own: *net.TCPConn,
// *tls.Conn (close_notify), *net.UnixConn, BufferedConn.
type closeWriter interface{ CloseWrite() error }

// Copy copies a to b and b to a until both directions end, then closes both.
//
// A clean EOF in one direction is passed on as a half-close: CloseWrite on the destination
// if it has one, else Close (a yamux stream's Close is its half-close). The other direction
// keeps flowing. An error in either direction tears both down at once, so a dead peer
// never leaves the other side hanging. It returns the bytes copied each way and the first
// error that was not a clean end.
func Copy(a, b io.ReadWriteCloser) (aToB, bToA int64, err error) {
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		// A panic in this direction's reads or writes ends the relay with an error here;
		// left alone it would end the process, whatever recovers the caller's goroutine.
		defer func() {
			if v := recover(); v != nil {
				cut(a)
				cut(b)
				done <- result{0, fmt.Errorf("relay: panic: %v", v)}
			}
		}()
		n, err := copyHalf(b, a)
		done <- result{n, err}
	}()
	bToA, errBA := copyHalf(a, b)
	if errBA != nil {
		// Unblock the other direction now rather than waiting for the peer.
		cut(a)
		cut(b)
	}
	r := <-done
	aToB = r.n
	a.Close()
	b.Close()
	return aToB, bToA, errors.Join(r.err, errBA)
}

// copyHalf copies src to dst and half-closes dst on a clean EOF. On error it closes both so
// that the opposite direction stops too.
func copyHalf(dst, src io.ReadWriteCloser) (int64, error) {
	var n int64
	var err error
	r := readySource(src)
	if r != nil {
		n, err = copyReady(dst, r)
	}
	if r == nil || (n == 0 && errors.Is(err, errors.ErrUnsupported)) {
		wp := waitBufs.Get().(*[]byte)
		n, err = copyBuffer(dst, src, *wp)
		waitBufs.Put(wp)
	}
	if err != nil && !isClosedErr(err) {
		cut(dst)
		cut(src)
		return n, err
	}
	if cw, ok := dst.(closeWriter); ok {
		if cerr := cw.CloseWrite(); cerr != nil {
			dst.Close()
		}
	} else {
		dst.Close()
	}
	return n, nil
}

// cut ends c after an error: a multiplexed stream is reset, so that its peer stops at
// once instead of reading a clean end; anything else is closed.
func cut(c io.Closer) {
	if r, ok := c.(interface{ Reset() error }); ok {
		r.Reset()
		return
	}
	c.Close()
}

// isClosedErr reports errors that mean "the other direction already tore this down",
// which are the normal end of a relay rather than failures.
func isClosedErr(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, os.ErrClosed)
}

// MoreReader is a source that can hand over what it already holds without waiting. A TLS
// connection's Read returns one record (at most 16 KiB) at a time; a relay that reads on
// while more is ready writes up to a whole buffer at once, so that a tunnel carries a few
// large frames instead of many record-sized ones. It also lets the relay give its large
// buffer back before every wait (see waitSize).
type MoreReader interface {
	// ReadMore reads into p what can be read at once: (0, nil) when nothing is ready, and
	// (0, errors.ErrUnsupported) when the source cannot tell (a wrapper around a
	// connection that is no MoreReader), after which the relay only calls Read.
	ReadMore(p []byte) (int, error)
}

// ReadyReader is a MoreReader that can also wait for data without a buffer: WaitReadable
// returns once ReadMore would find data or the end (it may return early; ReadMore then
// finds nothing), or errors.ErrUnsupported when the source cannot wait that way (a
// wrapper around a connection that cannot). A multiplexed stream and a plain socket can.
type ReadyReader interface {
	MoreReader
	WaitReadable() error
}

// readySource returns src as a ReadyReader: src itself if it is one, else a reader of its
// socket (socketSource), else nil.
func readySource(src io.Reader) ReadyReader {
	if r, ok := src.(ReadyReader); ok {
		return r
	}
	if r := socketSource(src); r != nil {
		return r
	}
	return nil
}

// moreReader returns src as a MoreReader: src itself if it is one, else a reader of its
// socket (socketSource), else nil.
func moreReader(src io.Reader) MoreReader {
	if m, ok := src.(MoreReader); ok {
		return m
	}
	if r := socketSource(src); r != nil {
		return r
	}
	return nil
}

// socketSource returns a reader of src's socket when src is a plain TCP or Unix connection
// and the system lets it be read without waiting; nil otherwise.
func socketSource(src io.Reader) *rawReader {
	if _, ok := src.(MoreReader); ok {
		return nil // a wrapper that knows better what is ready (TLS, buffered bytes)
	}
	sc, ok := src.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return socketReader(rc)
}

// copyReady copies r to dst. It waits for data holding no buffer at all, then takes what is
// there into a pooled 64 KiB buffer (for a socket with one read, as a plain Read into a
// buffer of that size would), and gives the buffer back once a read drained the source.
// errors.ErrUnsupported before any byte: r cannot wait that way (use copyBuffer).
func copyReady(dst io.Writer, r ReadyReader) (written int64, err error) {
	var big *[]byte
	defer func() {
		if big != nil {
			bufs.Put(big)
		}
	}()
	for {
		if big == nil {
			if err := r.WaitReadable(); err != nil {
				return written, err
			}
			big = bufs.Get().(*[]byte)
		}
		n, rerr := r.ReadMore(*big)
		if end, err := pass(dst, (*big)[:n], rerr, &written); end {
			return written, err
		}
		if n < len(*big) {
			bufs.Put(big) // the source is drained: wait without a buffer
			big = nil
		}
	}
}

// pass writes b, what a read returned with rerr, to dst, adding to written, and says
// whether the copy ends: at a clean EOF (err nil), a read error or a write error.
func pass(dst io.Writer, b []byte, rerr error, written *int64) (end bool, err error) {
	if len(b) > 0 {
		w, werr := writeAll(dst, b)
		*written += int64(w)
		if werr != nil {
			return true, werr
		}
	}
	if rerr == io.EOF {
		return true, nil
	}
	return rerr != nil, rerr
}

// writeAll writes b to dst: all of it, or an error.
func writeAll(dst io.Writer, b []byte) (int, error) {
	w, err := dst.Write(b)
	if w < 0 || w > len(b) {
		w = 0
		if err == nil {
			err = errInvalidWrite
		}
	}
	if err == nil && w != len(b) {
		err = io.ErrShortWrite
	}
	return w, err
}

// errInvalidWrite: a Writer returned an impossible count.
var errInvalidWrite = errors.New("invalid write result")

// copyBuffer copies src to dst like io.CopyBuffer (never through ReaderFrom or WriterTo, so
// that a pooled buffer is used), waiting for data in wait, a small buffer.
//
// When a read fills wait, more is probably ready, and the relay goes on in a pooled 64 KiB
// buffer. With a MoreReader source it fills that buffer with what is ready before each
// write, takes the next batch into it without waiting, and gives it back as soon as
// nothing is ready: the large buffer is never held while the tunnel waits. A source that is
// no MoreReader keeps the large buffer for its next (blocking) read as long as its reads
// bring more than wait holds, so that a bulk transfer still moves 64 KiB at a time.
func copyBuffer(dst io.Writer, src io.Reader, wait []byte) (written int64, err error) {
	more := moreReader(src)
	var big *[]byte // the pooled large buffer while data flows
	defer func() {
		if big != nil {
			bufs.Put(big)
		}
	}()
	for {
		var buf []byte
		var n int
		var rerr error
		if big != nil {
			buf = *big
			if more != nil {
				n, rerr = more.ReadMore(buf)
				if rerr == errors.ErrUnsupported {
					more, rerr = nil, nil
				}
			} else {
				n, rerr = src.Read(buf)
			}
			if n == 0 && rerr == nil {
				// Nothing ready: give the large buffer back and wait in the small one.
				bufs.Put(big)
				big = nil
			}
		}
		if big == nil {
			buf = wait
			n, rerr = src.Read(buf)
		}
		for more != nil && rerr == nil && n > 0 {
			if n == len(buf) {
				if big != nil {
					break
				}
				big = bufs.Get().(*[]byte)
				copy(*big, buf)
				buf = *big
			}
			m, merr := more.ReadMore(buf[n:])
			if merr == errors.ErrUnsupported {
				more, merr = nil, nil
			}
			n, rerr = n+m, merr
			if m == 0 {
				break
			}
		}
		if end, err := pass(dst, buf[:n], rerr, &written); end {
			return written, err
		}
		switch {
		case more != nil && big != nil && n == len(*big):
			// Keep the large buffer: the next batch is probably ready, and taken without waiting.
		case more != nil && big != nil:
			bufs.Put(big) // nothing more was ready: wait in the small buffer
			big = nil
		case more != nil:
		case big == nil && n == len(wait):
			big = bufs.Get().(*[]byte) // more will come: read it in large chunks
		case big != nil && n <= len(wait):
			bufs.Put(big) // the burst is over: wait in the small buffer
			big = nil
		}
	}
}

// ErrText is the text of the error Copy returned, for a tunnel's log record: empty for a
// clean end.
func ErrText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
