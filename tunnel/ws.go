package tunnel

// The agent link's websocket (RFC 6455): the handshake on both ends and the framing of the
// one byte stream the multiplexed session (package mux) runs over. Only what the link
// needs is spoken — binary data frames (fragmented or not), ping, pong and close, and text
// messages (the agent's policy updates, only where the broker offered them); no extensions
// — and the peer may be any RFC 6455 implementation (agents and brokers of earlier
// versions use another library).
//
// Writes are batched (linkbatch.Writer): the session's frames are appended to one pooled
// buffer and a flusher goroutine, started only while there is something to send, writes
// the buffer as one websocket frame with one call into TLS. While it writes, the next
// frames collect behind it, so under load each TLS write carries up to linkbatch.MaxBatch
// bytes in full records, and an idle link holds no write buffer at all.

import (
	"bufio"
	"crypto/sha1"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"maintproxy/internal/linkbatch"
)

const (
	wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xa

	maxControlPayload = 125
	// headerRoom is reserved in front of every batch for the frame header: 2 bytes, 8 of
	// extended length, 4 of mask key.
	headerRoom = 14
	// closeWait bounds how long Close waits for queued frames to leave.
	closeWait = 2 * time.Second
)

// errProtocol is a websocket protocol violation by the peer.
var errProtocol = errors.New("websocket protocol error")

// wsAccept returns the Sec-WebSocket-Accept value for a key.
func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// acceptWS completes the server side of the handshake on an authenticated request and
// takes the connection over. On error it has answered the request.
func acceptWS(w http.ResponseWriter, r *http.Request, extraHeaders string) (*wsConn, error) {
	key := r.Header.Get("Sec-WebSocket-Key")
	raw, _ := base64.StdEncoding.DecodeString(key)
	switch {
	case r.Method != http.MethodGet:
		http.Error(w, "agents connect with GET", http.StatusMethodNotAllowed)
		return nil, errors.New("method is not GET")
	case !headerHasToken(r.Header, "Connection", "upgrade") || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket"):
		http.Error(w, "this endpoint is for maintagent websocket connections only", http.StatusUpgradeRequired)
		return nil, errors.New("not a websocket upgrade")
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		w.Header().Set("Sec-WebSocket-Version", "13")
		http.Error(w, "websocket version 13 required", http.StatusUpgradeRequired)
		return nil, errors.New("websocket version is not 13")
	case len(raw) != 16:
		http.Error(w, "bad Sec-WebSocket-Key", http.StatusBadRequest)
		return nil, errors.New("bad Sec-WebSocket-Key")
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot take the connection over", http.StatusInternalServerError)
		return nil, err
	}
	// The server's header timeout must not cut the session; keepalives guard it instead.
	conn.SetDeadline(time.Time{})
	tuneAccepted(conn)
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + wsAccept(key) + "\r\n" + extraHeaders + "\r\n"
	if _, err := io.WriteString(conn, resp); err != nil {
		conn.Close()
		return nil, err
	}
	var sock *batchConn
	if tc, ok := conn.(*tls.Conn); ok {
		sock, _ = tc.NetConn().(*batchConn)
	}
	return newWSConn(conn, conn, brw.Reader, sock, false), nil
}

// tuneAccepted gives an accepted agent link the socket options the agent sets when it dials.
func tuneAccepted(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if bc, ok := c.(*batchConn); ok {
		c = bc.Conn
	}
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			tuneLinkSocket("", "", rc)
		}
	}
}

// clientKey returns a fresh Sec-WebSocket-Key.
func clientKey() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	return base64.StdEncoding.EncodeToString(b[:])
}

// checkUpgrade verifies the broker's 101 answer to a request with key and returns the
// connection.
func checkUpgrade(resp *http.Response, key string) (io.ReadWriteCloser, error) {
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	switch {
	case resp.StatusCode != http.StatusSwitchingProtocols:
		return nil, fmt.Errorf("the broker answered %s, not 101 Switching Protocols", resp.Status)
	case !headerHasToken(resp.Header, "Connection", "upgrade") || !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket"):
		return nil, errors.New("the broker's answer is not a websocket upgrade")
	case resp.Header.Get("Sec-WebSocket-Accept") != wsAccept(key):
		return nil, errors.New("the broker's Sec-WebSocket-Accept does not match")
	case resp.Header.Get("Sec-WebSocket-Extensions") != "":
		return nil, errors.New("the broker chose a websocket extension that was not offered")
	case !ok:
		return nil, errors.New("the HTTP client gave no connection for the upgrade")
	}
	return rwc, nil
}

