package tunnel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
)

// Version is the protocol version of the hello (Policy.Version) and of the agent's reply.
const Version = 1

// Stream header versions. An agent reports the highest it reads (Policy.Header); the
// broker writes the highest both know, so an agent of an earlier release still gets v1.
const (
	// HeaderV1 is the 24-byte header: port, co-located IPv4, session id.
	HeaderV1 = 1
	// HeaderV2 is HeaderV1 followed by tagged fields: who asked (user, client address) and
	// the network system the agent reaches on the broker's behalf.
	HeaderV2 = 2
	// HeaderVersion is the highest stream header version this package reads and writes.
	HeaderVersion = HeaderV2
)

const (
	headerLen     = 24
	replyLen      = 4
	maxReplyMsg   = 1024
	maxHelloBytes = 64 << 10
	// maxFieldsLen bounds a v2 header's tagged fields; three fields of at most 255 bytes
	// fit, with room for fields of later versions.
	maxFieldsLen = 2048
)

// Tags of a v2 header's fields (1 byte tag, 1 byte length, value). An agent skips tags it
// does not know, so later versions may add fields.
const (
	tagUser   = 1 // UTF-8 name of the account or person the broker authenticated
	tagClient = 2 // the technician's address as the broker saw it (host:port)
	tagSystem = 3 // name of a network system this agent reaches for the broker (network.systems)
)

// maxFieldLen is the longest value of one field; longer values are cut.
const maxFieldLen = 255

// Header opens one tunnel: which port to reach, on the server itself (IP invalid) or on a
// co-located server.
type Header struct {
	Port    uint16
	IP      netip.Addr // IPv4 of a co-located server; the zero Addr means the server itself
	Session [16]byte
	// User is who the broker let in (the account, or a person's login); for the agent's
	// audit. Sent from HeaderV2 on.
	User string
	// Client is the technician's address as the broker saw it. Sent from HeaderV2 on.
	Client string
	// System, when set, names a system of the agent's network.systems (a secondary without
	// an agent of its own): the target is that system, reached through this agent. Needs
	// HeaderV2.
	System string
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
	CodeNoSuchSystem      Code = 9 // Header.System is not in the agent's network.systems
)

// String names the code in audit records.
func (c Code) String() string {
	switch c {
	case CodeOK:
		return "ok"
	case CodeRemoteAccessOff:
		return "remote_access_off"
	case CodeServiceNotOffered:
		return "service_not_offered"
	case CodeColocatedOff:
		return "colocated_off"
	case CodeNoTunnelEntry:
		return "no_tunnel_entry"
	case CodeRefused:
		return "target_refused"
	case CodeUnreachable:
		return "target_unreachable"
	case CodeTimeout:
		return "target_timeout"
	case CodeBadRequest:
		return "bad_request"
	case CodeNoSuchSystem:
		return "no_such_system"
	}
	return "code_" + strconv.Itoa(int(c))
}

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
	ErrNoSuchSystem      = errors.New("this system is not reached through the customer's primary server")
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
	CodeNoSuchSystem:      ErrNoSuchSystem,
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

// marshal encodes h as a HeaderV1 header (User, Client and System are not sent).
func (h Header) marshal() []byte { return h.marshalVersion(HeaderV1) }

// marshalVersion encodes h in the given header version (HeaderV1 or HeaderV2).
func (h Header) marshalVersion(v int) []byte {
	b := make([]byte, headerLen, headerLen+2+3*(2+maxFieldLen))
	b[0] = byte(v)
	binary.BigEndian.PutUint16(b[2:4], h.Port)
	if h.IP.Is4() {
		ip := h.IP.As4()
		copy(b[4:8], ip[:])
	}
	copy(b[8:24], h.Session[:])
	if v < HeaderV2 {
		return b
	}
	b = append(b, 0, 0)
	for _, f := range []struct {
		tag byte
		val string
	}{{tagUser, h.User}, {tagClient, h.Client}, {tagSystem, h.System}} {
		if f.val == "" {
			continue
		}
		val := f.val[:min(len(f.val), maxFieldLen)]
		b = append(b, f.tag, byte(len(val)))
		b = append(b, val...)
	}
	binary.BigEndian.PutUint16(b[headerLen:headerLen+2], uint16(len(b)-headerLen-2))
	return b
}

// readHeader reads a HeaderV1 or HeaderV2 header.
func readHeader(r io.Reader) (Header, error) {
	var b [headerLen]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return Header{}, err
	}
	if b[0] != HeaderV1 && b[0] != HeaderV2 {
		return Header{}, fmt.Errorf("stream header version %d, want %d-%d", b[0], HeaderV1, HeaderVersion)
	}
	h := Header{Port: binary.BigEndian.Uint16(b[2:4])}
	if ip := netip.AddrFrom4([4]byte(b[4:8])); !ip.IsUnspecified() {
		h.IP = ip
	}
	copy(h.Session[:], b[8:24])
	if b[0] >= HeaderV2 {
		if err := readFields(r, &h); err != nil {
			return h, err
		}
	}
	if h.Port == 0 {
		return h, errors.New("stream header has port 0")
	}
	return h, nil
}

// readFields reads a v2 header's length-prefixed tagged fields into h.
func readFields(r io.Reader, h *Header) error {
	var n [2]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return err
	}
	size := int(binary.BigEndian.Uint16(n[:]))
	if size > maxFieldsLen {
		return fmt.Errorf("stream header fields of %d bytes (at most %d)", size, maxFieldsLen)
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(r, buf); err != nil {
		return err
	}
	for len(buf) > 0 {
		if len(buf) < 2 || len(buf) < 2+int(buf[1]) {
			return errors.New("stream header field cut short")
		}
		tag, val := buf[0], string(buf[2:2+int(buf[1])])
		buf = buf[2+int(buf[1]):]
		switch tag {
		case tagUser:
			h.User = val
		case tagClient:
			h.Client = val
		case tagSystem:
			h.System = val
		}
	}
	return nil
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
