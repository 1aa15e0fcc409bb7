package gate

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Conn is a connection admitted by a gate listener (under the TLS layer, for TLS
// listeners). Closing it gives its place back. Every Write must make progress within the
// gate's WriteProgress: the write deadline is renewed before each write, never later than
// one the user set.
type Conn struct {
	net.Conn
	accepted time.Time
	progress time.Duration
	release  func()
	once     sync.Once
	// userDeadline is the write deadline set through SetDeadline or SetWriteDeadline
	// (Unix nanoseconds; 0: none).
	userDeadline atomic.Int64
}

// Accepted is when the listener accepted the connection.
func (c *Conn) Accepted() time.Time { return c.accepted }

// Write writes b under the progress deadline.
func (c *Conn) Write(b []byte) (int, error) {
	if c.progress > 0 {
		d := time.Now().Add(c.progress)
		if u := c.userDeadline.Load(); u != 0 && u < d.UnixNano() {
			d = time.Unix(0, u)
		}
		c.Conn.SetWriteDeadline(d)
	}
	return c.Conn.Write(b)
}

// SetDeadline sets both deadlines; the write one is kept for Write.
func (c *Conn) SetDeadline(t time.Time) error {
	c.keepWriteDeadline(t)
	return c.Conn.SetDeadline(t)
}

// SetWriteDeadline sets the write deadline and keeps it for Write.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.keepWriteDeadline(t)
	return c.Conn.SetWriteDeadline(t)
}

func (c *Conn) keepWriteDeadline(t time.Time) {
	if t.IsZero() {
		c.userDeadline.Store(0)
	} else {
		c.userDeadline.Store(t.UnixNano())
	}
}

// SyscallConn gives access to the socket (for socket options), when there is one.
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// CloseWrite shuts the write side of a TCP connection.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// Close closes the connection and gives its place back (once).
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// AcceptedAt returns when a gate listener accepted c: a *Conn, or a connection over one
// (a *tls.Conn, or a wrapper that embeds its net.Conn or has a NetConn method).
func AcceptedAt(c net.Conn) (time.Time, bool) {
	for range 4 { // the layers a gate listener can put over its *Conn
		switch x := c.(type) {
		case *Conn:
			return x.accepted, true
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return time.Time{}, false
		}
	}
	return time.Time{}, false
}

type acceptedKey struct{}

// ConnContext is for http.Server.ConnContext: it puts the time the connection was
// accepted into every request's context, for Accepted.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if t, ok := AcceptedAt(c); ok {
		return context.WithValue(ctx, acceptedKey{}, t)
	}
	return ctx
}

// Accepted returns when the connection of a request was accepted, when its server's
// ConnContext is ConnContext and its listener a gate's.
func Accepted(ctx context.Context) (time.Time, bool) {
	t, ok := ctx.Value(acceptedKey{}).(time.Time)
	return t, ok
}
