package pac

import (
	"testing"
	"time"
)

// TestIndicate is the manual's traffic-light rule, case by case, as the broker will fill
// the status.
func TestIndicate(t *testing.T) {
	now := time.Date(2025, 3, 4, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	for _, tc := range []struct {
		name  string
		st    SystemStatus
		light Light
		msg   string
	}{
		{"never connected", SystemStatus{}, LightRed, "Waiting for first connection"},
		{"offline since", SystemStatus{Since: ago(26 * time.Hour), Reported: true, RemoteAccess: true},
			LightRed, "System not reachable or offline for the last 1 d 2 h (since 2025-03-03 10:00 UTC)"},
		{"online, remote access on", SystemStatus{Online: true, Since: ago(5 * time.Minute), Reported: true, RemoteAccess: true},
			LightGreen, "Online since 2025-03-04 11:55 UTC (5 min)"},
		{"online, remote access off", SystemStatus{Online: true, Since: ago(time.Hour), Reported: true},
			LightOrange, "Remote operations not allowed"},
		{"online, remote access off, co-located on", SystemStatus{Online: true, Reported: true, Colocated: true},
			LightOrange, "Remote operations not allowed"},
		{"online, switches not reported", SystemStatus{Online: true, Since: ago(time.Minute)},
			LightOrange, "Connected; remote operation settings not reported yet"},
		{"wrong secret, never connected", SystemStatus{LoginFailed: ago(30 * time.Second)}, LightOrange, "Authorization failed"},
		{"wrong secret after being online", SystemStatus{Since: ago(time.Hour), LoginFailed: ago(time.Minute), Reported: true, RemoteAccess: true},
			LightOrange, "Authorization failed"},
		{"refusal in the broker's words", SystemStatus{LoginFailed: ago(time.Minute), LoginFailure: "Account temporarily locked"},
			LightOrange, "Account temporarily locked"},
		{"refused login before the last session: it was fixed", SystemStatus{Since: ago(time.Minute), LoginFailed: ago(time.Hour)},
			LightRed, "System not reachable or offline for the last 1 min (since 2025-03-04 11:59 UTC)"},
		{"refused login long ago: no longer trying", SystemStatus{LoginFailed: ago(3 * time.Hour)},
			LightRed, "Waiting for first connection; last agent login refused 3 h 0 min ago: Authorization failed"},
		{"online wins over a refused login", SystemStatus{Online: true, Since: ago(time.Hour), LoginFailed: ago(time.Minute), Reported: true, RemoteAccess: true},
			LightGreen, "Online since 2025-03-04 11:00 UTC (1 h 0 min)"},
		{"through the primary", SystemStatus{Online: true, Since: ago(2 * time.Minute), Reported: true, RemoteAccess: true, Via: "se1"},
			LightGreen, "Online since 2025-03-04 11:58 UTC (2 min)"},
	} {
		got := Indicate(tc.st, now)
		if got.Light != tc.light || got.Message != tc.msg {
			t.Errorf("%s: %s %q, want %s %q", tc.name, got.Light, got.Message, tc.light, tc.msg)
		}
	}
}

func TestNetworkIndication(t *testing.T) {
	green := Indication{LightGreen, "Online since …"}
	red := Indication{LightRed, MsgWaiting}
	notAllowed := Indication{LightOrange, MsgNotAllowed}
	for _, tc := range []struct {
		name    string
		systems []namedIndication
		want    Indication
	}{
		{"one server: its own", []namedIndication{{"se1", notAllowed}}, notAllowed},
		{"all online", []namedIndication{{"se1", green}, {"se2", green}}, Indication{LightGreen, "All 2 servers online"}},
		{"one offline", []namedIndication{{"se1", green}, {"se2", red}, {"se3", green}}, Indication{LightOrange, "1 of 3 servers offline"}},
		{"none connected", []namedIndication{{"se1", red}, {"se2", red}}, Indication{LightRed, "No server of the network connected"}},
		{"one not allowed", []namedIndication{{"se1", green}, {"se2", notAllowed}}, Indication{LightOrange, "se2: Remote operations not allowed"}},
		{"none", nil, Indication{LightRed, "No systems configured"}},
	} {
		if got := networkIndication(tc.systems); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestParseParamsDefaults(t *testing.T) {
	p, err := parseParams(nil)
	if err != nil || p != defaultParams() || p.sshUser() != "<user-name>" || p.query() != "" {
		t.Fatalf("defaults: %+v %v", p, err)
	}
	// The placeholder itself, and the defaults, are not choices.
	p, err = parseParams(map[string][]string{"ssh_user": {"<user-name>"}, "tools_linux": {"~/maintproxy-tools/"}, "port": {"13389"}})
	if err != nil || p.query() != "" {
		t.Fatalf("placeholder: %+v %v", p, err)
	}
	p, _ = parseParams(map[string][]string{"tools_linux": {"~"}, "ssh_user": {"a.b@corp"}})
	if p.LinuxTools != "~" || p.query() != "?ssh_user=a.b%40corp&tools_linux=~" {
		t.Errorf("%+v %s", p, p.query())
	}
}
