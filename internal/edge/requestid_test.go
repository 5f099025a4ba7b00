package edge

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Every request reaches next with an ID, the response carries the same
// one, and only a trusted proxy's ID is kept.
func TestHandlerGivesEveryRequestAnID(t *testing.T) {
	t.Parallel()
	proxies, err := ParseProxies([]string{"10.0.0.0/8"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		remote string
		id     string // X-Request-Id sent
		keep   bool   // want id kept, not replaced
	}{
		{name: "none sent", remote: "203.0.113.5:4000"},
		{name: "untrusted peer's is replaced", remote: "203.0.113.5:4000", id: "forged-id-1"},
		{name: "trusted proxy's is kept", remote: "10.1.2.3:4000", id: "4f1c0a9e8d7b6c5a4f3e2d1c0b9a8f7e", keep: true},
		{name: "trusted proxy, none sent", remote: "10.1.2.3:4000"},
		{name: "trusted proxy's with a space is replaced", remote: "10.1.2.3:4000", id: "a b"},
		{name: "trusted proxy's with a quote is replaced", remote: "10.1.2.3:4000", id: `a"b`},
		{name: "trusted proxy's too long is replaced", remote: "10.1.2.3:4000", id: strings.Repeat("a", maxRequestIDLength+1)},
		{name: "trusted proxy's longest is kept", remote: "10.1.2.3:4000", id: strings.Repeat("a", maxRequestIDLength), keep: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var seen []string
			h := Handler(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
				seen = append(seen, r.Header.Get(RequestIDHeader))
			}), Options{Proxies: proxies})
			var answered []string
			for range 2 {
				r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
				r.RemoteAddr = tt.remote
				if tt.id != "" {
					r.Header.Set(RequestIDHeader, tt.id)
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				answered = append(answered, w.Header().Get(RequestIDHeader))
				if got := r.Header.Get(RequestIDHeader); got != tt.id {
					t.Errorf("the server's request was changed: its ID is %q, was %q", got, tt.id)
				}
			}
			for i := range answered {
				if answered[i] != seen[i] || !validRequestID(answered[i]) {
					t.Fatalf("request %d: next saw ID %q, the response says %q; want the same valid ID", i, seen[i], answered[i])
				}
				if kept := answered[i] == tt.id; kept != tt.keep {
					t.Errorf("request %d: ID %q for %q sent, kept: %v, want %v", i, answered[i], tt.id, kept, tt.keep)
				}
			}
			if !tt.keep && answered[0] == answered[1] {
				t.Errorf("two requests were given the same new ID %q", answered[0])
			}
		})
	}
}

// A refused request's log line names its ID and its client without a port.
func TestRefusalLogNamesRequestIDAndClient(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	h := Handler(http.NotFoundHandler(), Options{Log: slog.New(slog.NewTextHandler(&logs, nil))})
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.URL.Path = "/v2/a/../b/manifests/latest"
	r.RemoteAddr = "203.0.113.5:4000"
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	id := w.Header().Get(RequestIDHeader)
	if w.Code != http.StatusBadRequest || id == "" {
		t.Fatalf("answer %d with ID %q, want 400 with an ID", w.Code, id)
	}
	for _, want := range []string{"request_id=" + id, "client=203.0.113.5 "} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log %q lacks %q", logs.String(), want)
		}
	}
}
