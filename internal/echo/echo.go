// Package echo is the TCP echo target of the tests, the benchmarks and the demo: every
// byte a client sends comes back, and a client's half-close is answered with one.
//
// It imports only the standard library and internal/conns, so that any package's own
// tests can use it without an import cycle.
package echo

import (
	"context"
	"io"
	"net"

	"maintproxy/internal/conns"
)

// Server echoes every connection accepted on its listener until it is closed.
type Server struct {
	srv  *conns.Server
	stop context.CancelFunc
	done chan struct{}
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
	s := &Server{srv: conns.Serve(ln, 0, echo), done: make(chan struct{})}
	ctx, s.stop = context.WithCancel(ctx)
	go func() {
		defer close(s.done)
		<-ctx.Done()
		s.srv.Close()
	}()
	return s
}

// Addr is the bound address, host:port.
func (s *Server) Addr() string { return s.srv.Addr() }

// Close stops the server: the listener and every open connection close, and Close returns
// once all of the server's goroutines have ended.
func (s *Server) Close() error {
	s.stop()
	<-s.done
	return nil
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
