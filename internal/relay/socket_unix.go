//go:build unix

package relay

import (
	"io"
	"os"
	"syscall"
)

// rawReader reads a socket through its raw connection. Go keeps sockets non-blocking, so
// one read system call returns what is there, or EAGAIN; and the runtime's poller can wait
// for the socket to become readable without a buffer. Its methods are for one goroutine at
// a time; the functions it hands the raw connection are made once, so that no call
// allocates.
type rawReader struct {
	rc syscall.RawConn

	p       []byte // ReadMore's buffer during the call
	n       int
	err     error
	peek    [1]byte
	polled  bool  // WaitReadable looked at the socket once
	peekErr error // what the look found wrong: the socket reports an error only once

	readFn, waitFn func(fd uintptr) bool
}

// socketReader returns a reader of the socket behind rc.
func socketReader(rc syscall.RawConn) *rawReader {
	r := &rawReader{rc: rc}
	r.readFn = func(fd uintptr) bool {
		for {
			r.n, r.err = syscall.Read(int(fd), r.p)
			if r.err != syscall.EINTR {
				return true // one attempt: never wait for readiness
			}
		}
	}
	r.waitFn = func(fd uintptr) bool {
		if r.polled {
			return true // the poller says readable (or the read will say what is wrong)
		}
		r.polled = true
		for {
			_, _, err := syscall.Recvfrom(int(fd), r.peek[:], syscall.MSG_PEEK)
			switch err {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false
			case nil:
			default:
				r.peekErr = err
			}
			return true
		}
	}
	return r
}

// ReadMore reads what the socket holds without waiting: (0, nil) when nothing is there.
func (r *rawReader) ReadMore(p []byte) (int, error) {
	if err := r.peekErr; err != nil {
		r.peekErr = nil
		return 0, os.NewSyscallError("read", err)
	}
	r.p = p
	err := r.rc.Read(r.readFn)
	r.p = nil
	switch {
	case err != nil:
		return 0, err
	case r.err == syscall.EAGAIN:
		return 0, nil
	case r.err != nil:
		return 0, os.NewSyscallError("read", r.err)
	case r.n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return r.n, nil
}

// WaitReadable waits until the socket has data, an end or an error to read, holding no
// buffer meanwhile; it may return early (the next ReadMore then finds nothing).
func (r *rawReader) WaitReadable() error {
	r.polled = false
	return r.rc.Read(r.waitFn)
}
