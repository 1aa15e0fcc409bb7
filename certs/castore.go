package certs

import (
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"maintproxy/internal/atomicfile"
)

// CA file names inside data_dir. Key files are written with mode 0600. The current CA
// signs the leaves; the next CA is published beside it during a rollover and takes over
// at the switch; the previous CA stays published after the switch until it expires.
const (
	CACertFile         = "ca.pem"
	CAKeyFile          = "ca-key.pem"
	NextCACertFile     = "ca-next.pem"
	NextCAKeyFile      = "ca-next-key.pem"
	PreviousCACertFile = "ca-previous.pem"
	PreviousCAKeyFile  = "ca-previous-key.pem"
)

var errNoCA = errors.New("no identity CA yet")

// slot is one of the three places an identity CA can be in.
type slot int

const (
	slotCurrent slot = iota
	slotNext
	slotPrevious
)

func (s slot) files() (cert, key string) {
	switch s {
	case slotNext:
		return NextCACertFile, NextCAKeyFile
	case slotPrevious:
		return PreviousCACertFile, PreviousCAKeyFile
	default:
		return CACertFile, CAKeyFile
	}
}

// caSet is the identity CAs at one moment. cur is never nil in a set in use.
type caSet struct {
	cur, next, prev *identityCA
	// interrupted: a switch stopped between moving the next CA's key and its certificate
	// into place; cur is that next CA, and the store finishes the move on its next write.
	interrupted bool
	sum         [32]byte // the store's content this set was read from
}

// published are the set's CAs that clients should trust at now: current, next, and the
// previous one until it expires.
func (s *caSet) published(now time.Time) []*identityCA {
	out := []*identityCA{s.cur}
	if s.next != nil {
		out = append(out, s.next)
	}
	if s.prev != nil && now.Before(s.prev.cert.NotAfter) {
		out = append(out, s.prev)
	}
	return out
}

// caStore keeps the identity CAs. dirStore keeps them in data_dir; cluster mode can supply
// a store of its own. Every write leaves a state that load accepts, so a crash at any
// point never blocks the next start.
type caStore interface {
	// load reads the CAs; errNoCA when there is no current CA.
	load() (*caSet, error)
	// sum is a digest of what load would read, to notice changes made by another process
	// (`maintproxy certs regenerate`) cheaply.
	sum() [32]byte
	// create makes and stores the first current CA.
	create(domain string, now time.Time) error
	// addNext makes a new next CA and stores it, replacing any next CA.
	addNext(domain string, now time.Time) error
	// promote makes the next CA current and the current one previous (an older previous
	// CA is retired).
	promote(set *caSet) error
	// retire removes the CA in s from publication, keeping it under a dated name.
	retire(s slot, ca *identityCA, why string) error
	// finishSwitch completes an interrupted switch (set.interrupted).
	finishSwitch() error
	// where names the store in messages.
	where() string
}

// dirStore keeps the identity CAs as PEM files in a directory (data_dir).
type dirStore struct{ dir string }

func (d dirStore) path(name string) string { return filepath.Join(d.dir, name) }

func (d dirStore) where() string { return "data_dir " + d.dir }

