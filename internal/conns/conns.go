// Package conns keeps track of a server's open connections, so that closing the server
// closes them all, and runs the plain accept loop that most small servers need: one
// goroutine per connection, all ended before Close returns.
//
// It imports only the standard library, so that the demo, the echo target and any
// package's tests can use it without an import cycle.
package conns

import (
	"net"
	"sync"
)

// Set is the open connections of one server. The zero value is ready.
type Set struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// Add records c; it reports false, leaving c alone, once Close was called or when limit
// (if above 0) connections are already open.
func (s *Set) Add(c net.Conn, limit int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || (limit > 0 && len(s.conns) >= limit) {
		return false
	}
	if s.conns == nil {
		s.conns = map[net.Conn]struct{}{}
	}
	s.conns[c] = struct{}{}
	return true
}

// Remove forgets c and closes it.
func (s *Set) Remove(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// Close closes every open connection; Add refuses from then on.
func (s *Set) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
}

// Server runs a handler for each connection accepted on its listener.
type Server struct {
	ln    net.Listener
	limit int
	open  Set
	wg    sync.WaitGroup
}

// Serve accepts on ln until Close and runs handle for each connection in a goroutine of
// its own; the connection is closed when handle returns. With limit above 0 a connection
// beyond limit open ones is closed at once. Serve owns ln from then on.
func Serve(ln net.Listener, limit int, handle func(net.Conn)) *Server {
	s := &Server{ln: ln, limit: limit}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if !s.open.Add(c, s.limit) {
				c.Close()
				continue
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer s.open.Remove(c)
				handle(c)
			}()
		}
	}()
	return s
}

// Addr is the bound address, host:port.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close closes the listener and every open connection and returns once every handler has
// returned. A handler that blocks on something other than its connection must watch for
// that itself.
func (s *Server) Close() error {
	err := s.ln.Close()
	s.open.Close()
	s.wg.Wait()
	return err
}
