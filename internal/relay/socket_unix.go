//go:build unix

package relay

import (
	"io"
	"os"
	"syscall"
)

// socketReader reads a socket without waiting: Go keeps its sockets non-blocking, so one
// read system call returns what is there, or EAGAIN.
func socketReader(rc syscall.RawConn) MoreReader { return rawReader{rc} }

type rawReader struct{ rc syscall.RawConn }

func (r rawReader) ReadMore(p []byte) (int, error) {
	var n int
	var rerr error
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = syscall.Read(int(fd), p)
			if rerr != syscall.EINTR {
				return true // one attempt: never wait for readiness
			}
		}
	})
	switch {
	case err != nil:
		return 0, err
	case rerr == syscall.EAGAIN:
		return 0, nil
	case rerr != nil:
		return 0, os.NewSyscallError("read", rerr)
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}