func (d dirStore) sum() [32]byte {
	h := sha256.New()
	for _, s := range []slot{slotCurrent, slotNext, slotPrevious} {
		c, k := s.files()
		for _, name := range []string{c, k} {
			b, _ := os.ReadFile(d.path(name))
			fmt.Fprintf(h, "%s:%d:", name, len(b))
			h.Write(b)
		}
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

func (d dirStore) load() (*caSet, error) {
	sum := d.sum()
	set := &caSet{sum: sum}
	var err error
	set.cur, err = d.loadSlot(slotCurrent, true)
	var mismatch *keyMismatchError
	if errors.As(err, &mismatch) {
		// A switch that stopped half-way: ca-key.pem is already the next CA's key.
		if ca, nerr := d.pair(NextCACertFile, CAKeyFile); nerr == nil {
			set.cur, set.interrupted, err = ca, true, nil
		}
	}
	if err != nil {
		return nil, err
	}
	if !set.interrupted {
		if set.next, err = d.loadSlot(slotNext, true); err != nil && !errors.Is(err, errNoCA) {
			return nil, err
		}
	}
	// The previous CA is only published; its key is kept for an operator's undo.
	if set.prev, err = d.loadSlot(slotPrevious, false); err != nil && !errors.Is(err, errNoCA) {
		return nil, err
	}
	return set, nil
}

// keyMismatchError: the certificate and key files of a slot do not belong together.
type keyMismatchError struct{ err error }

func (e *keyMismatchError) Error() string { return e.err.Error() }

// loadSlot reads the CA in s; errNoCA when its certificate file does not exist. It
// tightens a key file's mode to 0600 if someone loosened it.
func (d dirStore) loadSlot(s slot, needKey bool) (*identityCA, error) {
	certName, keyName := s.files()
	certPath, keyPath := d.path(certName), d.path(keyName)
	certPEM, err := os.ReadFile(certPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNoCA
	}
	if err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	if !needKey {
		certs, err := parseCerts(certPEM)
		if err != nil {
			return nil, fmt.Errorf("data_dir: %s: %w", certPath, err)
		}
		if !certs[0].IsCA {
			return nil, fmt.Errorf("data_dir: %s is not a CA certificate", certPath)
		}
		return &identityCA{cert: certs[0], pem: certPEM}, nil
	}
	if _, err := os.Stat(keyPath); err != nil {
		return nil, fmt.Errorf("data_dir: %s exists but its key cannot be read: %w", certPath, err)
	}
	ca, err := d.pair(certName, keyName)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(keyPath); err == nil && fi.Mode().Perm()&0o077 != 0 {
		_ = os.Chmod(keyPath, 0o600) // best effort: a read-only data_dir still works
	}
	return ca, nil
}

// pair loads a CA certificate and its key from two files of the directory.
func (d dirStore) pair(certName, keyName string) (*identityCA, error) {
	certPath, keyPath := d.path(certName), d.path(keyName)
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("data_dir: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("data_dir: %s exists but its key cannot be read: %w", certPath, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		if isKeyMismatch(certPEM, keyPEM) {
			return nil, &keyMismatchError{fmt.Errorf("data_dir: %s and %s do not belong together: %w", certPath, keyPath, err)}
		}
		return nil, fmt.Errorf("data_dir: %s and %s: %w", certPath, keyPath, err)
	}
	if !pair.Leaf.IsCA {
		return nil, fmt.Errorf("data_dir: %s is not a CA certificate", certPath)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("data_dir: %s: unsupported key type", keyPath)
	}
	return &identityCA{cert: pair.Leaf, key: signer, pem: certPEM}, nil
}

// isKeyMismatch reports whether, for a pair that tls.X509KeyPair refused, both files
// parse: then the key is simply not the certificate's.
func isKeyMismatch(certPEM, keyPEM []byte) bool {
	if _, err := parseCerts(certPEM); err != nil {
		return false
	}
	for rest := keyPEM; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return false
		}
		if _, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
			return true
		}
		if _, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
			return true
		}
		if _, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
			return true
		}
	}
}

func (d dirStore) create(domain string, now time.Time) error {
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	certPEM, keyPEM, _, err := makeCA(domain, now)
	if err != nil {
		return err
	}
	return d.write(slotCurrent, certPEM, keyPEM)
}

func (d dirStore) addNext(domain string, now time.Time) error {
	certPEM, keyPEM, _, err := makeCA(domain, now)
	if err != nil {
		return err
	}
	return d.write(slotNext, certPEM, keyPEM)
}

// write stores a CA in s. The key goes first: a certificate without its key would block
// every later start, a key without its certificate is ignored.
func (d dirStore) write(s slot, certPEM, keyPEM []byte) error {
	certName, keyName := s.files()
	if err := atomicfile.Write(d.path(keyName), keyPEM, 0o600); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	if err := atomicfile.Write(d.path(certName), certPEM, 0o644); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	return nil
}

// promote: copy the current CA to the previous slot, then rename the next CA's key and
// certificate over the current ones. Between the two renames load sees an interrupted
// switch and carries on from there.
func (d dirStore) promote(set *caSet) error {
	if set.next == nil {
		return errors.New("identity CA: no next CA to switch to")
	}
	if set.prev != nil {
		if err := d.retire(slotPrevious, set.prev, "retired"); err != nil {
			return err
		}
	}
	keyPEM, err := os.ReadFile(d.path(CAKeyFile))
	if err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	if err := d.write(slotPrevious, set.cur.pem, keyPEM); err != nil {
		return err
	}
	if err := os.Rename(d.path(NextCAKeyFile), d.path(CAKeyFile)); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	return d.finishSwitch()
}

func (d dirStore) finishSwitch() error {
	if err := os.Rename(d.path(NextCACertFile), d.path(CACertFile)); err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	return nil
}

// retire renames the files of s to ca-<why>-<expiry date>-<serial>.pem (and -key.pem).
func (d dirStore) retire(s slot, ca *identityCA, why string) error {
	certName, keyName := s.files()
	base := fmt.Sprintf("ca-%s-%s-%s", why, ca.cert.NotAfter.UTC().Format("20060102"), shortSerial(ca.cert.SerialNumber))
	if err := os.Rename(d.path(keyName), d.path(base+"-key.pem")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("data_dir: retiring an identity CA: %w", err)
	}
	if err := os.Rename(d.path(certName), d.path(base+".pem")); err != nil {
		return fmt.Errorf("data_dir: retiring an identity CA: %w", err)
	}
	return nil
}
