package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"maintproxy/broker"
	"maintproxy/config"
	"maintproxy/internal/atomicfile"
	"maintproxy/people"
	"maintproxy/people/api"
)

// peopleConn is the people API as the commands reach it: a running single broker's local
// socket, or the store opened by this process (a stopped single broker's bbolt file, or
// etcd in cluster mode), served by the same handler in-process.
type peopleConn struct {
	client *http.Client
	close  func() error
}

// openPeople connects the commands to the people API of the broker configured in path.
func openPeople(ctx context.Context, path string) (*peopleConn, error) {
	cfg, err := config.LoadBroker(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if !cfg.Cluster.Enabled() {
		sock := filepath.Join(cfg.DataDir, broker.AdminSocket)
		if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
			c.Close()
			tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			}}
			return &peopleConn{client: &http.Client{Transport: tr, Timeout: time.Minute},
				close: func() error { tr.CloseIdleConnections(); return nil }}, nil
		}
		backend, err := people.NewBolt(cfg.DataDir)
		if err != nil {
			return nil, err
		}
		return inProcess(ctx, cfg, backend, nil)
	}
	cli, err := dialStore(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.SharedOnly() {
		sctx, cancel := context.WithTimeout(ctx, storeTimeout)
		doc, rev, err := cli.Config(sctx)
		cancel()
		if err == nil && rev == 0 {
			err = errors.New("cluster.config is store, but no config was pushed yet (maintproxy config push)")
		}
		if err == nil {
			cfg, err = cfg.WithShared(doc)
		}
		if err != nil {
			cli.Close()
			return nil, err
		}
	}
	return inProcess(ctx, cfg, people.NewEtcd(cli.Etcd(), cli.Prefix()), cli.Close)
}

// inProcess serves the API with the operator's rights from a store this process opened.
func inProcess(ctx context.Context, cfg *config.Broker, backend people.Backend, after func() error) (*peopleConn, error) {
	octx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	svc, err := people.Open(octx, people.Options{Backend: backend, Config: func() *config.Broker { return cfg }})
	if err != nil {
		backend.Close()
		if after != nil {
			after()
		}
		return nil, err
	}
	h := api.New(api.Options{People: svc, Config: func() *config.Broker { return cfg }, Admin: true})
	return &peopleConn{client: &http.Client{Transport: handlerTransport{h}}, close: func() error {
		err := svc.Close()
		if after != nil {
			err = errors.Join(err, after())
		}
		return err
	}}, nil
}

// handlerTransport answers requests with a handler in this process.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// call sends one API request (body as JSON, or raw bytes) and decodes the answer into out.
func (p *peopleConn) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://broker"+api.Prefix+path, rd)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	switch o := out.(type) {
	case nil:
		return nil
	case *[]byte:
		*o = data
		return nil
	default:
		return json.Unmarshal(data, out)
	}
}

// peopleCommand is a subcommand that runs with the people API open.
func peopleCommand(use, short string, args cobra.PositionalArgs, path *string,
	run func(cmd *cobra.Command, p *peopleConn, args []string) error) *cobra.Command {
	cmd := &cobra.Command{Use: use, Short: short, Args: args, RunE: func(cmd *cobra.Command, args []string) error {
		p, err := openPeople(cmd.Context(), *path)
		if err != nil {
			return err
		}
		defer p.close()
		return run(cmd, p, args)
	}}
	configFlag(cmd, path)
	return cmd
}

const storeNote = "\n\nA single broker keeps people in data_dir/" + people.BoltFile + "; while it runs the command goes through\n" +
	"its local socket (data_dir/" + broker.AdminSocket + "), otherwise it opens the file itself. In cluster mode it\n" +
	"works on etcd directly. Either way the running brokers apply the change at once."

func peopleCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{Use: "people", Short: "Personal logins: technicians of an organisation and customer admins",
		Long: "Manage personal logins (see README, People)." + storeNote}

	var org, customer, role, name string
	add := peopleCommand("add USERNAME", "Add a person (password read from stdin or the terminal)", cobra.ExactArgs(1), &path,
		func(cmd *cobra.Command, p *peopleConn, args []string) error {
			pw, err := readSecret(cmd.InOrStdin(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			var v api.PersonView
			err = p.call(cmd.Context(), "POST", "people", map[string]string{"username": args[0], "name": name,
				"org": org, "customer": customer, "role": role, "password": pw}, &v)
			if err == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "added %s (%s)\n", v.Username, v.Role)
			}
			return err
		})
	add.Flags().StringVar(&org, "org", "", "organisation: the username of its proxy account")
	add.Flags().StringVar(&customer, "customer", "", "customer ID, for a customer admin (instead of --org)")
	add.Flags().StringVar(&role, "role", string(people.RoleOperator), "supervisor, operator or readonly")
	add.Flags().StringVar(&name, "name", "", "full name (optional)")

	var listOrg string
	list := peopleCommand("list", "List people", cobra.NoArgs, &path, func(cmd *cobra.Command, p *peopleConn, _ []string) error {
		var vs []api.PersonView
		q := "people"
		if listOrg != "" {
			q += "?org=" + listOrg
		}
		if err := p.call(cmd.Context(), "GET", q, nil, &vs); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USERNAME\tORG/CUSTOMER\tROLE\tSTATE\tTOKENS\tNAME")
		for _, v := range vs {
			state := "enabled"
			if v.Disabled {
				state = "disabled"
			} else if v.LockedUntil != nil && time.Now().Before(*v.LockedUntil) {
				state = "locked until " + v.LockedUntil.Local().Format(time.DateTime)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", v.Username, v.Org+v.Customer, v.Role, state, v.Tokens, v.Name)
		}
		return tw.Flush()
	})
	list.Flags().StringVar(&listOrg, "org", "", "only this organisation's people")

	action := func(use, short, act string) *cobra.Command {
		return peopleCommand(use+" USERNAME", short, cobra.ExactArgs(1), &path, func(cmd *cobra.Command, p *peopleConn, args []string) error {
			if err := p.call(cmd.Context(), "POST", "people/"+args[0]+"/"+act, nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s done\n", args[0], use)
			return nil
		})
	}
	passwd := peopleCommand("passwd USERNAME", "Set a person's password (read from stdin or the terminal); revokes their tokens",
		cobra.ExactArgs(1), &path, func(cmd *cobra.Command, p *peopleConn, args []string) error {
			pw, err := readSecret(cmd.InOrStdin(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return p.call(cmd.Context(), "POST", "people/"+args[0]+"/password", map[string]string{"password": pw}, nil)
		})
	roleCmd := peopleCommand("role USERNAME ROLE", "Change a technician's role (supervisor, operator, readonly)",
		cobra.ExactArgs(2), &path, func(cmd *cobra.Command, p *peopleConn, args []string) error {
			return p.call(cmd.Context(), "POST", "people/"+args[0]+"/role", map[string]string{"role": args[1]}, nil)
		})
	del := peopleCommand("delete USERNAME", "Delete a person and their tokens", cobra.ExactArgs(1), &path,
		func(cmd *cobra.Command, p *peopleConn, args []string) error {
			return p.call(cmd.Context(), "DELETE", "people/"+args[0], nil, nil)
		})
	cmd.AddCommand(add, list, action("disable", "Disable a login: revokes its tokens and ends its open tunnels", "disable"),
		action("enable", "Enable a login again (also lifts a lock)", "enable"),
		action("revoke-tokens", "Revoke a person's tokens (maint login)", "revoke-tokens"), passwd, roleCmd, del)
	return cmd
}

func accountCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{Use: "account", Short: "Proxy account passwords set at runtime (by a supervisor or here)",
		Long: "An organisation's supervisor can change its proxy account's password (/account/ or the API); the new\n" +
			"hash is kept in the people store and replaces accounts[].password_hash while the file still holds the\n" +
			"hash it replaced. Editing password_hash in the file afterwards makes the file win again (the broker logs\n" +
			"it and `account list` shows superseded); `account clear` removes the stored password." + storeNote}
	passwd := peopleCommand("passwd ACCOUNT", "Set a proxy account's password (read from stdin or the terminal), with the people password rules",
		cobra.ExactArgs(1), &path, func(cmd *cobra.Command, p *peopleConn, args []string) error {
			pw, err := readSecret(cmd.InOrStdin(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if err := p.call(cmd.Context(), "POST", "accounts/"+args[0]+"/password", map[string]string{"password": pw}, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: password changed (the old one no longer works; open tunnels stay open)\n", args[0])
			return nil
		})
	list := peopleCommand("list", "Show where each proxy account's password comes from: config, store or superseded",
		cobra.NoArgs, &path, func(cmd *cobra.Command, p *peopleConn, _ []string) error {
			var sts []people.AccountPasswordState
			if err := p.call(cmd.Context(), "GET", "accounts", nil, &sts); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ACCOUNT\tPASSWORD\tCHANGED\tBY")
			for _, st := range sts {
				when := "-"
				if !st.Changed.IsZero() {
					when = st.Changed.Local().Format(time.DateTime)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", st.Account, st.Source, when, st.By)
			}
			return tw.Flush()
		})
	clearCmd := peopleCommand("clear ACCOUNT", "Remove a proxy account's runtime password: the configuration's applies again",
		cobra.ExactArgs(1), &path, func(cmd *cobra.Command, p *peopleConn, args []string) error {
			var out struct{ Cleared bool }
			if err := p.call(cmd.Context(), "DELETE", "accounts/"+args[0]+"/password", nil, &out); err != nil {
				return err
			}
			if out.Cleared {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: the configuration's password_hash applies again\n", args[0])
			} else {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: had no runtime password\n", args[0])
			}
			return nil
		})
	cmd.AddCommand(passwd, list, clearCmd)
	return cmd
}

// checkAccountPasswords tells `maintproxy check` which accounts' passwords come from the
// people store instead of the file, and which stored ones the file superseded. Only a
// single broker's existing store is looked at (it creates nothing); cluster mode gets a note.
func checkAccountPasswords(ctx context.Context, w io.Writer, path string, cfg *config.Broker) {
	if cfg.Cluster.Enabled() {
		fmt.Fprintf(w, "%s: note: a proxy account password changed at runtime (people store) replaces the file's while the file's hash is unchanged; see `maintproxy account list`\n", path)
		return
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, people.BoltFile)); err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	p, err := openPeople(ctx, path)
	if err != nil {
		fmt.Fprintf(w, "%s: note: the people store was not read (%v): proxy account passwords changed at runtime not checked\n", path, err)
		return
	}
	defer p.close()
	var sts []people.AccountPasswordState
	if err := p.call(ctx, "GET", "accounts", nil, &sts); err != nil {
		fmt.Fprintf(w, "%s: note: proxy account passwords changed at runtime not checked: %v\n", path, err)
		return
	}
	for _, st := range sts {
		switch st.Source {
		case people.SourceStore:
			fmt.Fprintf(w, "%s: accounts %s: the password set at runtime by %s applies, not password_hash of the file (`maintproxy account clear %s` returns to the file's)\n",
				path, st.Account, st.By, st.Account)
		case people.SourceSuperseded:
			fmt.Fprintf(w, "%s: accounts %s: password_hash of the file applies; it changed after %s set a password at runtime, which no longer works (`maintproxy account clear %s` removes it)\n",
				path, st.Account, st.By, st.Account)
		}
	}
}

func grantsCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{Use: "grants", Short: "Access modes of systems, access requests and grants",
		Long: "A system in approval mode lets a technician in only with a grant for a time window; a refused\n" +
			"CONNECT records a request. Customer admins answer requests through the API; the operator can here." + storeNote}
	mode := peopleCommand("mode CUSTOMER SYSTEM always|approval", "Set a system's access mode", cobra.ExactArgs(3), &path,
		func(cmd *cobra.Command, p *peopleConn, args []string) error {
			return p.call(cmd.Context(), "PUT", "modes/"+args[0]+"/"+args[1], map[string]string{"mode": args[2]}, nil)
		})
	list := peopleCommand("list", "List systems in approval mode, pending and answered requests, and grants in force", cobra.NoArgs, &path,
		func(cmd *cobra.Command, p *peopleConn, _ []string) error {
			var modes []people.Mode
			var reqs []people.Request
			var grants []people.Grant
			ctx := cmd.Context()
			if err := errors.Join(p.call(ctx, "GET", "modes", nil, &modes), p.call(ctx, "GET", "requests", nil, &reqs),
				p.call(ctx, "GET", "grants", nil, &grants)); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "KIND\tID\tSYSTEM\tWHO\tSTATE\tWHEN")
			for _, m := range modes {
				fmt.Fprintf(tw, "mode\t-\t%s-%s\t%s\t%s\t%s\n", m.Customer, m.System, m.By, m.Mode, m.Changed.Local().Format(time.DateTime))
			}
			for _, r := range reqs {
				fmt.Fprintf(tw, "request\t%s\t%s-%s\t%s (%s)\t%s\t%s\n", r.ID, r.Customer, r.System, r.Username, r.Org, r.State, r.At.Local().Format(time.DateTime))
			}
			for _, g := range grants {
				fmt.Fprintf(tw, "grant\t%s\t%s-%s\t%s\tuntil %s\tby %s\n", g.ID, g.Customer, g.System, g.Username, g.Until.Local().Format(time.DateTime), g.By)
			}
			return tw.Flush()
		})
	var window string
	approve := peopleCommand("approve REQUEST_ID", "Grant a pending request for a window (--for)", cobra.ExactArgs(1), &path,
		func(cmd *cobra.Command, p *peopleConn, args []string) error {
			var g people.Grant
			if err := p.call(cmd.Context(), "POST", "requests/"+args[0]+"/grant", map[string]string{"duration": window}, &g); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "grant %s: %s on %s-%s until %s\n", g.ID, g.Username, g.Customer, g.System, g.Until.Local().Format(time.DateTime))
			return nil
		})
	approve.Flags().StringVar(&window, "for", "4h", "how long the grant lasts")
	deny := peopleCommand("deny REQUEST_ID", "Deny a pending request", cobra.ExactArgs(1), &path,
		func(cmd *cobra.Command, p *peopleConn, args []string) error {
			return p.call(cmd.Context(), "POST", "requests/"+args[0]+"/deny", nil, nil)
		})
	var addWindow string
	add := peopleCommand("add CUSTOMER SYSTEM USERNAME", "Grant a login access to a system for a window (--for), without a request",
		cobra.ExactArgs(3), &path, func(cmd *cobra.Command, p *peopleConn, args []string) error {
			var g people.Grant
			err := p.call(cmd.Context(), "POST", "grants", map[string]string{"customer": args[0], "system": args[1],
				"username": args[2], "duration": addWindow}, &g)
			if err == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "grant %s until %s\n", g.ID, g.Until.Local().Format(time.DateTime))
			}
			return err
		})
	add.Flags().StringVar(&addWindow, "for", "4h", "how long the grant lasts")
	revoke := peopleCommand("revoke GRANT_ID", "End a grant now (its tunnels are cut)", cobra.ExactArgs(1), &path,
		func(cmd *cobra.Command, p *peopleConn, args []string) error {
			return p.call(cmd.Context(), "DELETE", "grants/"+args[0], nil, nil)
		})
	cmd.AddCommand(mode, list, approve, deny, add, revoke)
	return cmd
}

