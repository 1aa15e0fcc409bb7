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
	buf := make([]byte, 3+len(body))
	buf[0] = Version
	binary.BigEndian.PutUint16(buf[1:3], uint16(len(body)))
	copy(buf[3:], body)
	_, err = w.Write(buf)
	return err
}

func readRequest(r io.Reader) (Request, error) {
	var hdr [3]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Request{}, err
	}
	if hdr[0] != Version {
		return Request{}, fmt.Errorf("%w %d", ErrVersion, hdr[0])
	}
	n := binary.BigEndian.Uint16(hdr[1:3])
	if n > maxRequestBytes {
		return Request{}, fmt.Errorf("peer: request of %d bytes is too large", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
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
	buf := make([]byte, 4+len(msg))
	buf[0] = Version
	buf[1] = byte(r.Code)
	binary.BigEndian.PutUint16(buf[2:4], uint16(len(msg)))
	copy(buf[4:], msg)
	_, err := w.Write(buf)
	return err
}

func readReply(r io.Reader) (Reply, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return Reply{}, err
	}
	if hdr[0] != Version {
		return Reply{}, fmt.Errorf("%w %d", ErrVersion, hdr[0])
	}
	n := binary.BigEndian.Uint16(hdr[2:4])
	if n > maxMessageBytes {
		return Reply{}, fmt.Errorf("peer: reply message of %d bytes is too large", n)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return Reply{}, err
	}
	return Reply{Code: Code(hdr[1]), Message: string(msg)}, nil
}
