package config

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/spf13/viper"
)

// Environment prefixes: MAINTPROXY_LISTEN_PROXY overrides listen.proxy.
const (
	BrokerEnvPrefix = "MAINTPROXY"
	AgentEnvPrefix  = "MAINTAGENT"
)

// LoadBroker reads, defaults and validates the broker configuration in path.
func LoadBroker(path string) (*Broker, error) { return load(path, ParseBroker) }

// ParseBroker parses YAML broker configuration (with environment overrides). A file that
// does not mention listen.metrics gets DefaultMetricsListen; one that sets it empty has no
// metrics listener (as has a Broker built in code without it).
func ParseBroker(data []byte) (*Broker, error) {
	var b Broker
	if err := unmarshalWithDefaults(data, BrokerEnvPrefix, &b, map[string]any{"listen.metrics": DefaultMetricsListen}); err != nil {
		return nil, err
	}
	return NewBroker(b)
}

// LoadAgent reads, defaults and validates the agent configuration in path.
func LoadAgent(path string) (*Agent, error) { return load(path, ParseAgent) }

// load reads path and hands its contents to parse.
func load[T any](path string, parse func([]byte) (*T, error)) (*T, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parse(data)
}

// ParseAgent parses YAML agent configuration (with environment overrides).
func ParseAgent(data []byte) (*Agent, error) {
	var a Agent
	if err := unmarshal(data, AgentEnvPrefix, &a); err != nil {
		return nil, err
	}
	return NewAgent(a)
}

// unmarshal decodes YAML into into, environment overrides applied.
func unmarshal(data []byte, envPrefix string, into any) error {
	return unmarshalWithDefaults(data, envPrefix, into, nil)
}

// unmarshalWithDefaults is unmarshal where defaults apply to the keys the file does not
// mention (a key the file sets empty stays empty).
func unmarshalWithDefaults(data []byte, envPrefix string, into any, defaults map[string]any) error {
	v := viper.New()
	for k, d := range defaults {
		v.SetDefault(k, d)
	}
	v.SetConfigType("yaml")
	v.SetEnvPrefix(envPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	bindEnv(v, reflect.TypeOf(into).Elem(), "")
	if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
		return fmt.Errorf("yaml: %w", err)
	}
	if err := v.UnmarshalExact(into); err != nil {
		return fmt.Errorf("%s", strings.ReplaceAll(err.Error(), "\n", " "))
	}
	return nil
}

// bindEnv registers every scalar key so that AutomaticEnv overrides apply even when the
// file does not mention the key.
func bindEnv(v *viper.Viper, t reflect.Type, prefix string) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		key := f.Tag.Get("mapstructure")
		if key == "" || !f.IsExported() {
			continue
		}
		if prefix != "" {
			key = prefix + "." + key
		}
		switch f.Type.Kind() {
		case reflect.Struct:
			bindEnv(v, f.Type, key)
		case reflect.Slice, reflect.Map:
			// lists and maps come from the file only
		default:
			_ = v.BindEnv(key)
		}
	}
}

// WatchBroker polls path every interval and calls apply with each new valid configuration.
// An invalid edit is reported through onError and the previous configuration stays in force.
// It returns when ctx is done.
func WatchBroker(ctx context.Context, path string, interval time.Duration, apply func(*Broker), onError func(error)) {
	last := fileSum(path)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sum := fileSum(path)
		if sum == last {
			continue
		}
		last = sum
		b, err := LoadBroker(path)
		if err != nil {
			onError(err)
			continue
		}
		apply(b)
	}
}

func fileSum(path string) [32]byte {
	data, err := os.ReadFile(path)
	if err != nil {
		return [32]byte{}
	}
	return sha256.Sum256(data)
}
