// Command maintagent runs on a customer server: it keeps an outbound websocket to the
// broker and opens only the connections the customer's configuration allows.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"maintproxy/config"
	"maintproxy/tunnel"
)

var version = "dev"

func main() {
	tunnel.AgentRuntime()
	var path string
	cmd := &cobra.Command{
		Use:           "maintagent --config FILE",
		Short:         "Customer-site agent of maintproxy",
		Version:       version,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.LoadAgent(path)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			var level slog.Level
			_ = level.UnmarshalText([]byte(cfg.Log.Level))
			logger := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			if !cfg.RemoteAccess.Enabled {
				logger.Warn("remote_access.enabled is false: the broker's requests will all be refused")
			}
			agent, err := tunnel.NewAgent(cfg, logger, version)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			err = agent.Run(ctx)
			logger.Info("agent stopped")
			return err
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "/etc/maintproxy/maintagent.yaml", "configuration file")
	if err := cmd.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "maintagent:", err)
		os.Exit(1)
	}
}
