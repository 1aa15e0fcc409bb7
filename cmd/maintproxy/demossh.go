package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"maintproxy/internal/conns"

	"golang.org/x/crypto/ssh"
	"golang.org/x/term"
)

// The demo's SSH server stands in for the customer's primary server. It listens on
// loopback only, knows one user, and answers a handful of commands with fixed texts: it
// runs nothing on this machine and forwards no ports.
const (
	demoSSHUser     = "tech"
	demoSSHPassword = "demo-ssh-password"
	demoSSHMaxConns = 16
	demoSSHMaxLine  = 4096
	demoSSHIdle     = 10 * time.Minute
)

// demoSSH is the running server and the files a technician's OpenSSH needs.
type demoSSH struct {
	addr       string
	keyFile    string // the demo user's private key (OpenSSH format, mode 0600)
	knownHosts string // the server's host key for the maintenance names
}

// startDemoSSH starts the server on 127.0.0.1 with keys kept in dir (made once, so that
// known_hosts stays right across demo runs) and stops it when ctx ends.
func startDemoSSH(ctx context.Context, wg *sync.WaitGroup, dir string, names []string) (*demoSSH, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	hostKey, err := loadOrMakeKey(filepath.Join(dir, "host_key"))
	if err != nil {
		return nil, err
	}
	userKey, err := loadOrMakeKey(filepath.Join(dir, "id_ed25519"))
	if err != nil {
		return nil, err
	}
	d := &demoSSH{keyFile: filepath.Join(dir, "id_ed25519"), knownHosts: filepath.Join(dir, "known_hosts")}
	line := strings.Join(names, ",") + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostKey.PublicKey()))) + "\n"
	if err := os.WriteFile(d.knownHosts, []byte(line), 0o600); err != nil {
		return nil, err
	}
	authorized := userKey.PublicKey().Marshal()
	conf := &ssh.ServerConfig{
		PasswordCallback: func(c ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			if c.User() == demoSSHUser && subtle.ConstantTimeCompare(pw, []byte(demoSSHPassword)) == 1 {
				return nil, nil
			}
			return nil, errors.New("wrong user or password")
		},
		PublicKeyCallback: func(c ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if c.User() == demoSSHUser && subtle.ConstantTimeCompare(key.Marshal(), authorized) == 1 {
				return nil, nil
			}
			return nil, errors.New("unknown key")
		},
		MaxAuthTries:  6,
		ServerVersion: "SSH-2.0-maintproxy-demo",
	}
	conf.AddHostKey(hostKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d.addr = ln.Addr().String()
	srv := conns.Serve(ln, demoSSHMaxConns, func(c net.Conn) { serveDemoSSH(c, conf) })
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		srv.Close()
	}()
	return d, nil
}

// loadOrMakeKey reads an ed25519 key in OpenSSH format, or makes and writes one (0600).
func loadOrMakeKey(path string) (ssh.Signer, error) {
	if data, err := os.ReadFile(path); err == nil {
		return ssh.ParsePrivateKey(data)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "maintproxy demo")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path+".pub", ssh.MarshalAuthorizedKey(sshPub), 0o644); err != nil {
		return nil, err
	}
	return ssh.NewSignerFromKey(priv)
}

// serveDemoSSH runs one connection: session channels only, each a shell or one command.
func serveDemoSSH(c net.Conn, conf *ssh.ServerConfig) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second)) // the handshake
	sc, chans, reqs, err := ssh.NewServerConn(c, conf)
	if err != nil {
		return
	}
	defer sc.Close()
	c.SetDeadline(time.Time{})
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.Prohibited, "the demo server opens sessions only")
			continue
		}
		ch, requests, err := nc.Accept()
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			demoSession(ch, requests, sc.User())
		}()
	}
}

// demoSession answers a session's requests: a pty is accepted (the shell then edits lines
// and echoes), "shell" starts the pretend shell, "exec" answers one command.
func demoSession(ch ssh.Channel, requests <-chan *ssh.Request, user string) {
	defer ch.Close()
	pty := false
	timer := time.AfterFunc(demoSSHIdle, func() { ch.Close() })
	defer timer.Stop()
	for req := range requests {
		switch req.Type {
		case "pty-req", "env", "window-change":
			pty = pty || req.Type == "pty-req"
			req.Reply(req.WantReply, nil)
		case "exec":
			var payload struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &payload); err != nil {
				req.Reply(false, nil)
				return
			}
			req.Reply(true, nil)
			out, status := demoCommand(payload.Command, user)
			io.WriteString(ch, out)
			exit(ch, status)
			return
		case "shell":
			req.Reply(true, nil)
			exit(ch, demoShell(ch, pty, user, timer))
			return
		default:
			req.Reply(false, nil)
		}
	}
}

func exit(ch ssh.Channel, status uint32) {
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
}

// demoShell reads command lines until exit or end of input.
func demoShell(ch ssh.Channel, pty bool, user string, idle *time.Timer) uint32 {
	const banner = "maintproxy demo: you reached the pretend SSH server of customer 12345 through the proxy.\n" +
		"It runs nothing; try: hostname, whoami, echo TEXT, date, help, exit.\n"
	var readLine func() (string, error)
	write := func(s string) { io.WriteString(ch, s) }
	if pty { // the terminal edits lines, echoes, and writes \n as \r\n
		t := term.NewTerminal(ch, "demo$ ")
		readLine = t.ReadLine
		write = func(s string) { io.WriteString(t, s) }
	} else {
		r := bufio.NewReaderSize(io.LimitReader(ch, 1<<20), demoSSHMaxLine)
		readLine = func() (string, error) {
			line, err := r.ReadString('\n')
			if err != nil && line == "" {
				return "", err
			}
			return strings.TrimRight(line, "\r\n"), nil
		}
	}
	write(banner)
	for i := 0; i < 10000; i++ {
		line, err := readLine()
		if err != nil {
			return 0
		}
		idle.Reset(demoSSHIdle)
		if f := strings.Fields(line); len(f) > 0 && (f[0] == "exit" || f[0] == "logout") {
			return 0
		}
		if len(line) > demoSSHMaxLine {
			line = line[:demoSSHMaxLine]
		}
		out, _ := demoCommand(line, user)
		write(out)
	}
	return 0
}

// demoCommand answers one command line with a fixed text and an exit status.
func demoCommand(line, user string) (string, uint32) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return "", 0
	}
	switch f[0] {
	case "echo":
		return strings.Join(f[1:], " ") + "\n", 0
	case "hostname":
		return "12345-se1 (maintproxy demo server)\n", 0
	case "whoami":
		return user + "\n", 0
	case "date":
		return time.Now().UTC().Format(time.UnixDate) + "\n", 0
	case "uname":
		return "maintproxy-demo\n", 0
	case "help":
		return "Commands: hostname, whoami, echo TEXT, date, uname, help, exit. Nothing else runs here.\n", 0
	}
	return fmt.Sprintf("demo: %s: not available on the demo server (it runs nothing); try help\n", f[0]), 127
}
