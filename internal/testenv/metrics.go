package testenv

import (
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Scrape reads a metrics listener (host:port) with the Prometheus text parser into
// series → value: a series is its name, then its labels as name="value" sorted by name, in
// braces; a histogram or summary gives its _count.
func Scrape(t testing.TB, addr string) map[string]float64 {
	t.Helper()
	// No keep-alive: a scrape leaves no connection (nor goroutines) behind.
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scraping %s: %v", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/metrics: %d", addr, resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing the scrape of %s: %v", addr, err)
	}
	m := map[string]float64{}
	for name, f := range fams {
		for _, s := range f.GetMetric() {
			var ls []string
			for _, l := range s.GetLabel() {
				ls = append(ls, l.GetName()+"="+strconv.Quote(l.GetValue()))
			}
			sort.Strings(ls)
			key := name
			if len(ls) > 0 {
				key += "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case s.Counter != nil:
				m[key] = s.GetCounter().GetValue()
			case s.Gauge != nil:
				m[key] = s.GetGauge().GetValue()
			case s.Untyped != nil:
				m[key] = s.GetUntyped().GetValue()
			case s.Histogram != nil:
				m[key+"_count"] = float64(s.GetHistogram().GetSampleCount())
			case s.Summary != nil:
				m[key+"_count"] = float64(s.GetSummary().GetSampleCount())
			}
		}
	}
	return m
}
