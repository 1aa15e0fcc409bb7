package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"maintproxy/config"
)

// agentSecretCmd makes a new agent secret and the hash the broker stores for it.
func agentSecretCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "agent-secret",
		Short: "Generate a random agent secret and its hmac-sha256 hash",
		Long: `Generate a random 256-bit agent secret and its hmac-sha256 hash.

The secret goes into the agent's configuration (secret, or a file named by secret_file);
the hash goes into the broker's configuration as the system's agent_secret_hash. The broker
checks such a secret in microseconds, so a fleet of agents logs in again right after a
broker restart. Keep the secret only on the customer's server: the broker never needs it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			secret, hash, err := config.NewAgentSecret()
			if err != nil {
				return fmt.Errorf("generating a secret: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "# agent (maintagent.yaml, or the file named by secret_file):\nsecret: %q\n"+
				"# broker (maintproxy.yaml, under customers[].systems[]):\nagent_secret_hash: %q\n", secret, hash)
			return nil
		},
	}
}
