package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"maintproxy/config"
	"maintproxy/people"
)

const pw = "Abcdefgh1"

// testAPI serves the API over a bbolt store with distributor dist1 above reseller res1,
// distributor dist2, customers 100 (dist1's), 200 (res1's) and 300 (dist2's), and people:
// sup1 (supervisor of dist1), sup (supervisor of res1), op (operator of res1), ro
// (read-only of res1), op2 (operator of dist2), ca200 (admin of customer 200).
func testAPI(t *testing.T) (*httptest.Server, *people.Service) {
	t.Helper()
	h, _ := bcrypt.GenerateFromPassword([]byte("x"), bcrypt.MinCost)
	sys := []config.System{{Name: "se1", Primary: true, AgentSecretHash: string(h)}}
	cfg, err := config.NewBroker(config.Broker{Domain: "example.test",
		Accounts: []config.Account{
			{Username: "dist1", PasswordHash: string(h), Customers: []string{"100"}},
			{Username: "res1", PasswordHash: string(h), Customers: []string{"200"}, Parent: "dist1"},
			{Username: "dist2", PasswordHash: string(h), Customers: []string{"300"}},
		},
		Customers: []config.Customer{{ID: "100", Systems: sys}, {ID: "200", Systems: sys}, {ID: "300", Systems: sys}},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := people.NewBolt(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	conf := func() *config.Broker { return cfg }
	svc, err := people.Open(context.Background(), people.Options{Backend: b, Config: conf, HashCost: bcrypt.MinCost})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	for _, n := range []people.NewPerson{
		{Username: "sup1", Org: "dist1", Role: people.RoleSupervisor}, {Username: "sup", Org: "res1", Role: people.RoleSupervisor},
		{Username: "op", Org: "res1", Role: people.RoleOperator}, {Username: "ro", Org: "res1", Role: people.RoleReadonly},
		{Username: "op2", Org: "dist2", Role: people.RoleOperator}, {Username: "ca200", Customer: "200"},
	} {
		n.Password = pw
		if _, err := svc.AddPerson(context.Background(), n); err != nil {
			t.Fatal(err)
		}
	}
	// The proxy's check, reduced to what the API relies on: a person's password, a token.
	auth := func(user, pass, _ string) (people.Principal, error) {
		if u, ok := cutToken(user); ok {
			return svc.VerifyToken(u, pass)
		}
		p, ok := svc.Person(user)
		if !ok || bcrypt.CompareHashAndPassword([]byte(p.PasswordHash), []byte(pass)) != nil {
			return people.Principal{}, errors.New("wrong username or password")
		}
		return svc.Principal(user)
	}
	srv := httptest.NewServer(New(Options{People: svc, Config: conf, Authenticate: auth}))
	t.Cleanup(srv.Close)
	return srv, svc
}

func cutToken(u string) (string, bool) {
	n := len(u) - len(people.TokenUserSuffix)
	if n > 0 && u[n:] == people.TokenUserSuffix {
		return u[:n], true
	}
	return "", false
}

func do(t *testing.T, srv *httptest.Server, method, path, user, pass string, body, out any) int {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, srv.URL+Prefix+path, rd)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode == http.StatusOK {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

// TestScopes: who may do what, for each role (see the package doc).
func TestScopes(t *testing.T) {
	srv, svc := testAPI(t)
	ctx := context.Background()
	for _, c := range []struct {
		name, method, path, user string
		body                     any
		want                     int
	}{
		{"no credentials", "GET", "me", "", nil, http.StatusUnauthorized},
		{"wrong password", "GET", "me", "op", nil, http.StatusUnauthorized},
		{"operator lists people", "GET", "people", "op", nil, http.StatusForbidden},
		{"read-only lists people", "GET", "people", "ro", nil, http.StatusForbidden},
		{"supervisor adds to another distributor", "POST", "people", "sup",
			map[string]string{"username": "x1", "org": "dist2", "role": "operator", "password": pw}, http.StatusForbidden},
		{"supervisor adds to the organisation above", "POST", "people", "sup",
			map[string]string{"username": "x2", "org": "dist1", "role": "operator", "password": pw}, http.StatusForbidden},
		{"supervisor adds a customer admin", "POST", "people", "sup",
			map[string]string{"username": "x3", "customer": "200", "password": pw}, http.StatusForbidden},
		{"supervisor adds to own organisation", "POST", "people", "sup",
			map[string]string{"username": "x4", "role": "readonly", "password": pw}, http.StatusOK},
		{"taken username", "POST", "people", "sup",
			map[string]string{"username": "op", "role": "readonly", "password": pw}, http.StatusConflict},
		{"distributor's supervisor adds to its reseller", "POST", "people", "sup1",
			map[string]string{"username": "x5", "org": "res1", "role": "operator", "password": pw}, http.StatusOK},
		{"reseller's supervisor disables the distributor's", "POST", "people/sup1/disable", "sup", nil, http.StatusNotFound},
		{"another distributor's operator", "GET", "people/op", "op2", nil, http.StatusNotFound},
		{"supervisor changes a role", "POST", "people/op/role", "sup", map[string]string{"role": "readonly"}, http.StatusOK},
		{"bad role", "POST", "people/op/role", "sup", map[string]string{"role": "god"}, http.StatusBadRequest},
		{"unknown field", "POST", "people/op/role", "sup", map[string]string{"rol": "operator"}, http.StatusBadRequest},
		{"customer admin sets another customer's mode", "PUT", "modes/300/se1", "ca200", map[string]string{"mode": "approval"}, http.StatusForbidden},
		{"customer admin sets its mode", "PUT", "modes/200/se1", "ca200", map[string]string{"mode": "approval"}, http.StatusOK},
		{"operator sets a mode", "PUT", "modes/200/se1", "op2", map[string]string{"mode": "always"}, http.StatusForbidden},
		{"supervisor reads requests", "GET", "requests", "sup", nil, http.StatusForbidden},
		{"supervisor takes a backup", "GET", "backup", "sup", nil, http.StatusForbidden},
		{"customer admin restores", "POST", "restore", "ca200", map[string]string{}, http.StatusForbidden},
		{"own password, wrong current", "POST", "me/password", "op2", map[string]string{"current": "nope", "new": "Newpass-12"}, http.StatusForbidden},
		{"own password, reused", "POST", "me/password", "op2", map[string]string{"current": pw, "new": pw}, http.StatusBadRequest},
		{"own password", "POST", "me/password", "op2", map[string]string{"current": pw, "new": "Newpass-12"}, http.StatusOK},
		{"unknown endpoint", "GET", "nothing", "op", nil, http.StatusNotFound},
	} {
		pass := pw
		if c.name == "wrong password" {
			pass = "wrong"
		}
		if got := do(t, srv, c.method, c.path, c.user, pass, c.body, nil); got != c.want {
			t.Errorf("%s: %s %s as %s = %d, want %d", c.name, c.method, c.path, c.user, got, c.want)
		}
	}

	var list []PersonView
	do(t, srv, "GET", "people", "sup1", pw, nil, &list)
	if len(list) != 6 { // sup1, sup, op, ro, x4, x5: dist1's and res1's, not dist2's
		t.Errorf("dist1's supervisor sees %d people, want 6: %+v", len(list), list)
	}
	do(t, srv, "GET", "people", "sup", pw, nil, &list)
	if len(list) != 5 { // sup, op, ro, x4 and x5 (added to res1 by sup1)
		t.Errorf("res1's supervisor sees %d people, want 5: %+v", len(list), list)
	}
	for _, v := range list {
		if v.Org != "res1" {
			t.Errorf("res1's supervisor sees %s of %s", v.Username, v.Org)
		}
	}

	// Tokens: a login with a token gets no new token; logout revokes it.
	var tok LoginAnswer
	if code := do(t, srv, "POST", "login", "op", pw, nil, &tok); code != http.StatusOK || tok.ProxyUsername != "op+token" {
		t.Fatalf("login: %d %+v", code, tok)
	}
	if code := do(t, srv, "POST", "login", tok.ProxyUsername, tok.Token, nil, nil); code != http.StatusForbidden {
		t.Errorf("a token got a token: %d", code)
	}
	if code := do(t, srv, "GET", "me", tok.ProxyUsername, tok.Token, nil, nil); code != http.StatusOK {
		t.Errorf("me with a token: %d", code)
	}
	if code := do(t, srv, "POST", "logout", tok.ProxyUsername, tok.Token, nil, nil); code != http.StatusOK {
		t.Errorf("logout: %d", code)
	}
	if code := do(t, srv, "GET", "me", tok.ProxyUsername, tok.Token, nil, nil); code != http.StatusUnauthorized {
		t.Errorf("me after logout: %d", code)
	}

	// A customer admin sees its own requests only and answers them.
	ca, _ := svc.Principal("op2")
	svc.SetMode(ctx, "300", "se1", people.ModeApproval, "test")
	svc.Authorize(ctx, ca, "300", "se1", "")
	opP, _ := svc.Principal("sup")
	svc.Authorize(ctx, opP, "200", "se1", "")
	var reqs []people.Request
	if do(t, srv, "GET", "requests", "ca200", pw, nil, &reqs); len(reqs) != 1 || reqs[0].Customer != "200" {
		t.Fatalf("ca200's requests: %+v", reqs)
	}
	other := svc.Requests("300")[0].ID
	if code := do(t, srv, "POST", "requests/"+other+"/grant", "ca200", pw, map[string]string{"duration": "1h"}, nil); code != http.StatusNotFound {
		t.Errorf("ca200 granted another customer's request: %d", code)
	}
	if code := do(t, srv, "POST", "requests/"+reqs[0].ID+"/grant", "ca200", pw, map[string]string{"duration": "forever"}, nil); code != http.StatusBadRequest {
		t.Errorf("a bad duration: %d", code)
	}
	if code := do(t, srv, "POST", "requests/"+reqs[0].ID+"/grant", "ca200", pw, map[string]string{"duration": "1h"}, nil); code != http.StatusOK {
		t.Errorf("grant: %d", code)
	}
	if err := svc.Authorize(ctx, opP, "200", "se1", ""); err != nil {
		t.Errorf("after the grant: %v", err)
	}
}
