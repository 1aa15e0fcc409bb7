package tunnel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// Version is the stream protocol version spoken by this package.
const Version = 1

const (
	headerLen     = 24
	replyLen      = 4
	maxReplyMsg   = 1024
	maxHelloBytes = 64 << 10
)

// Header opens one tunnel: which port to reach, on the server itself (IP invalid) or on a
// co-located server.
type Header struct {
	Port    uint16
	IP      netip.Addr // IPv4 of a co-located server; the zero Addr means the server itself
	Session [16]byte
}

// Code is the agent's answer to a Header.
type Code byte

// Reply codes.
const (
	CodeOK                Code = 0
	CodeRemoteAccessOff   Code = 1 // remote_access.enabled is false
	CodeServiceNotOffered Code = 2 // port not in remote_access.services
	CodeColocatedOff      Code = 3 // colocated.enabled is false
	CodeNoTunnelEntry     Code = 4 // no colocated.tunnels entry for IP and port
	CodeRefused           Code = 5 // target refused the connection
	CodeUnreachable       Code = 6 // no route / host unreachable
	CodeTimeout           Code = 7 // dial timed out
	CodeBadRequest        Code = 8 // malformed or unsupported header
)

// Sentinel errors for refused tunnels; errors.Is matches the error returned by Session.Open.
var (
	ErrRemoteAccessOff   = errors.New("remote access is disabled on this system")
	ErrServiceNotOffered = errors.New("this port is not offered for remote access")
	ErrColocatedOff      = errors.New("co-located server access is disabled on this system")
	ErrNoTunnelEntry     = errors.New("no TCP tunnel entry for this server and port")
	ErrRefused           = errors.New("the target refused the connection")
	ErrUnreachable       = errors.New("the target is unreachable")
	ErrTimeout           = errors.New("the target did not answer in time")
	ErrBadRequest        = errors.New("the agent did not understand the request")
	ErrSessionClosed     = errors.New("the agent's session is closed")
)

var codeErrs = map[Code]error{
	CodeRemoteAccessOff:   ErrRemoteAccessOff,
	CodeServiceNotOffered: ErrServiceNotOffered,
	CodeColocatedOff:      ErrColocatedOff,
	CodeNoTunnelEntry:     ErrNoTunnelEntry,
	CodeRefused:           ErrRefused,
	CodeUnreachable:       ErrUnreachable,
	CodeTimeout:           ErrTimeout,
	CodeBadRequest:        ErrBadRequest,
}

// RefusedError is a tunnel refusal by the agent; it wraps the sentinel for its code.
type RefusedError struct {
	Code Code
	Msg  string
}

// Error is the agent's message, or the sentinel's text when it sent none.
func (e *RefusedError) Error() string {
	if e.Msg == "" {
		return e.Unwrap().Error()
	}
	return e.Msg
}

func (e *RefusedError) Unwrap() error {
	if err, ok := codeErrs[e.Code]; ok {
		return err
	}
	return ErrBadRequest
}

func (h Header) marshal() []byte {
	b := make([]byte, headerLen)
	b[0] = Version
	binary.BigEndian.PutUint16(b[2:4], h.Port)
	if h.IP.Is4() {
		ip := h.IP.As4()
		copy(b[4:8], ip[:])
	}
	copy(b[8:24], h.Session[:])
	return b
}

func readHeader(r io.Reader) (Header, error) {
	var b [headerLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return Header{}, err
	}
	if b[0] != Version {
		return Header{}, fmt.Errorf("stream header version %d, want %d", b[0], Version)
	}
	h := Header{Port: binary.BigEndian.Uint16(b[2:4])}
	if ip := netip.AddrFrom4([4]byte(b[4:8])); !ip.IsUnspecified() {
		h.IP = ip
	}
	copy(h.Session[:], b[8:24])
	if h.Port == 0 {
		return h, errors.New("stream header has port 0")
	}
	return h, nil
}

func writeReply(w io.Writer, code Code, msg string) error {
	if len(msg) > maxReplyMsg {
		msg = msg[:maxReplyMsg]
	}
	b := make([]byte, replyLen+len(msg))
	b[0] = Version
	b[1] = byte(code)
	binary.BigEndian.PutUint16(b[2:4], uint16(len(msg)))
	copy(b[replyLen:], msg)
	_, err := w.Write(b)
	return err
}

// readReply returns nil for ok, a *RefusedError for a refusal, or the read error.
func readReply(r io.Reader) error {
	var b [replyLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return err
	}
	if b[0] != Version {
		return fmt.Errorf("agent reply version %d, want %d", b[0], Version)
	}
	n := binary.BigEndian.Uint16(b[2:4])
	if n > maxReplyMsg {
		return fmt.Errorf("agent reply message of %d bytes", n)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return err
	}
	if Code(b[1]) == CodeOK {
		return nil
	}
	return &RefusedError{Code: Code(b[1]), Msg: string(msg)}
}
