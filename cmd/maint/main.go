// Command maint is the technician's client for maintproxy: a drop-in for proxytunnel that
// keeps the password off the command line.
//
//	maint login                                   store proxy, user, CA file and password
//	maint status                                  show them and check them with the broker
//	maint connect HOST:PORT                       stdio bridge (ssh ProxyCommand, PuTTY local proxy)
//	maint forward [--listen ADDR] HOST:PORT       local port forward (RDP)
//	maint -E -p PROXY -d HOST:PORT -P USER:PASS -C CA [-a PORT]   proxytunnel's flags
//
// Started as proxytunnel (proxytunnel.exe in the tool bundle), it is proxytunnel: its
// command line only, quoting included (see proxytunnel.go).
package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"maintproxy/client"
	"maintproxy/internal/prompt"
)

var version = "dev"

func main() {
	if isProxytunnel(os.Args[0]) {
		args := os.Args[1:]
		if raw, ok := rawArgs(); ok {
			args = raw // Windows: proxytunnel's own (Cygwin) reading of the command line
		}
		os.Exit(runProxytunnel(args, os.Stdin, os.Stdout, os.Stderr, os.Getenv))
	}
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // proxy or tunnel error
	exitUsage = 2
)

// opts are the flags shared with proxytunnel.
type opts struct {
	proxy, proxyAuth, caFile, dest, listen, web string
	standalone                                  int
	quiet, verbose, encrypt                     bool
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var o opts
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := &cobra.Command{
		Use:   "maint",
		Short: "Technician client for maintproxy: SSH/PuTTY proxy command and local port forwards",
		Long: `maint opens tunnels through the maintenance proxy.
Credentials: flags, then MAINT_PROXY, MAINT_PROXY_USER, MAINT_PROXY_PASSWORD, MAINT_CACERT,
then what ` + "`maint login`" + ` stored (a 0600 file in your configuration directory; no OS
keyring is used), then a prompt on the terminal for the password.

proxytunnel's flags work too: maint -E --proxy=maint.example.com:6443
  --dest=12345-SE1.maint.example.com:22 -P 'user:pass' -C ca.pem [--standalone=PORT]`,
		Version:       version,
		Args:          usageArgs(cobra.NoArgs),
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.dest == "" {
				return usageError{errors.New("give a command, or proxytunnel's --dest (see maint --help)")}
			}
			if o.standalone != 0 {
				return forward(ctx, o, fmt.Sprintf("127.0.0.1:%d", o.standalone), o.dest, stdin, stdout, stderr)
			}
			return connect(ctx, o, o.dest, stdin, stdout, stderr)
		},
	}
	pf := root.PersistentFlags()
	pf.StringVarP(&o.proxy, "proxy", "p", "", "proxy HOST:PORT (maint.<domain>:6443)")
	pf.StringVarP(&o.proxyAuth, "proxyauth", "P", "", "USER[:PASS] (avoid PASS here: use maint login)")
	pf.StringVarP(&o.caFile, "cacert", "C", "", "PEM file of the root that verifies the proxy")
	pf.BoolVarP(&o.quiet, "quiet", "q", false, "only errors on stderr")
	pf.BoolVarP(&o.encrypt, "encrypt", "E", true, "TLS to the proxy (always on; accepted for proxytunnel)")
	root.Flags().StringVarP(&o.dest, "dest", "d", "", "target HOST:PORT (proxytunnel style)")
	root.Flags().IntVarP(&o.standalone, "standalone", "a", 0, "listen on 127.0.0.1:PORT and forward each connection (proxytunnel style)")

	root.AddCommand(&cobra.Command{
		Use:   "connect HOST:PORT",
		Short: "Bridge stdin/stdout to HOST:PORT (ssh -o ProxyCommand='maint connect %h:%p')",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			return connect(ctx, o, a[0], stdin, stdout, stderr)
		},
	})
	fwd := &cobra.Command{
		Use:   "forward [--listen 127.0.0.1:PORT] HOST:PORT",
		Short: "Forward a local port to HOST:PORT, a tunnel per connection (RDP)",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			return forward(ctx, o, o.listen, a[0], stdin, stdout, stderr)
		},
	}
	fwd.Flags().StringVarP(&o.listen, "listen", "l", "127.0.0.1:0", "local address (port 0: pick a free one)")
	root.AddCommand(fwd)
	loginCmd := &cobra.Command{
		Use:   "login",
		Short: "Log in: a personal login gets a token for a working day; a shared proxy account's password is stored",
		Long: `login asks for proxy, username, CA file and password (on the terminal, or the password as one
line on stdin), then asks the broker's web site (--web, default admin.<domain>:443) for a token.
A personal login gets one, valid for a working day, and only the token is stored; the proxy then
takes it as the password of <username>+token. An organisation's shared proxy account gets no token:
its password is stored, as before. The file is 0600 in your configuration directory.`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return login(ctx, o, stdin, stdout) },
	}
	loginCmd.Flags().StringVar(&o.web, "web", "", "the broker's web site HOST:PORT (default admin.<domain>:443 from --proxy)")
	root.AddCommand(loginCmd)
	root.AddCommand(&cobra.Command{
		Use:   "logout",
		Short: "Revoke the stored token at the broker and forget it",
		Args:  usageArgs(cobra.NoArgs),
		RunE:  func(cmd *cobra.Command, _ []string) error { return logout(ctx, stdout) },
	})
	root.AddCommand(&cobra.Command{
		Use:   "status",
		Short: "Show the settings in use and whether the broker accepts them",
		Args:  usageArgs(cobra.NoArgs),
		RunE:  func(cmd *cobra.Command, _ []string) error { return status(ctx, o, stdout) },
	})
	return execute(root, args, stdin, stdout, stderr, "maint")
}

