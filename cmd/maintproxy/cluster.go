package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"maintproxy/cluster"
	"maintproxy/config"
)

// storeTimeout bounds the one-shot commands' talk with etcd.
const storeTimeout = 10 * time.Second

// errStale makes `cluster status` exit non-zero without a second message.
var errStale = errors.New("a broker runs a stale configuration")

func configCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "The cluster's shared configuration"}
	var path string
	push := &cobra.Command{
		Use:   "push --config FILE",
		Short: "Validate FILE and write its accounts, customers and limits to the cluster's store",
		Long: "push validates FILE (a broker configuration with the cluster.etcd section and the accounts,\n" +
			"customers and limits to share) with the same checks as `check`, then writes accounts, customers\n" +
			"and limits to etcd in one step. Brokers with cluster.config: store apply it at once. Nothing is\n" +
			"written when FILE is invalid or the store has no quorum.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, raw, err := loadClusterFile(path)
			if err != nil {
				return err
			}
			doc, err := config.SharedYAML(raw)
			if err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			// What the brokers will parse: refuse here what they would refuse.
			if _, err := cfg.WithShared(doc); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			var rev int64
			err = withStore(cmd.Context(), cfg, func(ctx context.Context, cli *cluster.Client) (err error) {
				rev, err = cli.PushConfig(ctx, doc)
				return err
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "pushed revision %d (%d accounts, %d customers)\n", rev, len(cfg.Accounts), len(cfg.Customers))
			return nil
		},
	}
	configFlag(push, &path)
	cmd.AddCommand(push)
	return cmd
}

func clusterCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "The brokers of a cluster"}
	var path string
	status := &cobra.Command{
		Use:   "status --config FILE",
		Short: "List the brokers: addresses, agents held, config revision, lease; exit 1 if one runs a stale config",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, _, err := loadClusterFile(path)
			if err != nil {
				return err
			}
			return withStore(cmd.Context(), cfg, func(ctx context.Context, cli *cluster.Client) error {
				st, err := cli.Status(ctx)
				if err != nil {
					return err
				}
				return printStatus(cmd.OutOrStdout(), st)
			})
		},
	}
	configFlag(status, &path)
	cmd.AddCommand(status)
	return cmd
}

// printStatus writes the table and returns errStale if any broker runs a stale config.
func printStatus(w io.Writer, st cluster.Status) error {
	fmt.Fprintf(w, "shared config revision: %d\n", st.ConfigRevision)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tPEER\tWEB\tPROXY\tAGENTS\tCONFIG\tLEASE\tSTATE")
	stale := false
	for _, b := range st.Brokers {
		conf := "file"
		if b.ConfigStore {
			conf = fmt.Sprintf("rev %d", b.ConfigRevision)
			if b.Stale {
				conf += " STALE"
				stale = true
			}
		}
		state := "serving"
		if b.Draining {
			state = "draining"
		}
		lease := "expired"
		if b.LeaseTTL > 0 {
			lease = b.LeaseTTL.String() + " left"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", b.Node, b.PeerAddr, b.WebAddr, b.ProxyAddr, b.Agents, conf, lease, state)
	}
	tw.Flush()
	if len(st.Brokers) == 0 {
		fmt.Fprintln(w, "no broker is registered")
	}
	if stale {
		return errStale
	}
	return nil
}

// loadClusterFile loads and validates a broker configuration that has a cluster section.
func loadClusterFile(path string) (*config.Broker, []byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := config.ParseBroker(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if !cfg.Cluster.Enabled() {
		return nil, nil, fmt.Errorf("%s: cluster: no cluster section, so no store to talk to", path)
	}
	return cfg, raw, nil
}

// dialStore connects to the cluster's etcd as a plain client (no lease, not a broker).
func dialStore(cfg *config.Broker) (*cluster.Client, error) {
	opts, err := cluster.FromConfig(&cfg.Cluster)
	if err != nil {
		return nil, err
	}
	return cluster.Dial(opts)
}

// withStore runs f with a plain client of the cluster's store (dialStore), within
// storeTimeout, and closes the client.
func withStore(ctx context.Context, cfg *config.Broker, f func(context.Context, *cluster.Client) error) error {
	cli, err := dialStore(cfg)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	return f(ctx, cli)
}
