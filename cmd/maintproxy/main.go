// Command maintproxy is the remote-support broker: `serve` runs it, `check` validates a
// configuration, `passwd` hashes a password (bcrypt), `agent-secret` makes an agent secret
// and its hmac-sha256 hash, `certs show` and `certs regenerate` describe the certificates
// and make a new identity CA, `demo` runs a self-contained broker with demo agents and
// targets on loopback; `people`, `grants`, `backup` and `restore` manage the people store.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"maintproxy/broker"
	"maintproxy/config"
	"maintproxy/internal/prompt"
)

var version = "dev"

func main() {
	if err := rootCmd().Execute(); err != nil {
		if !errors.Is(err, errStale) {
			fmt.Fprintln(os.Stderr, "maintproxy:", err)
		}
		os.Exit(1)
	}
}

func rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "maintproxy",
		Short:         "Remote-support tunnel broker: authenticated CONNECT proxy for customer systems behind agents",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCmd(), checkCmd(), passwdCmd(), agentSecretCmd(), demoCmd(), certsCmd(), configCmd(), clusterCmd(),
		peopleCmd(), accountCmd(), grantsCmd(), backupCmd(), restoreCmd())
	return root
}

// configFlag is the --config (-c) flag of the commands that read the broker's file.
func configFlag(cmd *cobra.Command, path *string) {
	cmd.Flags().StringVarP(path, "config", "c", "/etc/maintproxy/maintproxy.yaml", "configuration file")
}

func serveCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "Run the broker",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.LoadBroker(path)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			logger, err := newLogger(os.Stderr, cfg.Log.Level)
			if err != nil {
				return err
			}
			b, err := broker.New(broker.Options{Config: cfg, ConfigPath: path, Logger: logger, ToolsDir: toolsDir()})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// The first signal drains (up to shutdown_timeout); a second one ends the
			// process at once, as the signal's default does.
			context.AfterFunc(ctx, stop)
			return b.Run(ctx)
		},
	}
	configFlag(cmd, &path)
	return cmd
}

func checkCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "check --config FILE",
		Short: "Validate a configuration file and exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.LoadBroker(path)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if err := broker.Check(cfg); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if cfg.SharedOnly() {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (domain %s, tls %s, cluster node %s; accounts, customers and limits come from the store)\n",
					path, cfg.Domain, cfg.TLS.Mode, cfg.Cluster.Node)
				if len(cfg.Accounts) > 0 || len(cfg.Customers) > 0 {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: note: cluster.config is store, so the %d accounts and %d customers in this file are not used (push them with `maintproxy config push`)\n",
						path, len(cfg.Accounts), len(cfg.Customers))
				}
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (domain %s, %d accounts, %d customers, tls %s)\n",
				path, cfg.Domain, len(cfg.Accounts), len(cfg.Customers), cfg.TLS.Mode)
			checkAccountPasswords(cmd.Context(), cmd.OutOrStdout(), path, cfg)
			return nil
		},
	}
	configFlag(cmd, &path)
	return cmd
}

func passwdCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "passwd",
		Short: "Read a password on stdin and print its bcrypt hash (for agents use agent-secret)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pw, err := readSecret(cmd.InOrStdin(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			h, err := config.HashSecret(pw)
			if err != nil {
				return fmt.Errorf("password %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), h)
			return nil
		},
	}
}

// readSecret reads one line, without echo when stdin is a terminal.
func readSecret(in io.Reader, w io.Writer) (string, error) {
	if tty, ok := prompt.Terminal(in); ok {
		return prompt.Secret(tty, w, "Password: ")
	}
	line, err := prompt.Line(bufio.NewReader(in))
	if err != nil {
		return "", err
	}
	if line == "" {
		return "", errors.New("empty password on stdin")
	}
	return line, nil
}

// newLogger logs JSON at level; the configuration has validated it, flags are checked here.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q is not one of debug, info, warn, error", level)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// toolsDir is where the tool bundle's clients are: $MAINTPROXY_TOOLS_DIR, else clients/
// next to the executable, where `make build` (bin/clients) and the release archives put
// them. The web handler warns at start about any that are missing.
func toolsDir() string {
	if d := os.Getenv("MAINTPROXY_TOOLS_DIR"); d != "" {
		return d
	}
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	return filepath.Join(filepath.Dir(exe), "clients")
}
