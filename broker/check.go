package broker

import (
	"crypto/tls"
	"fmt"
	"os"

	"maintproxy/config"
)

// Check validates what the configuration refers to outside itself (files on disk, the data
// directory) without starting anything. Errors name the field.
func Check(cfg *config.Broker) error {
	if st, err := os.Stat(cfg.DataDir); err == nil && !st.IsDir() {
		return fmt.Errorf("data_dir: %s is not a directory", cfg.DataDir)
	}
	if cfg.TLS.Mode == config.ModeFiles {
		if _, err := tls.LoadX509KeyPair(cfg.TLS.Files.Cert, cfg.TLS.Files.Key); err != nil {
			return fmt.Errorf("tls.files.cert/key: %w", err)
		}
	}
	return nil
}
