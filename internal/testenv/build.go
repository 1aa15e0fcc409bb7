package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// binaries is built once per test process; tests in one package share it.
var binaries struct {
	once sync.Once
	dir  string
	errs map[string]error
}

// Commands built by Bin.
var Commands = []string{"maintproxy", "maintagent", "maint"}

// RaceEnv is the environment variable that, set to 1, builds the commands with the race
// detector (`make test-race`); a process that reports a race exits with status 66.
const RaceEnv = "MAINTPROXY_TEST_RACE"

// Scale stretches a test's deadline for commands built with the race detector, which
// run several times slower (a full-cost bcrypt, e.g. for an unknown agent, takes seconds).
func Scale(d time.Duration) time.Duration {
	if os.Getenv(RaceEnv) == "1" {
		return 5 * d
	}
	return d
}

// Bin returns the directory holding freshly built maintproxy, maintagent and maint. It fails
// the test if the broker or agent does not build; a maint build failure fails only tests
// that ask for it through BinPath.
func Bin(t testing.TB) string {
	t.Helper()
	binaries.once.Do(build)
	for _, name := range []string{"maintproxy", "maintagent"} {
		if err := binaries.errs[name]; err != nil {
			t.Fatalf("building %s: %v", name, err)
		}
	}
	return binaries.dir
}

// BinPath returns the path of one built command.
func BinPath(t testing.TB, name string) string {
	t.Helper()
	dir := Bin(t)
	if err := binaries.errs[name]; err != nil {
		t.Fatalf("building %s: %v", name, err)
	}
	return filepath.Join(dir, name)
}

func build() {
	binaries.errs = map[string]error{}
	dir, err := os.MkdirTemp("", "maintproxy-testbin-")
	if err != nil {
		for _, c := range Commands {
			binaries.errs[c] = err
		}
		return
	}
	binaries.dir = dir
	root, err := ModuleRoot()
	args := []string{"build"}
	if os.Getenv(RaceEnv) == "1" {
		args = append(args, "-race")
	}
	for _, c := range Commands {
		if err != nil {
			binaries.errs[c] = err
			continue
		}
		cmd := exec.Command("go", append(args, "-o", filepath.Join(dir, c), "./cmd/"+c)...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			binaries.errs[c] = fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
		}
	}
}

// Main runs a test package's tests and removes the built binaries afterwards; call it from
// TestMain. It keeps the log of every process the tests run (LogDirEnv) and fails the run
// if any of them holds a secret the tests handed out (NoteSecret). A test binary run by
// a test (a helper process) inherits the directory and leaves the check to its parent.
func Main(m *testing.M) int {
	dir, own := os.Getenv(LogDirEnv), false
	if dir == "" {
		if d, err := os.MkdirTemp("", "maintproxy-testlogs-"); err == nil {
			dir, own = d, true
			os.Setenv(LogDirEnv, dir)
		}
	}
	code := m.Run()
	if binaries.dir != "" {
		os.RemoveAll(binaries.dir)
	}
	if own {
		if checkLogs(dir, os.Stderr) > 0 && code == 0 {
			code = 1
		}
		os.RemoveAll(dir)
	}
	return code
}

// ModuleRoot is the directory of the project's go.mod.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the maintproxy module")
	}
	return filepath.Dir(mod), nil
}
