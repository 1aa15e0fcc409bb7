package proxy

import (
	"encoding/base64"
	"strings"
	"testing"
)

// FuzzParseBasic: a Proxy-Authorization value either fails or yields the user and password
// it encodes: re-encoding them gives back the same credentials, and the user never holds a
// colon (it would split differently).
func FuzzParseBasic(f *testing.F) {
	for _, s := range []string{
		"Basic " + base64.StdEncoding.EncodeToString([]byte("resa:pass-a")),
		"basic " + base64.StdEncoding.EncodeToString([]byte("user:pa:ss")),
		"Basic Og==", "Basic", "Basic  =", "Bearer abc", "Basic " + strings.Repeat("QUFB", 50),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		user, pass, ok := parseBasic(h)
		if !ok {
			if user != "" || pass != "" {
				t.Fatalf("%q: refused but gave %q:%q", h, user, pass)
			}
			return
		}
		if strings.Contains(user, ":") {
			t.Fatalf("%q: user %q holds a colon", h, user)
		}
		again := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
		if u, p, ok := parseBasic(again); !ok || u != user || p != pass {
			t.Fatalf("%q: %q:%q does not survive re-encoding", h, user, pass)
		}
	})
}
