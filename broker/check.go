package broker

import (
	"fmt"
	"os"

	"maintproxy/certs"
	"maintproxy/config"
)

// Check validates what the configuration refers to outside itself (files on disk, the data
// directory) without starting anything. Errors name the field.
func Check(cfg *config.Broker) error {
	if st, err := os.Stat(cfg.DataDir); err == nil && !st.IsDir() {
		return fmt.Errorf("data_dir: %s is not a directory", cfg.DataDir)
	}
	return certs.Check(cfg)
}