// execute runs root with args and turns its result into an exit code; errors are one line
// on stderr, prefixed with the program's name.
func execute(root *cobra.Command, args []string, stdin io.Reader, stdout, stderr io.Writer, name string) int {
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	err := root.Execute()
	switch {
	case err == nil, errors.Is(err, context.Canceled): // Ctrl-C is a normal end
		return exitOK
	case errors.As(err, new(usageError)):
		fmt.Fprintln(stderr, name+":", err)
		return exitUsage
	default:
		fmt.Fprintln(stderr, name+":", err)
		return exitError
	}
}

// usageError is a command line that cannot be run as given (exit code 2): a wrong flag,
// argument count or command.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usageArgs marks the errors of an argument check as usage errors; cobra's flag errors are
// marked by the root's flag error function.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// flagSettings is what the command line says; -P is proxytunnel's USER[:PASS].
func (o opts) flagSettings() client.Settings {
	s := client.Settings{Proxy: o.proxy, CAFile: o.caFile}
	s.Username, s.Password, _ = strings.Cut(o.proxyAuth, ":")
	return s
}

// settings resolves flags, environment, stored settings and, last, a password prompt.
func settings(o opts) (client.Settings, string, error) {
	_, stored, err := client.LoadDefault()
	if err != nil {
		return client.Settings{}, "", err
	}
	s, source := client.Resolve(o.flagSettings(), os.Getenv, stored)
	if s.Password == "" && s.Username != "" {
		if pw, err := promptPassword(s); err == nil {
			s.Password, source = pw, "typed"
		}
	}
	return s, source, nil
}

// promptPassword asks on the terminal, not on stdin, which carries the tunnel.
func promptPassword(s client.Settings) (string, error) {
	tty, err := os.OpenFile("/dev/tty", os.O_RDWR, 0)
	if err != nil {
		return "", client.ErrNoPassword
	}
	defer tty.Close()
	pw, err := prompt.Secret(tty, tty, fmt.Sprintf("Proxy password for %s at %s: ", s.Username, s.Proxy))
	if err != nil {
		return "", client.ErrNoPassword
	}
	return pw, nil
}

func connect(ctx context.Context, o opts, target string, stdin io.Reader, stdout, _ io.Writer) error {
	s, _, err := settings(o)
	if err != nil {
		return err
	}
	out, ok := stdout.(io.WriteCloser)
	if !ok {
		out = nopCloser{stdout}
	}
	return s.Stdio(ctx, target, stdin, out)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func forward(ctx context.Context, o opts, listen, target string, _ io.Reader, stdout, stderr io.Writer) error {
	s, _, err := settings(o)
	if err != nil {
		return err
	}
	// Fail now, not at the RDP client's first connection.
	if err := s.CheckCredentials(ctx); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", listen, err)
	}
	level := slog.LevelInfo
	switch {
	case o.quiet:
		level = slog.LevelError
	case o.verbose:
		level = slog.LevelDebug
	}
	addr := ln.Addr().String()
	fmt.Fprintf(stdout, "Forwarding %s to %s through %s.\nGive your client %s (RDP: mstsc /v:%s, xfreerdp /v:%s). Ctrl-C stops.\n",
		addr, target, s.Proxy, addr, addr, addr)
	f := &client.Forwarder{Settings: s, Target: target, Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))}
	return f.Serve(ctx, ln)
}

