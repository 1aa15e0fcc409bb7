//go:build tools

// Package internal pins the chosen dependencies while their users are being written.
package internal

import (
	_ "github.com/coder/websocket"
	_ "github.com/hashicorp/yamux"
	_ "github.com/miekg/dns"
	_ "github.com/spf13/cobra"
	_ "github.com/spf13/viper"
	_ "golang.org/x/crypto/acme/autocert"
	_ "golang.org/x/crypto/bcrypt"
	_ "golang.org/x/net/idna"
	_ "golang.org/x/term"
)
