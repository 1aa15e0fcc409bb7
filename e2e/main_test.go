// Package e2e drives the real broker, agents and targets with real clients on loopback.
package e2e

import (
	"os"
	"testing"

	"maintproxy/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Main(m)) }
