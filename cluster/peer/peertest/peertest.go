// Package peertest helps tests probe a broker's peer port.
package peertest

import (
	"crypto/tls"
	"errors"
	"os"
	"time"

	"maintproxy/cluster/peer"
)

// LinkError dials a broker's peer port as a peer would, presenting certs (none when
// empty), and returns what stopped it: the handshake's error, or the first read's (TLS 1.3
// refuses a client certificate after the client's handshake is done). nil means the
// broker kept the link open for 5 seconds.
func LinkError(addr string, certs ...tls.Certificate) error {
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, Certificates: certs,
		NextProtos: []string{peer.ALPN}, MinVersion: tls.VersionTLS13})
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil
	}
	return err
}
