package ociserver

import (
	"context"
	"net/http"
	"testing"
)

// A warning added through a context stripped of its request's warnings
// reaches no response.
func TestWithoutWarningsDropsWarnings(t *testing.T) {
	h := http.Header{}
	ctx := withWarnings(context.Background(), h)
	Warn(WithoutWarnings(ctx), 110, "stale")
	if len(h) != 0 {
		t.Fatalf("headers %v, want none", h)
	}
	Warn(ctx, 110, "Response is Stale")
	if got := h.Get("Warning"); got != `110 - "Response is Stale"` {
		t.Fatalf("Warning %q", got)
	}
}
