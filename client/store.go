package client

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"maintproxy/internal/atomicfile"
)

// Environment variables read by Resolve.
const (
	EnvProxy    = "MAINT_PROXY"          // host:port
	EnvUser     = "MAINT_PROXY_USER"     // proxy account name
	EnvPassword = "MAINT_PROXY_PASSWORD" // proxy account password
	EnvCAFile   = "MAINT_CACERT"         // PEM roots for the proxy
	EnvConfig   = "MAINT_CONFIG"         // the stored settings file
)

// Stored is what `maint login` keeps (file mode 0600): a token for a personal login, or
// the password of an organisation's shared proxy account (which gets no token).
type Stored struct {
	Proxy    string `json:"proxy"`
	Username string `json:"username"`
	CAFile   string `json:"ca_file,omitempty"`
	Password string `json:"password,omitempty"`
	// Web is the broker's web listener the token came from (for logout).
	Web string `json:"web,omitempty"`
	// TokenUser and Token are the proxy credentials a token login gives, until TokenExpires.
	TokenUser    string    `json:"token_user,omitempty"`
	Token        string    `json:"token,omitempty"`
	TokenExpires time.Time `json:"token_expires,omitzero"`
}

// TokenValid reports whether a stored token is there and not expired at now.
func (s Stored) TokenValid(now time.Time) bool {
	return s.Token != "" && s.TokenUser != "" && now.Before(s.TokenExpires)
}

// ConfigPath is where the settings are stored: $MAINT_CONFIG, or maint/config.json in the
// user's configuration directory.
func ConfigPath() (string, error) {
	if p := os.Getenv(EnvConfig); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, "maint", "config.json"), nil
}

// LoadDefault is Load at ConfigPath; it returns the path too.
func LoadDefault() (string, Stored, error) {
	path, err := ConfigPath()
	if err != nil {
		return "", Stored{}, err
	}
	s, err := Load(path)
	return path, s, err
}

// Load reads the stored settings; a missing file is no settings. A file that others can
// read is refused, since it may hold the password.
func Load(path string) (Stored, error) {
	var s Stored
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return s, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return s, fmt.Errorf("%s is readable by others (mode %04o): run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	if err := json.NewDecoder(f).Decode(&s); err != nil {
		return s, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Save writes the settings with mode 0600 (directory 0700), replacing the file at once.
func Save(path string, s Stored) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(data, '\n'), 0o600)
}

// Resolve merges settings by precedence: flags, then the environment, then the stored
// settings. It also says where the password came from ("" when there is none).
func Resolve(flags Settings, getenv func(string) string, stored Stored) (Settings, string) {
	s := Settings{
		Proxy:    cmp.Or(flags.Proxy, getenv(EnvProxy), stored.Proxy),
		Username: cmp.Or(flags.Username, getenv(EnvUser), stored.Username),
		CAFile:   cmp.Or(flags.CAFile, getenv(EnvCAFile), stored.CAFile),
	}
	switch {
	case flags.Password != "":
		s.Password = flags.Password
		return s, "command line"
	case getenv(EnvPassword) != "":
		s.Password = getenv(EnvPassword)
		return s, EnvPassword
	case stored.TokenValid(time.Now()) && (stored.Username == s.Username || s.Username == ""):
		s.Username, s.Password = stored.TokenUser, stored.Token
		return s, "token from maint login, valid until " + stored.TokenExpires.Local().Format("2006-01-02 15:04")
	case stored.Password != "" && (stored.Username == s.Username || s.Username == ""):
		s.Password = stored.Password
		return s, "stored by maint login"
	}
	return s, ""
}
