package clientaddr

import "testing"

func TestIP(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7:51234":  "192.0.2.7",
		"[::1]:443":        "::1",
		"[fe80::1%eth0]:1": "fe80::1%eth0",
		"192.0.2.7":        "192.0.2.7", // no port: as given
		"":                 "",
	} {
		if got := IP(in); got != want {
			t.Errorf("IP(%q) = %q, want %q", in, got, want)
		}
	}
}
