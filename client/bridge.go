package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"

	"maintproxy/internal/relay"
)

// Stdio bridges one tunnel to in and out, as an ssh ProxyCommand or a PuTTY local proxy
// command. EOF on in half-closes the tunnel; the call returns once the tunnel's far side
// has finished sending (or failed), without waiting for in, which the caller may never
// close.
func (s Settings) Stdio(ctx context.Context, target string, in io.Reader, out io.WriteCloser) error {
	conn, err := s.Dial(ctx, target)
	if err != nil {
		return err
	}
	st := &stdio{in: in, out: out, done: make(chan struct{})}
	relayed := make(chan error, 1)
	go func() {
		_, _, err := relay.Copy(st, conn)
		relayed <- err
	}()
	select {
	case <-st.done:
		return nil
	case err := <-relayed:
		return err
	case <-ctx.Done():
		conn.Close()
		return ctx.Err()
	}
}

// stdio is a half-closable connection made of a reader and a writer.
type stdio struct {
	in   io.Reader
	out  io.WriteCloser
	once sync.Once
	done chan struct{} // closed once out is closed: nothing more can reach the user
}

func (s *stdio) Read(p []byte) (int, error)  { return s.in.Read(p) }
func (s *stdio) Write(p []byte) (int, error) { return s.out.Write(p) }

// CloseWrite ends the output: the tunnel's far side has finished.
func (s *stdio) CloseWrite() error {
	s.once.Do(func() { s.out.Close(); close(s.done) })
	return nil
}

// Close ends the output; the input is left to the process's end.
func (s *stdio) Close() error { return s.CloseWrite() }

// Forwarder serves a local TCP port: every connection gets its own tunnel to Target.
type Forwarder struct {
	Settings Settings
	Target   string
	Logger   *slog.Logger
}

// Serve accepts on ln until ctx is done, then closes ln and every open connection and
// returns once all have ended.
func (f *Forwarder) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]bool{}
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
	})
	defer stop()
	defer wg.Wait()
	for {
		local, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		mu.Lock()
		open[local] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { mu.Lock(); delete(open, local); mu.Unlock() }()
			f.serveOne(ctx, local)
		}()
	}
}

func (f *Forwarder) serveOne(ctx context.Context, local net.Conn) {
	remote, err := f.Settings.Dial(ctx, f.Target)
	if err != nil {
		local.Close()
		f.Logger.Error(fmt.Sprintf("connection from %s refused: %v", local.RemoteAddr(), err))
		return
	}
	f.Logger.Info("tunnel open", "from", local.RemoteAddr().String(), "to", f.Target)
	up, down, err := relay.Copy(local, remote)
	f.Logger.Info("tunnel closed", "from", local.RemoteAddr().String(), "sent", up, "received", down, "err", relay.ErrText(err))
}
