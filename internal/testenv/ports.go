package testenv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"maintproxy/internal/conns"
	"maintproxy/internal/relay"
	"maintproxy/internal/testkit"
)

// Ports in tests.
//
// A port picked free and closed can be taken by any other process before the program it
// is meant for binds it. So: the broker and everything in the test process listen on
// port 0 and report the bound address (the broker logs it; see Start). A port that must
// refuse connections is held bound without listening (RefusedAddr). External programs
// that cannot report a port they bound (sshd, freerdp-shadow-cli, proxytunnel
// --standalone, pebble) are started by StartExternal, which checks that the listener on
// the port it picked belongs to the program and otherwise starts it again on another
// port. A port a program must be told before the server behind it exists (pebble
// validating the broker) is a Forward.

// UnansweredAddr returns a 127.0.0.1 address whose accept queue is full until the test
// ends: a connection attempt there goes unanswered and times out, instead of being
// refused (the way to make an agent's dial time out, or hang until it is abandoned).
func UnansweredAddr(t testing.TB) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := (&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: sa.(*syscall.SockaddrInet4).Port}).String()
	// The kernel queues a little more than the backlog asked for: fill it, bounded.
	for range 16 {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			return addr // this attempt went unanswered: the queue is full
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatalf("could not fill the accept queue of %s", addr)
	return ""
}

// RefusedAddr returns host:port of a TCP socket that this process holds bound but never
// listens on, until the test ends: every connection to it is refused, and no other
// process can bind the port meanwhile.
func RefusedAddr(t testing.TB, host string) string {
	t.Helper()
	ip := net.ParseIP(host).To4()
	if ip == nil {
		t.Fatalf("RefusedAddr: %q is not an IPv4 address", host)
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	sa := &syscall.SockaddrInet4{}
	copy(sa.Addr[:], ip)
	if err := syscall.Bind(fd, sa); err != nil {
		t.Fatalf("RefusedAddr: binding %s: %v", host, err)
	}
	bound, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort(host, strconv.Itoa(bound.(*syscall.SockaddrInet4).Port))
}

// External is a program started by StartExternal.
type External struct {
	// Ports are the ports the program listens on, in the order newCmd was given them.
	Ports []int
	// Exited is closed when the program has exited.
	Exited <-chan struct{}
	out    *testkit.Buffer
	pgid   int
}

// Signal sends sig to the program's process group (SIGSTOP/SIGCONT to freeze and thaw it).
func (e *External) Signal(sig syscall.Signal) { syscall.Kill(-e.pgid, sig) }

// Addr is host:Ports[0].
func (e *External) Addr(host string) string { return net.JoinHostPort(host, strconv.Itoa(e.Ports[0])) }

// Output is what the program wrote to stdout and stderr so far (unless newCmd set them).
func (e *External) Output() string { return e.out.String() }

// StartExternal starts the program newCmd builds for n ports picked free on host and
// waits until the program itself listens on all of them (on host or the wildcard
// address). When the program exits first, or another process listens on a picked port,
// it starts the program again on new ports (3 attempts within 60 s). The program runs in
// its own process group, killed when the test ends; its output is logged if the test
// fails.
func StartExternal(t testing.TB, name, host string, n int, newCmd func(ports []int) *exec.Cmd) *External {
	t.Helper()
	var why string
	for attempt := 1; attempt <= 3; attempt++ {
		ports := pickPorts(t, host, n)
		cmd := newCmd(ports)
		out := &testkit.Buffer{}
		if cmd.Stdout == nil {
			cmd.Stdout = out
		}
		if cmd.Stderr == nil {
			cmd.Stderr = out
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		kill := func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); <-exited }
		if why = awaitListening(host, ports, cmd.Process.Pid, exited, 20*time.Second); why == "" {
			t.Cleanup(func() {
				kill()
				if t.Failed() {
					t.Logf("%s output:\n%s", name, out.String())
				}
			})
			return &External{Ports: ports, Exited: exited, out: out, pgid: cmd.Process.Pid}
		}
		kill()
		t.Logf("%s on ports %v, attempt %d: %s; output:\n%s", name, ports, attempt, why, out.String())
	}
	t.Fatalf("%s: not listening after 3 attempts: %s", name, why)
	return nil
}

