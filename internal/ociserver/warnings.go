package ociserver

import (
	"context"
	"fmt"
	"net/http"
)

type warningsKey struct{}

// withWarnings lets backends add warnings to the response headers h.
func withWarnings(ctx context.Context, h http.Header) context.Context {
	return context.WithValue(ctx, warningsKey{}, h)
}

// Warn tells the client that the answer to the request ctx belongs to is
// served but degraded: stale, or missing a part that could not be had. It
// becomes a Warning header (RFC 9111's warn-code and text), so a backend
// says it without knowing HTTP. Outside a request it does nothing.
func Warn(ctx context.Context, code int, text string) {
	if h, ok := ctx.Value(warningsKey{}).(http.Header); ok {
		h.Add("Warning", fmt.Sprintf("%03d - %q", code, text))
	}
}

// WithoutWarnings is ctx without its request's warnings: work that
// outlives the request, or serves other requests too, must not add to
// one request's headers.
func WithoutWarnings(ctx context.Context) context.Context {
	return context.WithValue(ctx, warningsKey{}, nil)
}
