package config

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// sharedKeys are the top-level keys that brokers with `cluster.config: store` take from the
// store instead of their own file: what `maintproxy config push` writes.
var sharedKeys = []string{"accounts", "customers", "limits"}

// shared is the document in the store.
type shared struct {
	Accounts  []Account  `mapstructure:"accounts"`
	Customers []Customer `mapstructure:"customers"`
	Limits    Limits     `mapstructure:"limits"`
}

// SharedOnly reports whether b takes accounts, customers and limits from the store.
func (b *Broker) SharedOnly() bool {
	return b.Cluster.Enabled() && b.Cluster.Config == ClusterConfigStore
}

// SharedYAML extracts the shared part (accounts, customers, limits) of a broker
// configuration file's YAML, as `maintproxy config push` stores it. The whole file should
// have been validated first (LoadBroker), so that errors name the file's fields.
func SharedYAML(file []byte) ([]byte, error) {
	var all map[string]any
	if err := yaml.Unmarshal(file, &all); err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	out := map[string]any{}
	for _, k := range sharedKeys {
		if v, ok := all[k]; ok {
			out[k] = v
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("accounts, customers, limits: none in the file; nothing to push")
	}
	return yaml.Marshal(out)
}

// WithShared returns a copy of b whose accounts, customers and limits are those of the
// shared document doc (SharedYAML's output), defaulted and validated like a file: the
// per-broker settings stay b's. The error names the field.
func (b *Broker) WithShared(doc []byte) (*Broker, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(doc)); err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	var s shared
	if err := v.UnmarshalExact(&s); err != nil {
		return nil, fmt.Errorf("%s", strings.ReplaceAll(err.Error(), "\n", " "))
	}
	c := *b
	c.Accounts, c.Customers, c.Limits = s.Accounts, s.Customers, s.Limits
	return NewBroker(c)
}
