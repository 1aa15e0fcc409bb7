package people

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"time"
)

// sessionTouch is how stale LastSeen may get before a use writes it: an idle timeout of
// minutes does not need a store write per request. A shorter people.session_idle (tests)
// touches at a quarter of it, so that use still keeps a session.
const sessionTouch = time.Minute

// StartSession signs username in on the web: it returns the cookie's value (256 random
// bits; only its SHA-256 is stored) and the session's CSRF token. The person must be
// enabled and not locked (their password was checked by the caller).
func (s *Service) StartSession(ctx context.Context, username string) (cookie string, se Session, err error) {
	if _, err := s.Principal(username); err != nil {
		return "", Session{}, err
	}
	var id, csrf [32]byte
	rand.Read(id[:])
	rand.Read(csrf[:])
	cookie = base64.RawURLEncoding.EncodeToString(id[:])
	now := s.now().UTC()
	se = Session{Username: username, Started: now, LastSeen: now, CSRF: base64.RawURLEncoding.EncodeToString(csrf[:])}
	err = s.update(ctx, bucketSessions, tokenID(cookie), func([]byte) ([]byte, error) { return json.Marshal(&se) })
	return cookie, se, err
}

// Session checks a cookie's value: the session exists and was used within
// people.session_idle; the person is still enabled. It marks the session used (a store
// write at most once a minute) and returns it with the person's principal.
func (s *Service) Session(ctx context.Context, cookie string) (Session, Principal, error) {
	id := tokenID(cookie)
	se := s.snap.Load().sessions[id]
	now := s.now()
	if se == nil || now.Sub(se.LastSeen) >= s.o.Config().People.SessionIdle {
		return Session{}, Principal{}, ErrNoSession
	}
	p, err := s.Principal(se.Username)
	if err != nil {
		return Session{}, Principal{}, err
	}
	out := *se
	if now.Sub(se.LastSeen) >= min(sessionTouch, s.o.Config().People.SessionIdle/4) {
		out.LastSeen = now.UTC()
		err := s.update(ctx, bucketSessions, id, func(old []byte) ([]byte, error) {
			if old == nil {
				return nil, ErrNoSession
			}
			return json.Marshal(&out)
		})
		if err != nil {
			return Session{}, Principal{}, err
		}
	}
	return out, p, nil
}

// CheckCSRF reports whether token is the session's CSRF token (in constant time).
func (se Session) CheckCSRF(token string) bool {
	return se.CSRF != "" && subtle.ConstantTimeCompare([]byte(se.CSRF), []byte(token)) == 1
}

// EndSession signs a cookie's session out; an unknown one is no error.
func (s *Service) EndSession(ctx context.Context, cookie string) error {
	return s.update(ctx, bucketSessions, tokenID(cookie), func([]byte) ([]byte, error) { return nil, nil })
}
