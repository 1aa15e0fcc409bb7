//go:build !linux

package tunnel

import "syscall"

// tuneLinkSocket leaves the kernel's defaults elsewhere than on Linux.
func tuneLinkSocket(_, _ string, _ syscall.RawConn) error { return nil }
