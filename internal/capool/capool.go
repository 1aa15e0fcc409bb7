// Package capool loads the PEM root certificates named by a setting (the agent's ca_file,
// the client's --cacert) into a pool that verifies a TLS peer instead of the system roots.
// It imports only the standard library so that the technician's client can use it.
package capool

import (
	"crypto/x509"
	"fmt"
	"os"
)

// Load reads path and returns a pool of the PEM certificates it holds. A file without any
// certificate is an error, since verifying against an empty pool fails every handshake.
func Load(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
