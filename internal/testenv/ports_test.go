package testenv

import (
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// listenEnv makes the test binary a stand-in external program: it listens on the port
// given and waits to be killed.
const listenEnv = "TESTENV_HELPER_LISTEN_PORT"

func TestMain(m *testing.M) {
	if port := os.Getenv(listenEnv); port != "" {
		ln, err := net.Listen("tcp", "127.0.0.1:"+port)
		if err != nil {
			os.Exit(3)
		}
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(4)
			}
			c.Close()
		}
	}
	os.Exit(Main(m))
}

// TestRefusedAddr: connections are refused and nobody can bind the port.
func TestRefusedAddr(t *testing.T) {
	addr := RefusedAddr(t, "127.0.0.1")
	if _, err := net.DialTimeout("tcp", addr, 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("dialing %s: %v, want connection refused", addr, err)
	}
	if ln, err := net.Listen("tcp", addr); err == nil {
		ln.Close()
		t.Errorf("%s could be bound by another socket", addr)
	}
}

// TestStartExternalRetriesATakenPort: when another process holds the picked port, the
// program is started again on a new port, and the port returned is the program's own.
func TestStartExternalRetriesATakenPort(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	attempts := 0
	p := StartExternal(t, "helper", "127.0.0.1", 1, func(ports []int) *exec.Cmd {
		attempts++
		if attempts == 1 {
			// Another process (this one) takes the port first.
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(ports[0])))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
		}
		cmd := exec.Command(self, "-test.run=^$")
		cmd.Env = append(os.Environ(), listenEnv+"="+strconv.Itoa(ports[0]))
		return cmd
	})
	if attempts != 2 {
		t.Errorf("%d attempts, want 2", attempts)
	}
	if mine, anyone := listenerOwner("127.0.0.1", p.Ports[0], syscall.Getpgrp()); mine || !anyone {
		t.Errorf("port %d: listened on by this process %v, by any %v; want by the program only", p.Ports[0], mine, anyone)
	}
	c, err := net.DialTimeout("tcp", p.Addr("127.0.0.1"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// TestForwardWaitsForTo: a connection made before To is relayed once To names the server.
func TestForwardWaitsForTo(t *testing.T) {
	f := StartForward(t)
	c, err := net.DialTimeout("tcp", f.Addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	f.To(StartEcho(t, "127.0.0.1:0"))
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go func() { io.WriteString(c, "through the forward"); c.(*net.TCPConn).CloseWrite() }()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "through the forward" {
		t.Fatalf("echo through the forward: %q, %v", got, err)
	}
}