// wsConn is one end of the agent link: an io.ReadWriteCloser of the bytes carried in
// binary websocket messages, for the session.
type wsConn struct {
	conn   io.WriteCloser // the TLS connection
	client bool           // a client masks what it sends; a server requires masked frames

	// Reader state; only the session's receive goroutine reads.
	rd        io.Reader // conn, after any bytes buffered during the handshake
	left      int64     // payload bytes left in the current data frame
	masked    bool
	key       [4]byte
	keyPos    int
	inMessage bool // a fragmented data message is in progress
	hdr       [14]byte
	ctl       [maxControlPayload]byte

	// onText, if set before the reader starts, receives each text message (whole, at most
	// maxTextMessage bytes), in the reader's goroutine: it must not block. Without it a text
	// message is a protocol error.
	onText func(msg []byte)

	// w queues what is sent: control frames, then a batch of the session's frames behind
	// headerRoom, sent as one binary frame. The close frame is its last control frame.
	w *linkbatch.Writer

	// Closing; independent of w's state, whose lock it never holds.
	mu         sync.Mutex
	closed     bool
	connClosed bool
	closeHook  func() // runs once, after the connection is closed
}

// onClose makes f run once the connection has been closed, or now if it already is. f
// must not call into the session (it may run inside the session's Close).
func (c *wsConn) onClose(f func()) {
	c.mu.Lock()
	if !c.connClosed {
		c.closeHook = f
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	f()
}

// closeConn closes the connection and runs the close hook once.
func (c *wsConn) closeConn() error {
	err := c.conn.Close()
	c.mu.Lock()
	c.connClosed = true
	f := c.closeHook
	c.closeHook = nil
	c.mu.Unlock()
	if f != nil {
		f()
	}
	return err
}

// newWSConn returns the link over conn, read through rd after what br holds (br may be
// nil); sock is the TCP connection under conn if it can batch (else nil).
func newWSConn(conn io.WriteCloser, rd io.Reader, br *bufio.Reader, sock *batchConn, client bool) *wsConn {
	c := &wsConn{conn: conn, client: client, rd: rd}
	if br != nil && br.Buffered() > 0 {
		c.rd = &prefixReader{br: br, r: rd}
	}
	c.w = linkbatch.NewWriter(sock, headerRoom, c.send)
	return c
}

// prefixReader returns the bytes a bufio.Reader already holds, then reads r directly.
type prefixReader struct {
	br *bufio.Reader
	r  io.Reader
}

func (p *prefixReader) Read(b []byte) (int, error) {
	if p.br != nil {
		if n := p.br.Buffered(); n > 0 {
			return p.br.Read(b[:min(len(b), n)])
		}
		p.br = nil
	}
	return p.r.Read(b)
}

// Read returns payload bytes of binary messages, answering control frames on the way.
func (c *wsConn) Read(p []byte) (int, error) {
	for c.left == 0 {
		if err := c.nextFrame(); err != nil {
			return 0, err
		}
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.rd.Read(p)
	if n > 0 {
		if c.masked {
			c.keyPos = mask(p[:n], c.key, c.keyPos)
		}
		c.left -= int64(n)
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF // the connection ended inside a frame
	}
	return n, err
}

// nextFrame reads frame headers until a data frame starts; control frames are handled
// here. A close frame is answered and ends the stream with io.EOF.
func (c *wsConn) nextFrame() error {
	h := c.hdr[:]
	if _, err := io.ReadFull(c.rd, h[:2]); err != nil {
		return err
	}
	fin, op := h[0]&0x80 != 0, h[0]&0x0f
	masked, n := h[1]&0x80 != 0, int64(h[1]&0x7f)
	if h[0]&0x70 != 0 {
		return fmt.Errorf("%w: reserved bits set (no extension was agreed)", errProtocol)
	}
	if masked == c.client {
		return fmt.Errorf("%w: frame masking is wrong for this side", errProtocol)
	}
	switch n {
	case 126:
		if _, err := io.ReadFull(c.rd, h[2:4]); err != nil {
			return err
		}
		n = int64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		if _, err := io.ReadFull(c.rd, h[2:10]); err != nil {
			return err
		}
		n = int64(binary.BigEndian.Uint64(h[2:10]))
		if n < 0 {
			return fmt.Errorf("%w: frame length out of range", errProtocol)
		}
	}
	if masked {
		if _, err := io.ReadFull(c.rd, c.key[:]); err != nil {
			return err
		}
	}
	c.masked, c.keyPos = masked, 0
	switch op {
	case opBinary, opContinuation:
		if (op == opBinary) == c.inMessage {
			return fmt.Errorf("%w: unexpected continuation or unfinished message", errProtocol)
		}
		c.inMessage = !fin
		c.left = n
		return nil
	case opPing, opPong, opClose:
		if !fin || n > maxControlPayload {
			return fmt.Errorf("%w: fragmented or oversized control frame", errProtocol)
		}
		body := c.ctl[:n]
		if _, err := io.ReadFull(c.rd, body); err != nil {
			return err
		}
		if masked {
			mask(body, c.key, 0)
		}
		switch op {
		case opPing:
			c.queueControl(opPong, body)
		case opClose:
			// Echo the status code, as the protocol asks, and see it sent before ending:
			// the peer waits for it.
			code := body[:min(len(body), 2)]
			c.queueControl(opClose, code)
			c.w.WaitFlushed(closeWait)
			return io.EOF
		}
		return nil
	case opText:
		if c.onText == nil || c.inMessage {
			break
		}
		if !fin || n > maxTextMessage {
			return fmt.Errorf("%w: fragmented or oversized text message", errProtocol)
		}
		body := make([]byte, n)
		if _, err := io.ReadFull(c.rd, body); err != nil {
			return err
		}
		if masked {
			mask(body, c.key, 0)
		}
		c.onText(body)
		return nil
	}
	return fmt.Errorf("%w: opcode %d is not used on this link", errProtocol, op)
}

// maxTextMessage bounds a text message (a policy update).
const maxTextMessage = maxHelloBytes

// sendText queues one text message, whole, between the binary messages (which this end
// never fragments). It returns the sticky write error, if any.
func (c *wsConn) sendText(msg []byte) error {
	return c.w.Control(appendFrame(nil, opText, msg, c.client), false)
}

// queueControl queues a control frame (sent before any queued data); nothing after a close.
func (c *wsConn) queueControl(op byte, payload []byte) {
	var f [headerRoom + maxControlPayload]byte
	c.w.Control(appendFrame(f[:0], op, payload, c.client), op == opClose)
}

// send writes one flush of the writer: control frames, then the batch as one binary frame.
func (c *wsConn) send(ctrl, batch []byte) error {
	if len(ctrl) > 0 {
		if _, err := c.conn.Write(ctrl); err != nil {
			return err
		}
	}
	if batch != nil {
		_, err := c.conn.Write(c.seal(batch))
		return err
	}
	return nil
}

// seal writes the frame header into the room in front of a batch's payload, masks the
// payload if this is the client, and returns the frame.
func (c *wsConn) seal(b []byte) []byte {
	payload := b[headerRoom:]
	var h [headerRoom]byte
	hl := frameHeader(h[:], opBinary, len(payload), c.client)
	start := headerRoom - hl
	copy(b[start:], h[:hl])
	if c.client {
		var key [4]byte
		copy(key[:], h[hl-4:hl])
		mask(payload, key, 0)
	}
	return b[start:]
}

// frameHeader writes a final frame's header for a payload of n bytes into h and returns
// its length; a client's header ends with a fresh mask key.
func frameHeader(h []byte, op byte, n int, client bool) int {
	h[0] = 0x80 | op
	var hl int
	switch {
	case n <= 125:
		h[1] = byte(n)
		hl = 2
	case n <= 0xffff:
		h[1] = 126
		binary.BigEndian.PutUint16(h[2:], uint16(n))
		hl = 4
	default:
		h[1] = 127
		binary.BigEndian.PutUint64(h[2:], uint64(n))
		hl = 10
	}
	if client {
		h[1] |= 0x80
		binary.LittleEndian.PutUint32(h[hl:], rand.Uint32())
		hl += 4
	}
	return hl
}

// appendFrame appends a whole frame (masked if client) to dst.
func appendFrame(dst []byte, op byte, payload []byte, client bool) []byte {
	var h [headerRoom]byte
	hl := frameHeader(h[:], op, len(payload), client)
	dst = append(dst, h[:hl]...)
	start := len(dst)
	dst = append(dst, payload...)
	if client {
		var key [4]byte
		copy(key[:], h[hl-4:hl])
		mask(dst[start:], key, 0)
	}
	return dst
}

// Close sends a close frame after what is queued (waiting at most closeWait), then closes
// the connection. It never waits for the peer's answer.
func (c *wsConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.queueControl(opClose, []byte{0x03, 0xe8}) // 1000: normal closure
	if !c.w.WaitFlushed(closeWait) {
		c.conn.Close() // unblocks a flusher stuck in a write
	}
	c.w.Fail(net.ErrClosed)
	return c.closeConn()
}

// closeNow closes the connection without sending anything more.
func (c *wsConn) closeNow() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.w.Fail(net.ErrClosed)
	return c.closeConn()
}

// maskPattern is a block of the repeated key, XORed in one vectorised call per block.
const maskBlock = 512

// mask XORs b with the key starting at key offset pos and returns the next offset.
func mask(b []byte, key [4]byte, pos int) int {
	if len(b) < 64 {
		for i := range b {
			b[i] ^= key[(pos+i)&3]
		}
		return (pos + len(b)) & 3
	}
	var pat [maskBlock]byte
	for i := 0; i < maskBlock; i += 4 {
		pat[i], pat[i+1], pat[i+2], pat[i+3] = key[pos&3], key[(pos+1)&3], key[(pos+2)&3], key[(pos+3)&3]
	}
	for len(b) >= maskBlock {
		subtle.XORBytes(b[:maskBlock], b[:maskBlock], pat[:])
		b = b[maskBlock:]
	}
	subtle.XORBytes(b, b, pat[:len(b)])
	return (pos + len(b)) & 3
}
