package peer

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Version is the stream header version spoken by this package.
const Version = 1

// Limits on the header frames; a peer that sends more is broken or hostile.
const (
	maxRequestBytes = 4 << 10
	maxMessageBytes = 1 << 10
)

// Request asks the holder broker for one tunnel. It travels as JSON so fields can be added
// without a version bump; unknown fields are ignored.
type Request struct {
	Customer string `json:"customer"`
	System   string `json:"system"`
	// IP is the co-located target's address; empty means the system itself.
	IP   string `json:"ip,omitempty"`
	Port uint16 `json:"port"`
	// Account is the authenticated proxy account; the holder checks its rights again.
	Account string `json:"account"`
	// ClientAddr is the technician's address, for the holder's audit record.
	ClientAddr string `json:"client_addr"`
	// User is who asked (the person's username for a personal login), for the holder's
	// audit record and the agent's; empty from a broker without people.
	User string `json:"user,omitempty"`
	// SessionID picks the agent session seen in presence; the holder may use another one of
	// the same system if that one is gone.
	SessionID string `json:"session_id,omitempty"`
	// Tunnel is the tunnel's id (hex), so that both brokers' records name one tunnel.
	Tunnel string `json:"tunnel,omitempty"`
	// Through, when set, names the system whose agent reaches System for the broker (a
	// secondary without an agent of its own, in the primary's network.systems). A holder
	// of an earlier release ignores it and, holding no agent of System, refuses.
	Through string `json:"through,omitempty"`
	// From is the verified node name of the asking broker. The Server fills it from the TLS
	// certificate; it is never read from the wire.
	From string `json:"-"`
}

// Code is the holder's answer. CodeOK means bytes follow. Codes 1-239 are the caller's: the
// proxy carries its own refusal reasons and the agent's codes through them and maps them
// back to the status a local tunnel would give. Codes 240-255 are this package's.
type Code byte

// Reply codes defined by this package.
const (
	CodeOK Code = 0
	// CodeBadRequest: the holder could not read the request header.
	CodeBadRequest Code = 254
	// CodeNoAnswer: the holder's handler ended without answering.
	CodeNoAnswer Code = 255
)

// Reply is the holder's answer to a Request.
type Reply struct {
	Code    Code
	Message string
}

// Wire format, both big-endian:
//
//	request: version (1 byte) | length (2 bytes) | JSON Request (length bytes, ≤ 4 KiB)
//	reply:   version (1 byte) | code (1 byte) | length (2 bytes) | message (UTF-8, ≤ 1 KiB)
//
// Readers take exactly these bytes (no buffering), so whatever follows is the tunnel's.

// ErrVersion: the other side speaks another header version.
var ErrVersion = errors.New("peer: unsupported header version")

func writeRequest(w io.Writer, r Request) error {
	body, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if len(body) > maxRequestBytes {
		return fmt.Errorf("peer: request of %d bytes is too large", len(body))
	}
	return writeFrame(w, nil, body)
}

func readRequest(r io.Reader) (Request, error) {
	body, err := readFrame(r, nil, maxRequestBytes, "request")
	if err != nil {
		return Request{}, err
	}
	var req Request
	if err := json.Unmarshal(body, &req); err != nil {
		return Request{}, fmt.Errorf("peer: request: %w", err)
	}
	return req, nil
}

func writeReply(w io.Writer, r Reply) error {
	msg := r.Message
	if len(msg) > maxMessageBytes {
		msg = strings.ToValidUTF8(msg[:maxMessageBytes], "")
	}
	return writeFrame(w, []byte{byte(r.Code)}, []byte(msg))
}

func readReply(r io.Reader) (Reply, error) {
	var code [1]byte
	msg, err := readFrame(r, code[:], maxMessageBytes, "reply message")
	if err != nil {
		return Reply{}, err
	}
	return Reply{Code: Code(code[0]), Message: string(msg)}, nil
}

// writeFrame writes one header and its body in a single Write: the version, the fields
// (none for a request, the code for a reply), the body's length, the body.
func writeFrame(w io.Writer, fields, body []byte) error {
	buf := make([]byte, 0, 1+len(fields)+2+len(body))
	buf = append(buf, Version)
	buf = append(buf, fields...)
	buf = binary.BigEndian.AppendUint16(buf, uint16(len(body)))
	buf = append(buf, body...)
	_, err := w.Write(buf)
	return err
}

// readFrame reads what writeFrame wrote: it checks the version, fills fields, and returns
// the body, refusing one longer than limit (what names it in the error).
func readFrame(r io.Reader, fields []byte, limit int, what string) ([]byte, error) {
	hdr := make([]byte, 1+len(fields)+2)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, err
	}
	if hdr[0] != Version {
		return nil, fmt.Errorf("%w %d", ErrVersion, hdr[0])
	}
	copy(fields, hdr[1:])
	n := int(binary.BigEndian.Uint16(hdr[len(hdr)-2:]))
	if n > limit {
		return nil, fmt.Errorf("peer: %s of %d bytes is too large", what, n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return body, nil
}
