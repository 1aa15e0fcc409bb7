package certs

import (
	"bytes"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"software.sslmate.com/src/go-pkcs12"

	"maintproxy/config"
)

// decodePKCS12 opens a PKCS#12 file with the password's first line and returns its chain,
// leaf first, and the pair to serve. The file may list its certificates in any order: the
// leaf is the one whose public key is the file's key, and the others follow issuer by
// issuer. Errors never contain the password.
//
// golang.org/x/crypto/pkcs12 is frozen and reads only the legacy 3DES/RC2 encryption with
// a SHA-1 MAC; OpenSSL 3 and current Windows export AES-256 (PBES2) with a SHA-256 MAC,
// which software.sslmate.com/src/go-pkcs12 reads.
func decodePKCS12(f config.Files, data, password []byte) ([]*x509.Certificate, tls.Certificate, error) {
	pw, _, _ := bytes.Cut(password, []byte("\n"))
	key, first, rest, err := pkcs12.DecodeChain(data, strings.TrimSuffix(string(pw), "\r"))
	switch {
	case errors.Is(err, pkcs12.ErrIncorrectPassword), errors.Is(err, pkcs12.ErrDecryption):
		if f.PKCS12PasswordFile == "" {
			return nil, tls.Certificate{}, fmt.Errorf("tls.files.pkcs12_password_file: %s needs a password; put it in a file and name it here", f.PKCS12)
		}
		return nil, tls.Certificate{}, fmt.Errorf("tls.files.pkcs12_password_file: the password in %s does not open %s", f.PKCS12PasswordFile, f.PKCS12)
	case err != nil:
		return nil, tls.Certificate{}, fmt.Errorf("tls.files.pkcs12: %s: %w", f.PKCS12, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, tls.Certificate{}, fmt.Errorf("tls.files.pkcs12: %s: unsupported key type %T", f.PKCS12, key)
	}
	chain := orderChain(signer.Public(), append([]*x509.Certificate{first}, rest...))
	if chain == nil {
		return nil, tls.Certificate{}, fmt.Errorf("tls.files.pkcs12: %s: no certificate in it belongs to its private key", f.PKCS12)
	}
	pair := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		pair.Certificate = append(pair.Certificate, c.Raw)
	}
	return chain, pair, nil
}

// orderChain returns certs as a chain: the certificate for pub first, then its issuer,
// that one's issuer and so on; certificates that are not part of it are left out. Nil if
// no certificate is for pub.
func orderChain(pub crypto.PublicKey, certs []*x509.Certificate) []*x509.Certificate {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	var chain []*x509.Certificate
	for _, c := range certs {
		if k, ok := c.PublicKey.(equaler); ok && k.Equal(pub) {
			chain = append(chain, c)
			break
		}
	}
	if chain == nil {
		return nil
	}
	used := map[*x509.Certificate]bool{chain[0]: true}
	for len(chain) < len(certs) {
		last := chain[len(chain)-1]
		if isSelfSigned(last) {
			break
		}
		var next *x509.Certificate
		for _, c := range certs {
			if !used[c] && bytes.Equal(c.RawSubject, last.RawIssuer) && last.CheckSignatureFrom(c) == nil {
				next = c
				break
			}
		}
		if next == nil {
			break
		}
		used[next] = true
		chain = append(chain, next)
	}
	return chain
}