// pickPorts returns n distinct ports that were free on host a moment ago.
func pickPorts(t testing.TB, host string, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// awaitListening waits until process group pgid listens on every port; it returns why
// not ("" once it does).
func awaitListening(host string, ports []int, pgid int, exited <-chan struct{}, timeout time.Duration) string {
	deadline := time.Now().Add(timeout)
	for {
		waiting := 0
		for _, p := range ports {
			ours, anyone := listenerOwner(host, p, pgid)
			switch {
			case anyone && !ours:
				return fmt.Sprintf("port %d was taken by another process", p)
			case !ours:
				waiting++
			}
		}
		if waiting == 0 {
			return ""
		}
		select {
		case <-exited:
			return "the program exited"
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Sprintf("not listening after %v", timeout)
		}
	}
}

// listenerOwner reports whether a process of process group pgid has a TCP socket
// listening on port of host (or of the wildcard address), and whether any process has.
// It reads /proc: the sockets from /proc/net/tcp{,6}, the owners from /proc/*/fd.
func listenerOwner(host string, port, pgid int) (ours, anyone bool) {
	inodes := listeningInodes(net.ParseIP(host), port)
	if len(inodes) == 0 {
		return false, false
	}
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || processGroup(pid) != pgid {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join("/proc", p.Name(), "fd"))
		for _, fd := range fds {
			link, _ := os.Readlink(filepath.Join("/proc", p.Name(), "fd", fd.Name()))
			if inode, ok := strings.CutPrefix(link, "socket:["); ok && inodes[strings.TrimSuffix(inode, "]")] {
				return true, true
			}
		}
	}
	return false, true
}

// listeningInodes returns the inodes of TCP sockets listening on host:port or on the
// wildcard address with that port.
func listeningInodes(host net.IP, port int) map[string]bool {
	inodes := map[string]bool{}
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(file)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" { // 0A: TCP_LISTEN
				continue
			}
			ipHex, portHex, ok := strings.Cut(fields[1], ":")
			p, err := strconv.ParseUint(portHex, 16, 16)
			if !ok || err != nil || int(p) != port {
				continue
			}
			if ip := procNetIP(ipHex); ip != nil && (ip.IsUnspecified() || ip.Equal(host)) {
				inodes[fields[9]] = true
			}
		}
		f.Close()
	}
	return inodes
}

// procNetIP decodes an address of /proc/net/tcp{,6}: 32-bit words in host byte order
// (little-endian on the machines the tests run on).
func procNetIP(s string) net.IP {
	b, err := hex.DecodeString(s)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return nil
	}
	for i := 0; i < len(b); i += 4 {
		b[i], b[i+1], b[i+2], b[i+3] = b[i+3], b[i+2], b[i+1], b[i]
	}
	return net.IP(b)
}

// processGroup returns the process group of pid (-1 if unknown), from /proc/<pid>/stat.
func processGroup(pid int) int {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return -1
	}
	// pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return -1
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 3 {
		return -1
	}
	pgrp, err := strconv.Atoi(f[2])
	if err != nil {
		return -1
	}
	return pgrp
}

// StartRelay listens on 127.0.0.1:0 until the test ends and returns the address. For each
// connection c it dials u with dial (ctx ends with the test) and runs both(c, u), which
// returns once both directions are done; cleanup closes every connection on either side
// and waits for the handlers.
func StartRelay(t testing.TB, dial func(ctx context.Context) (net.Conn, error), both func(c, u net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var upstream conns.Set
	s := conns.Serve(ln, 0, func(c net.Conn) {
		u, err := dial(ctx)
		if err != nil {
			return
		}
		if !upstream.Add(u, 0) {
			u.Close()
			return
		}
		defer upstream.Remove(u)
		both(c, u)
	})
	t.Cleanup(func() {
		cancel()
		upstream.Close()
		s.Close()
	})
	return s.Addr()
}

// Forward is a port on 127.0.0.1 that exists before the server behind it: it listens at
// once and relays each connection to the address given later to To; a connection that
// arrives earlier waits for To (up to 30 s). A program that must be told a port before
// that server starts (pebble, validating a broker that must already know pebble) gets
// one that no other process can take.
type Forward struct {
	addr  string
	port  int
	ready chan struct{}
	once  sync.Once
	to    string
}

// StartForward listens on 127.0.0.1:0 until the test ends.
func StartForward(t testing.TB) *Forward {
	t.Helper()
	f := &Forward{ready: make(chan struct{})}
	f.addr = StartRelay(t, func(ctx context.Context) (net.Conn, error) {
		select {
		case <-f.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(30 * time.Second):
			return nil, fmt.Errorf("forward %s: no destination within 30s", f.addr)
		}
		return (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", f.to)
	}, func(c, u net.Conn) { relay.Copy(c, u) })
	_, port, _ := net.SplitHostPort(f.addr)
	f.port, _ = strconv.Atoi(port)
	return f
}

// Addr is the forward's own address, 127.0.0.1:port.
func (f *Forward) Addr() string { return f.addr }

// Port is the forward's own port.
func (f *Forward) Port() int { return f.port }

// To sets the address connections are relayed to; only the first call counts.
func (f *Forward) To(addr string) {
	f.once.Do(func() {
		f.to = addr
		close(f.ready)
	})
}
