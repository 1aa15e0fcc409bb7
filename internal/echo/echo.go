// Package echo is the TCP echo target of the tests, the benchmarks and the demo: every
// byte a client sends comes back, and a client's half-close is answered with one.
//
// It imports only the standard library, so that any package's own tests can use it
// without an import cycle.
package echo

import (
	"context"
	"io"
	"net"
	"sync"
)

// Server echoes every connection accepted on its listener until it is closed.
type Server struct {
	ln   net.Listener
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// Start listens on addr (e.g. "127.0.0.1:0") and serves until ctx is done or Close is
// called. Addr reports the bound address.
func Start(ctx context.Context, addr string) (*Server, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return Serve(ctx, ln), nil
}

// Serve echoes on ln (a TLS listener works too: the handshake happens on the first read)
// until ctx is done or Close is called; it owns ln from then on.
func Serve(ctx context.Context, ln net.Listener) *Server {
	s := &Server{ln: ln, conns: map[net.Conn]struct{}{}}
	ctx, s.stop = context.WithCancel(ctx)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		<-ctx.Done()
		s.shut()
	}()
	s.wg.Add(1)
	go s.accept()
	return s
}

// Addr is the bound address, host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server: the listener and every open connection close, and Close returns
// once all of the server's goroutines have ended.
func (s *Server) Close() error {
	s.stop()
	s.wg.Wait()
	return nil
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		if !s.track(c) {
			c.Close()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			echo(c)
		}()
	}
}

// echo copies c back to itself; after the client's EOF it half-closes, so that a client
// waiting for the end of the answer gets it.
func echo(c net.Conn) {
	if _, err := io.Copy(c, c); err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// shut closes the listener and every open connection, which ends accept and each echo.
func (s *Server) shut() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
}
