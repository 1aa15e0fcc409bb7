package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"maintproxy/broker"
	"maintproxy/certs"
	"maintproxy/config"
)

// certsCmd groups the certificate commands; they read data_dir (in cluster mode the
// store) and the configured files and never start a broker.
func certsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Show what the listeners serve; make a new identity CA",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(certsShowCmd(), certsRegenerateCmd())
	return cmd
}

func certsShowCmd() *cobra.Command {
	var path string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "show --config FILE",
		Short: "Print issuer, subject, SANs, validity and SHA-256 fingerprints of what each listener serves",
		Long: `Print, for each listener (proxy and web), the certificate chain it serves: issuer, subject,
SANs, validity (days left) and SHA-256 fingerprint; then the roots that clients must trust
(the tool bundle's root file, GET /agent/v1/ca) and, for the self-signed identity CA, the
rollover schedule. It reads data_dir (in cluster mode the identity CAs in the store) and the
configured files only; a running broker is neither needed nor contacted. The self-signed leaf lives in the running broker's memory:
its fingerprint is in the broker's GET /certs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := describeCAs(path, func(cfg *config.Broker, shared certs.CAStore) (*certs.Description, error) {
				return certs.InspectIn(cfg, shared, time.Now())
			})
			if err != nil {
				return err
			}
			return writeDescription(cmd.OutOrStdout(), d, asJSON)
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of text")
	return cmd
}

func certsRegenerateCmd() *cobra.Command {
	var path string
	var now, asJSON bool
	cmd := &cobra.Command{
		Use:   "regenerate --config FILE [--now]",
		Short: "Make a new self-signed identity CA, published beside the current one before it serves",
		Long: `Make a new self-signed identity CA in data_dir (tls.mode selfsigned); in cluster mode in the
store, for every broker of the cluster.

The new CA becomes the next CA: published at once beside the current one (the tool bundle's
maintproxy-ca.pem holds both, GET /agent/v1/ca serves both and agents keep them beside their
ca_file), while leaves keep coming from the current CA until the switch, half of
tls.selfsigned.rollover_before later (default about six months). A running broker (every
broker of a cluster) picks the change up within seconds. Technicians download the tool
bundle again before the switch.

--now switches at once (to the next CA already published, if there is one). Agents whose
ca_file holds only the old CA, and that have not fetched the new one since, cannot connect
until they are given it; technicians need the new tool bundle at once. The old CA stays
published (data_dir: ca-previous.pem) until it expires.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d, err := describeCAs(path, func(cfg *config.Broker, shared certs.CAStore) (*certs.Description, error) {
				return certs.RegenerateIn(cfg, shared, time.Now(), now)
			})
			if err != nil {
				return err
			}
			if !asJSON {
				w := cmd.OutOrStdout()
				switch {
				case now:
					fmt.Fprintln(w, "Switched to the new identity CA now. Agents and technicians that trust only the old CA cannot connect until they get the new one.")
				case d.Rollover != nil && !d.Rollover.SwitchAt.IsZero():
					fmt.Fprintf(w, "Made the next identity CA: published now, it signs the leaves from %s.\n",
						d.Rollover.SwitchAt.Format(time.DateOnly))
				default:
					fmt.Fprintln(w, "Made the identity CA.")
				}
				fmt.Fprintln(w)
			}
			return writeDescription(cmd.OutOrStdout(), d, asJSON)
		},
	}
	configFlag(cmd, &path)
	cmd.Flags().BoolVar(&now, "now", false, "switch to the new CA at once (strands agents that hold only the old CA)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the resulting state as JSON")
	return cmd
}

func writeDescription(w io.Writer, d *certs.Description, asJSON bool) error {
	if !asJSON {
		return d.WriteText(w)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(d)
}

// describeCAs loads the configuration at path and runs f with it and the cluster's
// identity CA record (nil for a single broker); errors name path.
func describeCAs(path string, f func(*config.Broker, certs.CAStore) (*certs.Description, error)) (*certs.Description, error) {
	cfg, err := config.LoadBroker(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	shared, done, err := sharedCAs(cfg)
	if err != nil {
		return nil, err
	}
	defer done()
	d, err := f(cfg, shared)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// sharedCAs is the cluster's identity CA record in cluster mode (tls.mode selfsigned), nil
// for a single broker (data_dir). done closes the connection to the store.
func sharedCAs(cfg *config.Broker) (certs.CAStore, func(), error) {
	if !cfg.Cluster.Enabled() || cfg.TLS.Mode != config.ModeSelfSigned {
		return nil, func() {}, nil
	}
	cli, err := dialStore(cfg)
	if err != nil {
		return nil, nil, err
	}
	return broker.SharedCAs(cli), func() { cli.Close() }, nil
}
