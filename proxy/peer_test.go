package proxy

import (
	"errors"
	"fmt"
	"testing"

	"maintproxy/tunnel"
)

// TestPeerCodesKeepWhatTheTechnicianSees: every refusal the holder can give, carried as a
// peer code and message and turned back into an error, maps to the same status, reason
// and text as the original.
func TestPeerCodesKeepWhatTheTechnicianSees(t *testing.T) {
	for _, err := range []error{
		ErrNotManaged,
		fmt.Errorf("%w: customer 12345 has no system %q", ErrNoSystem, "se9"),
		fmt.Errorf("%w: system 12345-se1 has not connected since the broker started", ErrOffline),
		fmt.Errorf("%w: yamux: session shutdown", tunnel.ErrSessionClosed),
		fmt.Errorf("%w: system 12345-se1 has 2 open tunnels (limit 2)", ErrLimit),
		fmt.Errorf("%w: no answer from the agent", tunnel.ErrTimeout),
		&tunnel.RefusedError{Code: tunnel.CodeRemoteAccessOff},
		&tunnel.RefusedError{Code: tunnel.CodeServiceNotOffered, Msg: "port 3389 is not offered for remote access on this system"},
		&tunnel.RefusedError{Code: tunnel.CodeColocatedOff},
		&tunnel.RefusedError{Code: tunnel.CodeNoTunnelEntry, Msg: "no TCP tunnel entry for 10.0.0.9 port 22 on this system"},
		&tunnel.RefusedError{Code: tunnel.CodeRefused, Msg: "127.0.0.1:23: the target refused the connection"},
		&tunnel.RefusedError{Code: tunnel.CodeUnreachable, Msg: "10.0.0.9:22: the target is unreachable"},
		&tunnel.RefusedError{Code: tunnel.CodeTimeout, Msg: "10.0.0.9:22: the target did not answer in time"},
		&tunnel.RefusedError{Code: tunnel.CodeBadRequest},
		errors.New("something else broke"),
	} {
		code, msg := peerCode(err)
		if code == PeerOK || code >= 240 {
			t.Errorf("%v: code %d", err, code)
			continue
		}
		back := peerErr(code, msg)
		ws, wr, wt := statusFor(err, "example.test")
		gs, gr, gt := statusFor(back, "example.test")
		if ws != gs || wr != gr || wt != gt {
			t.Errorf("%v: locally %d %s %q, through a peer %d %s %q", err, ws, wr, wt, gs, gr, gt)
		}
	}
	if code, _ := peerCode(nil); code != PeerOK {
		t.Errorf("no error: code %d", code)
	}
	// The peer link's own codes (the holder never answered) are a failed tunnel.
	if s, _, _ := statusFor(peerErr(255, "the holder broker did not answer"), "example.test"); s != 502 {
		t.Errorf("peer link code 255: status %d", s)
	}
}
