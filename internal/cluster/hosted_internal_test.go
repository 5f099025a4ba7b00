package cluster

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// A signature made for one channel is refused on the other, however the
// request is marked: a hosted forward, served with the client's own
// credentials, never passes as a trusted forward, served with a peer's
// rights, nor the other way round.
func TestChannelSignaturesAreNotInterchangeable(t *testing.T) {
	t.Parallel()
	a, err := NewAuthenticator(AuthConfig{Secrets: Secrets{Current: []byte("0123456789abcdef0123456789abcdef-channels")}})
	if err != nil {
		t.Fatal(err)
	}
	path := "/v2/team/app/manifests/sha256:" + "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	now := time.Now()
	tests := []struct {
		name         string
		signed, read channel
	}{
		{"hosted signature read as trusted", hostedChannel, trusted},
		{"trusted signature read as hosted", trusted, hostedChannel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "http://owner:5000"+path, nil)
			r.Header.Set(headerHostedBy, "http://sender:5000")
			r.Header.Set(headerForwardedBy, "http://sender:5000")
			if err := a.signOn(tt.signed, r, now); err != nil {
				t.Fatal(err)
			}
			if ref := a.verifyOn(tt.read, r, now, func() *refusal { return nil }); ref != errBadSig {
				t.Errorf("verify = %v, want %v", ref, errBadSig)
			}
			if ref := a.verifyOn(tt.signed, r, now, func() *refusal { return nil }); ref != nil {
				t.Errorf("the control, verified on its own channel: %v", ref)
			}
		})
	}
}
