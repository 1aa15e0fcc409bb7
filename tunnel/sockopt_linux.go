package tunnel

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// tuneLinkSocket sets the agent link's socket options (a net.Dialer Control function; the
// broker applies it to accepted links too).
//
// Send buffer: Linux grows it automatically up to net.ipv4.tcp_wmem's maximum (4 MiB by
// default), about 25 MiB/s on a 100 ms path for the one connection that carries all of an
// agent's tunnels. Where net.core.wmem_max allows more — an explicit SO_SNDBUF may be
// twice that — the buffer is set to it instead; where it does not, autotuning is left alone.
func tuneLinkSocket(_, _ string, rc syscall.RawConn) error {
	return rc.Control(func(fd uintptr) {
		auto, fixed := sysctlMax("net/ipv4/tcp_wmem"), sysctlMax("net/core/wmem_max")
		if auto > 0 && fixed > 0 && 2*fixed > auto {
			syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, fixed)
		}
	})
}

// sysctlMax returns the last number of a /proc/sys file, or 0.
func sysctlMax(name string) int {
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.Atoi(f[len(f)-1])
	return n
}
