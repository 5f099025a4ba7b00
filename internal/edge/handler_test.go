package edge

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
)

func TestCanonical(t *testing.T) {
	t.Parallel()
	tests := []struct {
		path string
		want bool
	}{
		{"/", true},
		{"/v2", true},
		{"/v2/", true},
		{"/v2/library/node/manifests/latest", true},
		{"/v2/library/node/blobs/uploads/", true},
		{"/status.json", true},
		{"", false},
		{"v2/", false},
		{"/v2/a/../b/manifests/latest", false},
		{"/v2/a//b/manifests/latest", false},
		{"/v2/./x/manifests/latest", false},
		{"/v2/x/manifests/.", false},
		{"/v2/x/..", false},
		{"//status.json", false},
		{"/v2//", false},
	}
	for _, tt := range tests {
		if got := canonical(tt.path); got != tt.want {
			t.Errorf("canonical(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
}

// The handler refuses before next runs; what it refuses with is an OCI
// error body.
func TestHandlerRefusesBeforeTheRegistry(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		method   string
		target   string
		body     string
		wantCode string
	}{
		{"dot-dot path", http.MethodGet, "/v2/a/../b/manifests/latest", "", "NAME_INVALID"},
		{"body on GET", http.MethodGet, "/v2/a/blobs/sha256:00", "0123456789", "UNSUPPORTED"},
		{"body on DELETE", http.MethodDelete, "/v2/a/manifests/latest", "x", "UNSUPPORTED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reached := false
			h := Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }), Options{})
			w := httptest.NewRecorder()
			r := httptest.NewRequest(tt.method, "/", strings.NewReader(tt.body))
			r.URL.Path = tt.target
			h.ServeHTTP(w, r)
			var body struct {
				Errors []struct{ Code string } `json:"errors"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || len(body.Errors) != 1 {
				t.Fatalf("body %q: %v", w.Body, err)
			}
			if reached || w.Code != http.StatusBadRequest || body.Errors[0].Code != tt.wantCode {
				t.Errorf("reached next: %v; answer %d %s, want 400 %s", reached, w.Code, body.Errors[0].Code, tt.wantCode)
			}
		})
	}
}

func mustAddrPort(t *testing.T, s string) netip.Addr {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatal(err)
	}
	return ap.Addr()
}
