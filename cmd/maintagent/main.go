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
			level := new(slog.LevelVar)
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
			watched := make(chan struct{})
			go func() {
				defer close(watched)
				err := config.WatchAgent(ctx, path, cfg, func(next *config.Agent) {
					_ = level.UnmarshalText([]byte(next.Log.Level))
					restart := agent.SetConfig(next)
					logger.Info("configuration reloaded; the customer's settings are in force",
						"remote_access", next.RemoteAccess.Enabled, "services", len(next.RemoteAccess.Services),
						"colocated", next.Colocated.Enabled, "tunnels", len(next.Colocated.Tunnels), "network_systems", len(next.Network.Systems))
					if len(restart) > 0 {
						logger.Warn("these settings changed but apply only after a restart of maintagent; the old values stay in force until then",
							"fields", restart)
					}
				}, func(err error) {
					logger.Error("configuration edit refused; the previous settings stay in force", "file", path, "err", err.Error())
				})
				if err != nil {
					logger.Warn("cannot watch the configuration file; edits apply only after a restart", "file", path, "err", err.Error())
				}
			}()
			err = agent.Run(ctx)
			stop()
			<-watched
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
