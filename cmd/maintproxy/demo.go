package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"text/template"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"

	"maintproxy/broker"
	"maintproxy/certs"
	"maintproxy/config"
	"maintproxy/internal/echo"
	"maintproxy/tunnel"
)

// Demo identities. The demo runs on loopback only, so fixed secrets are harmless.
const (
	demoDomain   = "example.test"
	demoUser     = "demo"
	demoPassword = "demo-password"
	demoCustomer = "12345"
	demoSecret   = "demo-agent-secret"
	// demoColocatedIP stands in for a co-located server on the customer's network.
	demoColocatedIP = "127.0.0.5"
)

func demoCmd() *cobra.Command {
	var dataDir, proxyAddr, webAddr, level string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a broker with a demo customer, its agents and stand-in targets on loopback",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			logger, err := newLogger(os.Stderr, level)
			if err != nil {
				return err
			}
			return runDemo(ctx, cmd.OutOrStdout(), logger, dataDir, proxyAddr, webAddr)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "demo-data", "where the identity CA is written")
	cmd.Flags().StringVar(&proxyAddr, "proxy", "127.0.0.1:6443", "proxy listen address")
	cmd.Flags().StringVar(&webAddr, "web", "127.0.0.1:8444", "web listen address")
	cmd.Flags().StringVar(&level, "log-level", "warn", "log level (debug, info, warn, error)")
	return cmd
}

func runDemo(ctx context.Context, out io.Writer, logger *slog.Logger, dataDir, proxyAddr, webAddr string) error {
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	// The demo's secrets are printed for everyone, so the cheapest bcrypt cost protects as
	// much as any; it keeps logins quick (also in binaries built with -race).
	pwHash, err := bcrypt.GenerateFromPassword([]byte(demoPassword), bcrypt.MinCost)
	if err != nil {
		return err
	}
	secretHash, err := bcrypt.GenerateFromPassword([]byte(demoSecret), bcrypt.MinCost)
	if err != nil {
		return err
	}
	cfg, err := config.NewBroker(config.Broker{
		Domain:   demoDomain,
		Listen:   config.Listen{Proxy: proxyAddr, Web: webAddr},
		DataDir:  dataDir,
		Accounts: []config.Account{{Username: demoUser, PasswordHash: string(pwHash), Customers: []string{demoCustomer}}},
		Customers: []config.Customer{{ID: demoCustomer, Name: "Demo customer", Systems: []config.System{
			{Name: "SE1", Primary: true, AgentSecretHash: string(secretHash)},
			{Name: "SE2", AgentSecretHash: string(secretHash)},
		}}},
	})
	if err != nil {
		return err
	}
	b, err := broker.New(broker.Options{Config: cfg, Logger: logger, ToolsDir: toolsDir()})
	if err != nil {
		return err
	}
	defer b.Close() // a demo that fails before Run still frees its ports
	caFile := filepath.Join(dataDir, certs.CACertFile)

	// Stand-in targets: the web control panel (HTTPS), a TCP echo, and a co-located HTTPS server.
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	panelCert, err := certs.IssueFromDataDir(dataDir, "*.maint."+demoDomain, demoCustomer+".maint."+demoDomain,
		demoCustomer+"-se1.maint."+demoDomain, demoCustomer+"-se2.maint."+demoDomain,
		demoCustomer+"-se2-"+demoColocatedIP+".maint."+demoDomain, "localhost", "127.0.0.1", demoColocatedIP)
	if err != nil {
		return err
	}
	panel, err := serveDemoHTTPS(ctx, &wg, "127.0.0.1:0", panelCert, "maintproxy demo: web control panel of customer 12345")
	if err != nil {
		return err
	}
	colo, err := serveDemoHTTPS(ctx, &wg, demoColocatedIP+":0", panelCert, "maintproxy demo: co-located server "+demoColocatedIP)
	if err != nil {
		return err
	}
	echoSrv, err := echo.Start(ctx, "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer echoSrv.Close()
	sshSrv, err := startDemoSSH(ctx, &wg, filepath.Join(dataDir, "demo-ssh"), []string{
		demoCustomer + ".maint." + demoDomain, demoCustomer + "-se1.maint." + demoDomain, demoCustomer + "-se2.maint." + demoDomain})
	if err != nil {
		return err
	}
	_, coloPort, _ := net.SplitHostPort(colo)
	port, _ := strconv.Atoi(coloPort)
	for _, sys := range []string{"se1", "se2"} {
		acfg, err := config.NewAgent(config.Agent{
			Broker:     "https://" + b.WebAddr().String(),
			CAFile:     caFile,
			ServerName: "admin." + demoDomain,
			Customer:   demoCustomer,
			System:     sys,
			Secret:     demoSecret,
			RemoteAccess: config.RemoteAccess{Enabled: true, Services: map[string]string{
				"7071": panel, "443": panel, "7": echoSrv.Addr(), "22": sshSrv.addr,
			}},
			Colocated: config.Colocated{Enabled: sys == "se2", Tunnels: []config.Tunnel{{Application: "HTTPS", IP: demoColocatedIP, Port: port}}},
		})
		if err != nil {
			return err
		}
		agent, err := tunnel.NewAgent(acfg, logger.With("agent", demoCustomer+"/"+sys), version)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() { defer wg.Done(); agent.Run(ctx) }()
	}
	_, proxyPort, _ := net.SplitHostPort(b.ProxyAddr().String())
	_, webPort, _ := net.SplitHostPort(b.WebAddr().String())
	demoHelp.Execute(out, map[string]string{
		"Proxy": "127.0.0.1:" + proxyPort, "ProxyPort": proxyPort, "Web": "127.0.0.1:" + webPort, "CA": caFile, "User": demoUser,
		"Password": demoPassword, "Domain": demoDomain, "Customer": demoCustomer, "ColoIP": demoColocatedIP, "ColoPort": coloPort,
		"SSHUser": demoSSHUser, "SSHPassword": demoSSHPassword, "SSHKey": sshSrv.keyFile, "KnownHosts": sshSrv.knownHosts,
		"Maint": siblingMaint(),
	})
	return b.Run(ctx)
}

// siblingMaint is the maint client built next to this binary (make build), or "".
func siblingMaint() string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(exe), "maint")
	if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
		return ""
	}
	return p
}

