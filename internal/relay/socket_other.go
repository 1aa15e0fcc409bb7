//go:build !unix

package relay

import "syscall"

// rawReader is not available here: sockets are read the blocking way.
type rawReader struct{ MoreReader }

func socketReader(syscall.RawConn) *rawReader { return nil }

func (*rawReader) WaitReadable() error { return nil }
