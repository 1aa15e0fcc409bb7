package tunnel

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"testing"
	"time"
)

// splitConn passes only the first hold bytes of each Write on at once; release sends the
// rest, so a test can leave half a TLS record in the peer's socket.
type splitConn struct {
	net.Conn
	hold int
	rest []byte
}

func (c *splitConn) Write(b []byte) (int, error) {
	if c.hold > 0 && len(b) > c.hold {
		c.rest = append(c.rest, b[c.hold:]...)
		b = b[:c.hold]
		c.hold = 0
	}
	if _, err := c.Conn.Write(b); err != nil {
		return 0, err
	}
	return len(b) + len(c.rest), nil
}

func (c *splitConn) release() error {
	_, err := c.Conn.Write(c.rest)
	c.rest = nil
	return err
}

// tlsPair returns a TLS server connection accepted on Listener and made by BatchWrites, and
// its client, whose socket is under client's control.
func tlsPair(t *testing.T) (*batchedTLS, *tls.Conn, *splitConn) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "t.test"}, DNSNames: []string{"t.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tln := tls.NewListener(Listener(ln), &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := tln.Accept()
		if err == nil {
			err = c.(*tls.Conn).Handshake()
		}
		ch <- accepted{c, err}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc := &splitConn{Conn: raw}
	pool := x509.NewCertPool()
	cert, _ := x509.ParseCertificate(der)
	pool.AddCert(cert)
	client := tls.Client(sc, &tls.Config{RootCAs: pool, ServerName: "t.test"})
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	a := <-ch
	if a.err != nil {
		t.Fatal(a.err)
	}
	t.Cleanup(func() { client.Close(); a.c.Close() })
	bt, ok := BatchWrites(a.c).(*batchedTLS)
	if !ok {
		t.Fatal("BatchWrites did not batch a connection accepted on Listener")
	}
	return bt, client, sc
}

// TestReadMore: ReadMore hands over the records that have arrived without waiting, reports
// (0, nil) when nothing has, and leaves half a record intact for the next read.
func TestReadMore(t *testing.T) {
	srv, client, sc := tlsPair(t)
	want := bytes.Repeat([]byte("0123456789abcdef"), 4<<10) // four full records
	if _, err := client.Write(want); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 0, len(want))
	buf := make([]byte, len(want))
	n, err := srv.Read(buf)
	if err != nil || n > maxRecord {
		t.Fatalf("first read: %d bytes, %v (want at most one record)", n, err)
	}
	got = append(got, buf[:n]...)
	// Loopback delivers a write before it returns: everything is in the socket already.
	for len(got) < len(want) {
		n, err := srv.ReadMore(buf)
		if err != nil || n == 0 {
			t.Fatalf("ReadMore after %d of %d bytes: %d, %v", len(got), len(want), n, err)
		}
		got = append(got, buf[:n]...)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("bytes differ")
	}

	start := time.Now()
	if n, err := srv.ReadMore(buf); n != 0 || err != nil {
		t.Fatalf("ReadMore with nothing sent: %d, %v", n, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("ReadMore waited %v", d)
	}

	// Half a record: ReadMore takes it off the socket and returns nothing; once the rest
	// arrives a plain Read returns the whole record.
	sc.hold = 100
	msg := bytes.Repeat([]byte("half a record, then the rest. "), 30)
	if _, err := client.Write(msg); err != nil {
		t.Fatal(err)
	}
	if n, err := srv.ReadMore(buf); n != 0 || err != nil {
		t.Fatalf("ReadMore with half a record: %d, %v", n, err)
	}
	if err := sc.release(); err != nil {
		t.Fatal(err)
	}
	srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err = srv.Read(buf)
	if err != nil || !bytes.Equal(buf[:n], msg) {
		t.Fatalf("read after ReadMore: %d bytes, %v", n, err)
	}

	// The end of the stream is reported as such.
	client.CloseWrite()
	var rerr error
	for deadline := time.Now().Add(10 * time.Second); rerr == nil && time.Now().Before(deadline); {
		_, rerr = srv.ReadMore(buf)
	}
	if rerr != io.EOF {
		t.Fatalf("ReadMore after close_notify: %v, want EOF", rerr)
	}
}
