package pac

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"maintproxy/config"
)

// maxOverviewBytes is the budget for the overview of 1,000 systems.
const maxOverviewBytes = 300 << 10

// scaleHandler serves a reseller "big" with 250 customers of 4 systems each (1,000
// systems) in every state of the lights.
func scaleHandler(tb testing.TB) http.Handler {
	tb.Helper()
	var customers []config.Customer
	var ids []string
	for i := range 250 {
		id := fmt.Sprintf("%d", 100000+i)
		ids = append(ids, id)
		c := config.Customer{ID: id, Name: fmt.Sprintf("Customer number %d, Hotel & Spa", i)}
		for j, name := range []string{"primary", "se2", "se3", "ucm-north"} {
			c.Systems = append(c.Systems, config.System{Name: name, Primary: j == 0, AgentSecretHash: fakeHash})
		}
		customers = append(customers, c)
	}
	cfg, err := config.NewBroker(config.Broker{
		Domain:    "example.test",
		Listen:    config.Listen{Proxy: "127.0.0.1:16443", Web: "127.0.0.1:8443"},
		Accounts:  []config.Account{{Username: "big", PasswordHash: fakeHash, Customers: ids}},
		Customers: customers,
	})
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	states := []SystemStatus{
		{Online: true, Since: now.Add(-3 * time.Hour), Reported: true, RemoteAccess: true, Services: []int{22, 3389, 7071}},
		{Online: true, Since: now.Add(-30 * time.Hour), Reported: true, Services: []int{22}},
		{Since: now.Add(-50 * time.Minute), Reported: true, RemoteAccess: true},
		{},
		{LoginFailed: now.Add(-time.Minute)},
	}
	n := 0
	status := map[string]SystemStatus{}
	for _, c := range cfg.Customers {
		for _, s := range c.Systems {
			status[c.ID+"/"+s.Name] = states[n%len(states)]
			n++
		}
	}
	return New(Options{
		Config: func() *config.Broker { return cfg },
		Status: func(customer, system string) SystemStatus { return status[customer+"/"+system] },
		Authenticate: func(user, pass, ip string) (*config.Account, error) {
			return cfg.Account("big"), nil
		},
		RootPEM: func() []byte { return []byte(testRoot) },
	})
}

func getOverview(tb testing.TB, h http.Handler, accept string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "https://admin.example.test:8443/com/remoteproxy/access", nil)
	r.SetBasicAuth("big", "x")
	r.Header.Set("Accept", accept)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		tb.Fatalf("status %d: %.300s", w.Code, w.Body)
	}
	return w
}

// TestOverviewScale: the overview of 1,000 systems stays within its size budget and lists
// every system. (Its render time is BenchmarkOverview1000's, and the browser's is logged by
// the e2e browser test.)
func TestOverviewScale(t *testing.T) {
	h := scaleHandler(t)
	page := getOverview(t, h, "text/html").Body.String()
	if rows := strings.Count(page, "<tr data-l="); rows != 1000 {
		t.Errorf("%d system rows, want 1000", rows)
	}
	if len(page) > maxOverviewBytes {
		t.Errorf("overview of 1,000 systems is %d bytes, budget %d", len(page), maxOverviewBytes)
	}
	json := getOverview(t, h, "application/json").Body.Len()
	t.Logf("overview of 1,000 systems: HTML %d bytes (%.0f per system), JSON %d bytes", len(page), float64(len(page))/1000, json)
}

// BenchmarkOverview1000 measures the server's render of the 1,000-system overview (ns/op)
// and its size.
func BenchmarkOverview1000(b *testing.B) {
	h := scaleHandler(b)
	var size int
	b.ResetTimer()
	for b.Loop() {
		size = getOverview(b, h, "text/html").Body.Len()
	}
	b.ReportMetric(float64(size), "bytes/page")
}
