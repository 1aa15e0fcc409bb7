package pac

import (
	"fmt"
	"strings"
	"time"
)

// SystemStatus is what the broker knows of one customer system: the facts, not their
// presentation. Indicate turns it into the light and message the pages show.
type SystemStatus struct {
	// Online is true while an agent session serves the system (its own agent, or the
	// primary's when Via is set).
	Online bool
	// Since is when the current session started (online) or the last one ended (offline);
	// zero when the system has never connected (as far as the broker remembers).
	Since time.Time
	// Reported is true once the agent has told the customer's switches (the fields below);
	// until then the pages offer the usual services and say the switches are not known.
	Reported     bool
	RemoteAccess bool          // the customer's remote-access switch on this system
	Colocated    bool          // the customer's switch for co-located servers
	Services     []int         // ports the customer offers on this system
	Tunnels      []TunnelEntry // co-located servers and services the customer opened
	// LoginFailed is when an agent last tried to log in as this system and was refused;
	// zero if that never happened (or is not known).
	LoginFailed time.Time
	// LoginFailure is that refusal in the manual's words: "Authorization failed" (the
	// default when empty), "Invalid credentials", "Account temporarily locked", "Maximum
	// number of concurrent sessions exceeded".
	LoginFailure string
	// Via is the name of the system whose agent carries this one's connections (the
	// primary, for a secondary without an agent of its own). Its switches govern access,
	// and are the ones in this status. Empty when the system has its own agent.
	Via string
}

// TunnelEntry is one co-located server and service the customer opened for remote access.
type TunnelEntry struct {
	Application string // SSH, RDP, HTTPS, …
	IP          string
	Port        int
}

// Light is a traffic-light colour of the access pages.
type Light string

// The traffic-light colours, from worst to best.
const (
	LightRed    Light = "red"
	LightOrange Light = "orange"
	LightGreen  Light = "green"
)

// Indication is what the pages show of a status: a light and a message in the manual's
// words.
type Indication struct {
	Light   Light
	Message string
}

// Messages of the manual that Indicate uses.
const (
	MsgWaiting       = "Waiting for first connection"
	MsgAuthFailed    = "Authorization failed"
	MsgNotAllowed    = "Remote operations not allowed"
	MsgOfflineFor    = "System not reachable or offline for the last "
	MsgOnlineSince   = "Online since "
	MsgNotReported   = "Connected; remote operation settings not reported yet"
	loginFailureLive = 10 * time.Minute
)

// Indicate applies the manual's traffic-light rule to st at time now. It is the one place
// the rule lives:
//
//   - green: connected, with the customer's remote access on ("Online since …");
//   - orange: connected with remote access off ("Remote operations not allowed"), or
//     connected before the switches are reported; not connected, but an agent's login was
//     refused in the last 10 minutes — the agent is trying with a wrong secret
//     ("Authorization failed", or the refusal's own words);
//   - red: never connected ("Waiting for first connection"), or not connected since a
//     time ("System not reachable or offline for the last <duration>"); a refused login
//     older than 10 minutes is added to the message, the agent no longer seems to try.
//
// A network with one server offline is orange as a whole: see the customer light.
func Indicate(st SystemStatus, now time.Time) Indication {
	if st.Online {
		switch {
		case !st.Reported:
			return Indication{LightOrange, MsgNotReported}
		case !st.RemoteAccess:
			return Indication{LightOrange, MsgNotAllowed}
		}
		return Indication{LightGreen, MsgOnlineSince + formatSince(st.Since, now)}
	}
	failed := !st.LoginFailed.IsZero() && (st.Since.IsZero() || st.LoginFailed.After(st.Since))
	reason := st.LoginFailure
	if reason == "" {
		reason = MsgAuthFailed
	}
	if failed && now.Sub(st.LoginFailed) <= loginFailureLive {
		return Indication{LightOrange, reason}
	}
	msg := MsgWaiting
	if !st.Since.IsZero() {
		msg = MsgOfflineFor + humanDuration(now.Sub(st.Since)) + " (since " + formatTime(st.Since) + ")"
	}
	if failed {
		msg += "; last agent login refused " + humanDuration(now.Sub(st.LoginFailed)) + " ago: " + reason
	}
	return Indication{LightRed, msg}
}

// namedIndication is one server's indication within its network.
type namedIndication struct {
	name string
	Indication
}

// networkIndication combines the servers of one customer network: green when every
// server is green, red when every server is red (none connected), otherwise orange
// ("one server of the network offline", or the servers that are not green and why).
func networkIndication(systems []namedIndication) Indication {
	if len(systems) == 0 {
		return Indication{LightRed, "No systems configured"}
	}
	if len(systems) == 1 {
		return systems[0].Indication
	}
	var red, green int
	var notGreen []string
	for _, s := range systems {
		switch s.Light {
		case LightRed:
			red++
		case LightGreen:
			green++
		}
		if s.Light != LightGreen {
			notGreen = append(notGreen, s.name+": "+s.Message)
		}
	}
	switch {
	case green == len(systems):
		return Indication{LightGreen, fmt.Sprintf("All %d servers online", len(systems))}
	case red == len(systems):
		return Indication{LightRed, "No server of the network connected"}
	case red > 0:
		return Indication{LightOrange, fmt.Sprintf("%d of %d servers offline", red, len(systems))}
	}
	return Indication{LightOrange, strings.Join(notGreen, "; ")}
}

func formatTime(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 MST") }

func formatSince(t, now time.Time) string {
	if t.IsZero() {
		return "(unknown)"
	}
	return formatTime(t) + " (" + humanDuration(now.Sub(t)) + ")"
}

// humanDuration renders d coarsely: "3 d 4 h", "2 h 5 min", "7 min", "less than a minute".
func humanDuration(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "less than a minute"
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d/time.Minute))
	case d < 24*time.Hour:
		return fmt.Sprintf("%d h %d min", int(d/time.Hour), int(d%time.Hour/time.Minute))
	default:
		return fmt.Sprintf("%d d %d h", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
	}
}
