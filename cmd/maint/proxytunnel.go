package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
)

// isProxytunnel reports whether maint was started under proxytunnel's name (the tool
// bundle's proxytunnel.exe is maint for Windows): then it takes proxytunnel's command
// line, so saved PuTTY sessions and the manual's commands run it unchanged.
func isProxytunnel(arg0 string) bool {
	base := strings.ToLower(filepath.Base(strings.ReplaceAll(arg0, `\`, "/")))
	return strings.TrimSuffix(base, ".exe") == "proxytunnel"
}

// runProxytunnel is maint behind proxytunnel 1.10's command line: the stdio tunnel (ssh
// ProxyCommand, PuTTY's local proxy command) or --standalone's local port (listening on
// 127.0.0.1 only, where proxytunnel listens on every interface). The destination may be
// given with -d or as the argument; credentials with -P user:pass, -F passfile, or
// PROXYUSER/PROXYPASS, then as for maint (MAINT_* variables, `maint login`, a prompt on
// the terminal). The proxy is always spoken to over TLS and always verified; options for
// what maintproxy has no use for (a second proxy, NTLM, TLS to the destination, no
// certificate check) are refused, naming the option.
func runProxytunnel(args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	var o opts
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var user, pass, passfile, ignored string
	var headers []string
	var showVersion, ignoredBool bool
	cmd := &cobra.Command{
		Use:   "proxytunnel [OPTIONS]... [host:port]",
		Short: "maint as proxytunnel: tunnels through maintproxy with proxytunnel's command line",
		Long: `This is maint (the maintproxy client) under proxytunnel's name. It takes proxytunnel's
command line, e.g.
  proxytunnel -E --proxy=maint.example.com:6443 --dest=12345-SE1.maint.example.com:22 -P 'user:pass' -C isrgrootx1.pem
  proxytunnel --standalone=13389 -E -p maint.example.com:6443 -d 12345-SE1-192.168.1.20.maint.example.com:3389 -P user -C isrgrootx1.pem
The proxy is always reached over TLS and its certificate always verified; --standalone
listens on 127.0.0.1 only.`,
		Args:          usageArgs(cobra.MaximumNArgs(1)),
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if showVersion {
				fmt.Fprintf(stdout, "proxytunnel (maint %s, the maintproxy client)\n", version)
				return nil
			}
			if err := refuseUnsupported(cmd); err != nil {
				return err
			}
			if len(args) == 1 {
				if o.dest != "" {
					return usageError{errors.New("destination given twice (--dest and an argument)")}
				}
				o.dest = args[0]
			}
			if o.dest == "" || o.proxy == "" && getenv("MAINT_PROXY") == "" {
				return usageError{errors.New("no proxy or destination given (see --help)")}
			}
			auth, err := proxytunnelAuth(o.proxyAuth, user, pass, passfile, getenv)
			if err != nil {
				return err
			}
			o.proxyAuth = auth
			if o.standalone != 0 {
				return forward(ctx, o, fmt.Sprintf("127.0.0.1:%d", o.standalone), o.dest, stdin, stdout, stderr)
			}
			return connect(ctx, o, o.dest, stdin, stdout, stderr)
		},
	}
	f := cmd.Flags()
	f.SortFlags = false
	f.StringVarP(&o.proxy, "proxy", "p", "", "proxy host:port (maint.<domain>:6443)")
	f.StringVarP(&o.dest, "dest", "d", "", "destination host:port")
	f.BoolVarP(&o.encrypt, "encrypt-proxy", "E", true, "TLS to the proxy (always on)")
	f.IntVarP(&o.standalone, "standalone", "a", 0, "listen on 127.0.0.1:PORT and tunnel each connection")
	f.StringVarP(&o.proxyAuth, "proxyauth", "P", "", "proxy credentials user[:pass] (or PROXYUSER, PROXYPASS)")
	f.StringVarP(&o.caFile, "cacert", "C", "", "PEM file of the root that verifies the proxy")
	f.StringVarP(&passfile, "passfile", "F", "", "file with proxy_user = … and proxy_passwd = … lines")
	f.StringVarP(&user, "user", "u", "", "proxy username (old form of -P)")
	f.StringVarP(&pass, "pass", "s", "", "proxy password (old form of -P)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "only errors on stderr")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "more messages on stderr")
	f.BoolVarP(&showVersion, "version", "V", false, "print the version")
	// Accepted and without effect here.
	f.BoolVarP(&ignoredBool, "inetd", "i", false, "run from inetd (stdin/stdout are the tunnel, as without it)")
	f.BoolVarP(&ignoredBool, "no-ssl3", "T", false, "no SSLv3 (never used)")
	f.StringVarP(&ignored, "proctitle", "x", "", "process title (ignored)")
	f.StringVarP(&ignored, "host", "o", "", "Host header for the proxy (ignored)")
	f.StringArrayVarP(&headers, "header", "H", nil, "extra header for the proxy (ignored)")
	// proxytunnel's options maintproxy has no use for: refused by refuseUnsupported.
	f.BoolP("encrypt", "e", false, "TLS to the destination (not supported)")
	f.BoolP("encrypt-remproxy", "X", false, "TLS to a second proxy (not supported)")
	f.StringP("remproxy", "r", "", "a second proxy (not supported)")
	f.StringP("remproxyauth", "R", "", "a second proxy's credentials (not supported)")
	f.BoolP("ntlm", "N", false, "NTLM authentication (not supported)")
	f.StringP("domain", "t", "", "NTLM domain (not supported)")
	f.BoolP("wa-bug-29744", "W", false, "stop TLS after CONNECT (not supported)")
	f.BoolP("buggy-encrypt-proxy", "B", false, "-E -W (not supported)")
	f.BoolP("tlsv1", "L", false, "force TLS 1.0 (not supported)")
	f.BoolP("no-check-certificate", "z", false, "skip the certificate check (not supported: give -C)")
	return execute(cmd, args, stdin, stdout, stderr, "proxytunnel")
}

// refuseUnsupported names the first proxytunnel option given that maint cannot honour.
func refuseUnsupported(cmd *cobra.Command) error {
	for _, name := range []string{"encrypt", "encrypt-remproxy", "remproxy", "remproxyauth", "ntlm", "domain",
		"wa-bug-29744", "buggy-encrypt-proxy", "tlsv1", "no-check-certificate"} {
		if fl := cmd.Flags().Lookup(name); fl != nil && fl.Changed {
			msg := fmt.Sprintf("-%s/--%s is not supported by maint (%s)", fl.Shorthand, fl.Name, fl.Usage)
			if name == "no-check-certificate" {
				msg = "-z/--no-check-certificate is not supported: maint always verifies the proxy; give -C with the root certificate from the tool bundle"
			}
			return usageError{errors.New(msg)}
		}
	}
	return nil
}

// proxytunnelAuth resolves proxytunnel's credentials to user[:pass]: -P, then -u/-s, then
// the passfile, then PROXYUSER and PROXYPASS fill what is still missing.
func proxytunnelAuth(auth, user, pass, passfile string, getenv func(string) string) (string, error) {
	if auth != "" && user != "" {
		return "", usageError{errors.New("--user given with --proxyauth")}
	}
	u, p, _ := strings.Cut(auth, ":")
	if u == "" {
		u = user
	}
	if p == "" {
		p = pass
	}
	if passfile != "" {
		fu, fp, err := readPassfile(passfile)
		if err != nil {
			return "", err
		}
		if u == "" {
			u = fu
		}
		if p == "" {
			p = fp
		}
	}
	if u == "" {
		u = getenv("PROXYUSER")
	}
	if p == "" {
		p = getenv("PROXYPASS")
	}
	if p == "" {
		return u, nil
	}
	return u + ":" + p, nil
}

// readPassfile reads proxytunnel's (wgetrc-style) password file: proxy_user = NAME and
// proxy_passwd = SECRET lines.
func readPassfile(path string) (user, pass string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", fmt.Errorf("--passfile: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, 64<<10))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "proxy_user":
			user = strings.TrimSpace(v)
		case "proxy_passwd", "proxy_password":
			pass = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return "", "", fmt.Errorf("--passfile %s: %w", path, err)
	}
	if user == "" || pass == "" {
		return "", "", fmt.Errorf("--passfile %s: proxy_user and proxy_passwd not found", path)
	}
	return user, pass, nil
}

// splitCygwin splits a Windows command line the way the Cygwin runtime does for
// proxytunnel.exe (its Windows build): words are separated by blanks; single quotes keep
// everything up to the next one; double quotes too, where \" and "" stand for a quote;
// outside quotes \' and \" are a quote, any other backslash an ordinary character
// (Windows paths). PuTTY sessions and the manual's commands quote the credentials with
// single quotes, which Windows' own rules would leave in the password.
func splitCygwin(line string) []string {
	var args []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			if inWord {
				args = append(args, cur.String())
				cur.Reset()
				inWord = false
			}
		case c == '\'':
			inWord = true
			end := strings.IndexByte(line[i+1:], '\'')
			if end < 0 {
				cur.WriteString(line[i+1:])
				i = len(line)
				break
			}
			cur.WriteString(line[i+1 : i+1+end])
			i += end + 1
		case c == '"':
			inWord = true
			for i++; i < len(line); i++ {
				if line[i] == '\\' && i+1 < len(line) && line[i+1] == '"' {
					cur.WriteByte('"')
					i++
				} else if line[i] == '"' && i+1 < len(line) && line[i+1] == '"' {
					cur.WriteByte('"')
					i++
				} else if line[i] == '"' {
					break
				} else {
					cur.WriteByte(line[i])
				}
			}
		case c == '\\' && i+1 < len(line) && (line[i+1] == '\'' || line[i+1] == '"'):
			inWord = true // an escaped quote, as in the shell's '\'' idiom
			cur.WriteByte(line[i+1])
			i++
		default:
			inWord = true
			cur.WriteByte(c)
		}
	}
	if inWord {
		args = append(args, cur.String())
	}
	return args
}