var demoHelp = template.Must(template.New("demo").Parse(`
maintproxy demo is running. Press Ctrl-C to stop.
  proxy      https://{{.Proxy}}   (the proxy, maint.{{.Domain}})
  web        https://{{.Web}}     (admin.{{.Domain}}: access pages, PAC file, downloads, agents)
  identity CA {{.CA}}
  account    {{.User}} / {{.Password}}   manages customer {{.Customer}} (systems SE1 primary, SE2)

Web pages (log in as {{.User}} / {{.Password}}; trust the identity CA, or pass --cacert to curl):
  access page  https://{{.Web}}/com/remoteproxy/access
  PAC file     https://{{.Web}}/com/remoteproxy/proxy.pac
  tool bundle  https://{{.Web}}/com/remoteproxy/tools.zip
  extension    https://{{.Web}}/com/remoteproxy/chrome-extension.zip
  curl --cacert {{.CA}} -u '{{.User}}:{{.Password}}' https://{{.Web}}/com/remoteproxy/access?format=json
A browser with the PAC file (the names resolve to this machine only for it):
  chromium --proxy-pac-url=https://{{.Web}}/com/remoteproxy/proxy.pac --host-resolver-rules="MAP maint.{{.Domain}} 127.0.0.1, MAP admin.{{.Domain}} 127.0.0.1"

Web control panel of the primary server, through the proxy:
  curl --proxy https://{{.Proxy}} --proxy-user '{{.User}}:{{.Password}}' --proxy-cacert {{.CA}} --cacert {{.CA}} https://{{.Customer}}-SE1.maint.{{.Domain}}:7071/

Co-located server {{.ColoIP}} through the secondary server SE2 (a TCP tunnel entry):
  curl --proxy https://{{.Proxy}} --proxy-user '{{.User}}:{{.Password}}' --proxy-cacert {{.CA}} --cacert {{.CA}} https://{{.Customer}}-SE2-{{.ColoIP}}.maint.{{.Domain}}:{{.ColoPort}}/

TCP echo (port 7 on the primary server), with proxytunnel:
  proxytunnel -q -E -p {{.Proxy}} -d {{.Customer}}.maint.{{.Domain}}:7 -P '{{.User}}:{{.Password}}' -C {{.CA}}

SSH to the primary server: the demo's own pretend SSH server on loopback (user {{.SSHUser}}, key below or password {{.SSHPassword}}; it answers hostname, whoami, echo, date and runs nothing):
  ssh -i {{.SSHKey}} -o IdentitiesOnly=yes -o UserKnownHostsFile={{.KnownHosts}} -o ProxyCommand="proxytunnel -q -E -p {{.Proxy}} -d %h:%p -P '{{.User}}:{{.Password}}' -C {{.CA}}" {{.SSHUser}}@{{.Customer}}.maint.{{.Domain}}
{{- if .Maint}}
  ssh -i {{.SSHKey}} -o IdentitiesOnly=yes -o UserKnownHostsFile={{.KnownHosts}} -o ProxyCommand="{{.Maint}} -p {{.Proxy}} -d %h:%p -P '{{.User}}:{{.Password}}' -C {{.CA}}" {{.SSHUser}}@{{.Customer}}.maint.{{.Domain}}
{{- end}}

A refused request (no such customer for this account) shows the broker's answer:
  curl -v --proxy https://{{.Proxy}} --proxy-user '{{.User}}:{{.Password}}' --proxy-cacert {{.CA}} https://99999.maint.{{.Domain}}:443/
`))

func serveDemoHTTPS(ctx context.Context, wg *sync.WaitGroup, addr string, cert tls.Certificate, text string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprintf(w, "<!doctype html><title>%s</title><h1>%s</h1><p>You reached %s%s through maintproxy.</p>\n", text, text, r.Host, r.URL.Path)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
	}
	wg.Add(2)
	go func() { defer wg.Done(); srv.ServeTLS(ln, "", "") }()
	go func() { defer wg.Done(); <-ctx.Done(); srv.Close() }()
	return ln.Addr().String(), nil
}
