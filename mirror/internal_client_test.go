package mirror_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/mirror"
)

// The daemon's own requests (a prefetch list) are not held to the
// per-client miss burst, which a long list would exhaust; a network client
// naming itself the same way is.
func TestInternalClientSkipsPerClientMissLimit(t *testing.T) {
	t.Parallel()
	const burst, misses = 3, 12
	e := newEnv(t, envOptions{missLimits: mirror.MissLimits{PerClientRate: 0.001, PerClientBurst: burst}})
	e.pushNode(t, 1, 1024)
	for _, tt := range []struct {
		name     string
		internal bool
		min, max int // upstream manifest requests
	}{{"network client", false, 1, burst}, {"internal client", true, misses, 2 * misses}} {
		e.upstream.Reset()
		for i := range misses {
			req := httptest.NewRequest(http.MethodGet, fmt.Sprintf("/v2/library/node/manifests/%s-%d", tt.name[:3], i), nil)
			req.RemoteAddr = "prefetch"
			if tt.internal {
				req = req.WithContext(mirror.AsInternalClient(req.Context()))
			}
			e.m.ServeHTTP(httptest.NewRecorder(), req)
		}
		asked := e.upstream.CountRequests(func(r registrytest.Request) bool { return r.Kind == registrytest.KindManifest })
		if asked < tt.min || asked > tt.max {
			t.Errorf("%s: %d misses reached the upstream %d times, want %d to %d", tt.name, misses, asked, tt.min, tt.max)
		}
	}
}
