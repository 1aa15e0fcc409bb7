package pac

import (
	"fmt"
	"strings"
)

// sshConfig renders an ssh_config snippet for the account: one block that sends every
// maintenance name through the proxy (last, so that it sees the aliases' HostName), and a
// short Host alias for each system and SSH tunnel entry where SSH works today. The password is never in it: proxytunnel asks for
// it (or reads PROXYPASS), maint uses what `maint login` stored.
func sshConfig(in viewInput) string {
	var b strings.Builder
	cc := in.cmdContext()
	p := in.params
	fmt.Fprintf(&b, "# maintproxy: SSH to the systems of proxy account %s through %s.\n", in.account.Username, proxyAddr(in.cfg))
	b.WriteString("# Save as ~/.ssh/maintproxy.conf, put `Include maintproxy.conf` at the top of ~/.ssh/config,\n")
	b.WriteString("# then `ssh <alias>` (aliases below). proxytunnel asks for the proxy password, or reads\n")
	b.WriteString("# it from PROXYPASS; after `maint login`, the maint line needs nothing more.\n")
	b.WriteString("# Windows: use " + p.WindowsTools + "/proxytunnel.exe and " + p.WindowsTools + " in the ProxyCommand.\n\n")
	proxytunnel := "proxytunnel -q -E --proxy=" + cc.proxy + " --dest=%h:%p -P " + in.account.Username
	if cc.rootFile != "" {
		proxytunnel += " -C " + p.LinuxTools + "/" + cc.rootFile
	}
	for _, c := range in.customers() {
		for _, s := range c.Systems {
			sv := buildSystem(in, c, s, in.status(c.ID, s.Name))
			if sv.Commands != nil {
				alias := c.ID + "-" + s.Name
				if s.Primary {
					alias += " " + c.ID
				}
				fmt.Fprintf(&b, "\n# %s%s: %s\nHost %s\n    HostName %s\n    Port 22\n", c.ID, nameSuffix(c.Name), sv.Message, alias, sv.Host)
			}
			for _, t := range sv.Tunnels {
				if t.Commands == nil || t.local != 0 {
					continue // only SSH entries have commands without a forward
				}
				alias := strings.TrimSuffix(t.Host, ".maint."+in.cfg.Domain)
				if t.Port != 22 {
					alias += fmt.Sprintf("-%d", t.Port)
				}
				fmt.Fprintf(&b, "\n# %s %s on %s via %s\nHost %s\n    HostName %s\n    Port %d\n",
					t.Application, t.IP, c.ID, s.Name, alias, t.Host, t.Port)
			}
		}
	}
	// After the aliases: Match host sees the name their HostName gave (and full names typed).
	fmt.Fprintf(&b, "\n# Every maintenance name goes through the proxy.\nMatch host *.maint.%s\n    ProxyCommand %s\n    #ProxyCommand maint connect %%h:%%p\n", in.cfg.Domain, proxytunnel)
	if p.SSHUser != "" {
		fmt.Fprintf(&b, "    User %s\n", p.SSHUser)
	}
	return b.String()
}

func nameSuffix(name string) string {
	if name == "" {
		return ""
	}
	return " (" + strings.Map(func(r rune) rune {
		if r < ' ' {
			return ' '
		}
		return r
	}, name) + ")"
}