func backupCmd() *cobra.Command {
	var path, out string
	cmd := peopleCommand("backup --out FILE", "Write every people record (people, tokens, modes, requests, grants, proxy account passwords, audit history) to FILE",
		cobra.NoArgs, &path, func(cmd *cobra.Command, p *peopleConn, _ []string) error {
			var data []byte
			if err := p.call(cmd.Context(), "GET", "backup", nil, &data); err != nil {
				return err
			}
			if err := atomicfile.Write(out, data, 0o600); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%d bytes)\n", out, len(data))
			return nil
		})
	cmd.Long = "backup writes the people store to FILE (mode 0600: it holds password hashes)." + storeNote
	cmd.Flags().StringVar(&out, "out", "", "backup file to write")
	cmd.MarkFlagRequired("out")
	return cmd
}

func restoreCmd() *cobra.Command {
	var path, in string
	cmd := peopleCommand("restore --in FILE", "Replace every people record with those of a backup",
		cobra.NoArgs, &path, func(cmd *cobra.Command, p *peopleConn, _ []string) error {
			data, err := os.ReadFile(in)
			if err != nil {
				return err
			}
			if err := p.call(cmd.Context(), "POST", "restore", data, nil); err != nil {
				return fmt.Errorf("%s: %w (the store was not changed)", in, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored %s\n", in)
			return nil
		})
	cmd.Long = "restore checks the whole file first and refuses a bad one without touching the store; then it\n" +
		"replaces people, tokens, modes, requests, grants, proxy account passwords and the audit history with the file's." + storeNote
	cmd.Flags().StringVar(&in, "in", "", "backup file to read")
	cmd.MarkFlagRequired("in")
	return cmd
}
