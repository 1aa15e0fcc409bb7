package peer

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"maintproxy/internal/conns"
	"maintproxy/internal/linkbatch"
)

// Server is the holder side of peer links: it accepts other brokers' links and hands each
// stream's Request to Handle.
//
// A connection is trusted only if its client certificate's fingerprint is published in the
// cluster directory (Trust); anything else fails in the TLS handshake, before a session
// exists, so a stranger can never open a stream.
type Server struct {
	// Identity is this broker's peer certificate.
	Identity *Identity
	// Trust maps a certificate fingerprint to the node that published it.
	Trust func(fingerprint string) (node string, ok bool)
	// Handle serves one stream: it checks the request, calls s.Reply once, and on CodeOK
	// relays bytes until both directions end. ctx ends when the link or the Server closes.
	// The Server replies CodeNoAnswer if Handle returns without replying, and closes s.
	Handle func(ctx context.Context, req Request, s *Stream)
	Tuning Tuning
	// Logger receives refused connections and link errors; default discards.
	Logger *slog.Logger

	mu       sync.Mutex
	closed   bool
	ctx      context.Context
	cancel   context.CancelFunc
	lns      map[net.Listener]struct{}
	conns    conns.Set
	wg       sync.WaitGroup
	initOnce sync.Once
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.lns = map[net.Listener]struct{}{}
		if s.Logger == nil {
			s.Logger = slog.New(slog.DiscardHandler)
		}
	})
}

// Serve accepts links on ln until Close; it closes ln. It returns ErrClosed after Close.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	if s.Identity == nil || s.Trust == nil || s.Handle == nil {
		ln.Close()
		return errors.New("peer: Server needs Identity, Trust and Handle")
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrClosed
	}
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.lns, ln)
		s.mu.Unlock()
		ln.Close()
	}()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Out of descriptors and the like: back off briefly instead of spinning.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(delay):
				case <-s.ctx.Done():
					return ErrClosed
				}
				continue
			}
			return err
		}
		delay = 0
		if !s.conns.Add(c, 0) {
			c.Close()
			return ErrClosed
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.conns.Remove(c)
			s.serveConn(c)
		}()
	}
}

func (s *Server) tlsConfig() *tls.Config {
	c := baseTLS(s.Identity)
	// Any certificate is accepted by the TLS layer (it still checks the proof of key
	// possession); VerifyConnection then admits only published fingerprints.
	c.ClientAuth = tls.RequireAnyClientCert
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		fp, err := peerFingerprint(cs)
		if err != nil {
			return err
		}
		if _, ok := s.Trust(fp); !ok {
			return fmt.Errorf("%w: %s", ErrUntrusted, fp)
		}
		return nil
	}
	return c
}

// serveConn runs one link: handshake, then a session whose streams are served until
// it ends.
func (s *Server) serveConn(raw net.Conn) {
	sock := &linkbatch.Sock{Conn: raw}
	tc := tls.Server(sock, s.tlsConfig())
	hctx, cancel := context.WithTimeout(s.ctx, s.Tuning.handshake())
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		s.Logger.Warn("peer link refused", "remote", raw.RemoteAddr().String(), "err", err)
		return
	}
	fp, _ := peerFingerprint(tc.ConnectionState())
	node, ok := s.Trust(fp)
	if !ok {
		return
	}
	sess, err := newSession(newLinkConn(tc, sock), false, s.Tuning)
	if err != nil {
		return
	}
	defer sess.Close()
	// Handlers learn through ctx that the link is gone, so their tunnels end promptly.
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	go func() {
		select {
		case <-sess.Done():
		case <-ctx.Done():
		}
		cancel()
		sess.Close()
	}()
	s.Logger.Info("peer link up", "from", node, "remote", raw.RemoteAddr().String())
	var streams sync.WaitGroup
	defer streams.Wait()
	streams.Add(1)
	go func() {
		defer streams.Done()
		sess.measure()
	}()
	for {
		st, err := sess.Accept(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.Logger.Info("peer link down", "from", node, "err", err)
			}
			return
		}
		ps := sess.stream(st, true)
		streams.Add(1)
		go func() {
			defer streams.Done()
			s.serveStream(ctx, node, ps)
		}()
	}
}

func (s *Server) serveStream(ctx context.Context, node string, ps *Stream) {
	defer ps.Close()
	st := ps.st
	st.SetReadDeadline(time.Now().Add(s.Tuning.header()))
	req, err := readRequest(ps)
	st.SetReadDeadline(time.Time{})
	if err != nil {
		ps.Reply(Reply{Code: CodeBadRequest, Message: err.Error()})
		return
	}
	req.From = node
	s.Handle(ctx, req, ps)
	if !ps.answered() {
		ps.Reply(Reply{Code: CodeNoAnswer, Message: "the holder broker did not answer"})
	}
}

// Close stops accepting, closes every link (their handlers' contexts end) and waits for the
// handlers to return.
func (s *Server) Close() error {
	s.init()
	// Cancelled first, so that Serve, woken by its listener's closing, sees it and
	// returns ErrClosed rather than the listener's error.
	s.cancel()
	s.mu.Lock()
	s.closed = true
	for ln := range s.lns {
		ln.Close()
	}
	s.mu.Unlock()
	s.conns.Close()
	s.wg.Wait()
	return nil
}
