//go:build !unix

package relay

import "syscall"

// socketReader: where sockets cannot be read without waiting, the relay reads them the
// blocking way.
func socketReader(syscall.RawConn) MoreReader { return nil }
