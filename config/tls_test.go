package config

import (
	"strings"
	"testing"
	"time"
)

// TestTLSFilesAndRollover: exactly one of cert+key or pkcs12; the rollover lead within its
// bounds; each error names its field.
func TestTLSFilesAndRollover(t *testing.T) {
	for _, c := range []struct{ tls, field string }{
		{"{mode: files, files: {cert: /c.pem}}", "tls.files.key:"},
		{"{mode: files, files: {key: /k.pem}}", "tls.files.cert:"},
		{"{mode: files, files: {cert: /c.pem, key: /k.pem, pkcs12: /b.p12}}", "tls.files.pkcs12:"},
		{"{mode: files, files: {key: /k.pem, pkcs12: /b.p12}}", "tls.files.pkcs12:"},
		{"{mode: files, files: {cert: /c.pem, key: /k.pem, pkcs12_password_file: /pw}}", "tls.files.pkcs12_password_file:"},
		{"{selfsigned: {rollover_before: 24h}}", "tls.selfsigned.rollover_before:"},
		{"{selfsigned: {rollover_before: 20000h}}", "tls.selfsigned.rollover_before:"},
		{"{selfsigned: {rollover_befor: 2000h}}", "rollover_befor"},
	} {
		in := strings.Replace(validYAML(), "data_dir: /tmp/maintproxy-test", "data_dir: /tmp/x\ntls: "+c.tls, 1)
		_, err := ParseBroker([]byte(in))
		if err == nil || !strings.Contains(err.Error(), c.field) {
			t.Errorf("tls %s: got %v, want an error naming %s", c.tls, err, c.field)
		}
	}
	for _, c := range []struct {
		tls  string
		want func(*Broker) bool
	}{
		{"{mode: files, files: {pkcs12: /b.p12, pkcs12_password_file: /pw}}", func(b *Broker) bool {
			return b.TLS.Files.PKCS12 == "/b.p12" && b.TLS.Files.PKCS12PasswordFile == "/pw"
		}},
		{"{mode: files, files: {pkcs12: /b.p12}}", func(b *Broker) bool { return b.TLS.Files.PKCS12 == "/b.p12" }},
		{"{mode: selfsigned}", func(b *Broker) bool { return b.TLS.SelfSigned.RolloverBefore == DefaultRolloverBefore }},
		{"{selfsigned: {rollover_before: 2160h}}", func(b *Broker) bool { return b.TLS.SelfSigned.RolloverBefore == 90*24*time.Hour }},
	} {
		in := strings.Replace(validYAML(), "data_dir: /tmp/maintproxy-test", "data_dir: /tmp/x\ntls: "+c.tls, 1)
		b, err := ParseBroker([]byte(in))
		if err != nil {
			t.Errorf("tls %s: %v", c.tls, err)
			continue
		}
		if !c.want(b) {
			t.Errorf("tls %s: parsed as %+v", c.tls, b.TLS)
		}
	}
}

func TestTLSPKCS12FromEnvironment(t *testing.T) {
	t.Setenv("MAINTPROXY_TLS_MODE", "files")
	t.Setenv("MAINTPROXY_TLS_FILES_PKCS12", "/b.p12")
	t.Setenv("MAINTPROXY_TLS_FILES_PKCS12_PASSWORD_FILE", "/pw")
	b, err := ParseBroker([]byte(validYAML()))
	if err != nil {
		t.Fatal(err)
	}
	if b.TLS.Files.PKCS12 != "/b.p12" || b.TLS.Files.PKCS12PasswordFile != "/pw" {
		t.Errorf("env not applied: %+v", b.TLS.Files)
	}
}