func login(ctx context.Context, o opts, stdin io.Reader, stdout io.Writer) error {
	path, stored, err := client.LoadDefault()
	if err != nil {
		return err
	}
	s, _ := client.Resolve(o.flagSettings(), func(string) string { return "" }, client.Stored{Proxy: stored.Proxy, Username: stored.Username, CAFile: stored.CAFile})
	in := bufio.NewReader(stdin)
	tty, isTTY := prompt.Terminal(stdin)
	ask := func(label, current string) (string, error) {
		if !isTTY {
			return current, nil
		}
		fmt.Fprintf(stdout, "%s [%s]: ", label, current)
		line, err := in.ReadString('\n')
		if line = strings.TrimSpace(line); line != "" {
			return line, nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return "", err
		}
		return current, nil
	}
	if s.Proxy, err = ask("Proxy (host:port)", s.Proxy); err != nil {
		return err
	}
	if s.Username, err = ask("Username", s.Username); err != nil {
		return err
	}
	if s.CAFile, err = ask("CA file", s.CAFile); err != nil {
		return err
	}
	if s.Password == "" {
		read := func() (string, error) { return prompt.Line(in) }
		if isTTY {
			read = func() (string, error) { return prompt.Secret(tty, stdout, "Password: ") }
		}
		if s.Password, err = read(); err != nil {
			return err
		}
	}
	if err := s.Check(); err != nil {
		return err
	}
	web := cmp.Or(o.web, stored.Web, client.WebAddr(s.Proxy))
	tok, err := s.Login(ctx, web)
	switch {
	case err == nil:
		next := client.Stored{Proxy: s.Proxy, Username: s.Username, CAFile: s.CAFile, Web: web,
			TokenUser: tok.ProxyUsername, Token: tok.Token, TokenExpires: tok.Expires}
		if err := client.Save(path, next); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Logged in as %s at %s: token valid until %s, stored in %s (mode 0600); your password is not stored.\n",
			s.Username, s.Proxy, tok.Expires.Local().Format("2006-01-02 15:04"), path)
		return nil
	case !errors.Is(err, client.ErrNoToken):
		return fmt.Errorf("not stored: %w", err)
	case err.Error() != client.ErrNoToken.Error():
		fmt.Fprintf(stdout, "No token (%v); checking and storing the password instead.\n", err)
	}
	// A shared proxy account (or a broker without tokens): check and store the password.
	if err := s.CheckCredentials(ctx); err != nil {
		return fmt.Errorf("not stored: %w", err)
	}
	if err := client.Save(path, client.Stored{Proxy: s.Proxy, Username: s.Username, CAFile: s.CAFile, Password: s.Password}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "The broker accepts %s at %s. Stored in %s (mode 0600).\n", s.Username, s.Proxy, path)
	return nil
}

func logout(ctx context.Context, stdout io.Writer) error {
	path, stored, err := client.LoadDefault()
	if err != nil {
		return err
	}
	if stored.Token == "" {
		fmt.Fprintln(stdout, "No token stored.")
		return nil
	}
	s := client.Settings{Proxy: stored.Proxy, CAFile: stored.CAFile}
	err = s.Logout(ctx, stored.Web, stored.TokenUser, stored.Token)
	stored.Token, stored.TokenUser, stored.TokenExpires = "", "", time.Time{}
	if serr := client.Save(path, stored); serr != nil {
		return serr
	}
	if err != nil {
		return fmt.Errorf("token forgotten here, but not revoked at the broker: %w", err)
	}
	fmt.Fprintln(stdout, "Token revoked and forgotten.")
	return nil
}

func status(ctx context.Context, o opts, stdout io.Writer) error {
	path, _ := client.ConfigPath()
	s, source, err := settings(o)
	if err != nil {
		return err
	}
	show := func(v string) string { return cmp.Or(v, "(not set)") }
	pw := "(not set)"
	if s.Password != "" {
		pw = "***** (" + source + ")"
	}
	fmt.Fprintf(stdout, "settings file: %s\nproxy:         %s\nusername:      %s\nCA file:       %s\npassword:      %s\n",
		path, show(s.Proxy), show(s.Username), show(s.CAFile), pw)
	if err := s.CheckCredentials(ctx); err != nil {
		fmt.Fprintf(stdout, "broker:        REFUSED: %v\n", err)
		return err
	}
	fmt.Fprintln(stdout, "broker:        accepts these credentials")
	return nil
}
