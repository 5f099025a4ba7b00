package cluster

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

var (
	oldSecret = []byte("old-secret-0123456789abcdef0123456789")
	newSecret = []byte("new-secret-0123456789abcdef0123456789")
)

func newAuth(t *testing.T, s Secrets, maxNonces int) *Authenticator {
	t.Helper()
	a, err := NewAuthenticator(AuthConfig{Secrets: s, MaxNonces: maxNonces})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func blobRequest(method string) *http.Request {
	return httptest.NewRequest(method, "/v2/library/node/blobs/"+sha256Hex, nil)
}

func signed(t *testing.T, a *Authenticator, r *http.Request) *http.Request {
	t.Helper()
	if err := a.Sign(r); err != nil {
		t.Fatal(err)
	}
	return r
}

// verifyStatus runs r through Verify and returns the status: 204 when it
// reached the handler as a peer's request.
func verifyStatus(a *Authenticator, r *http.Request) int {
	rec := httptest.NewRecorder()
	a.Verify(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !FromPeer(r.Context()) {
			http.Error(w, "not marked as a peer's", http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})).ServeHTTP(rec, r)
	return rec.Code
}

// Time is the bubble's, so the boundaries are exact: the synctest clock
// starts on a whole second.
func TestVerifyAcceptsTimestampsWithinMaxSkew(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAuth(t, Secrets{Current: newSecret}, 0)
		for _, c := range []struct {
			offset time.Duration
			want   int
		}{
			{-MaxSkew - time.Second, http.StatusUnauthorized},
			{-MaxSkew, http.StatusNoContent},
			{0, http.StatusNoContent},
			{MaxSkew, http.StatusNoContent},
			{MaxSkew + time.Second, http.StatusUnauthorized},
		} {
			r := blobRequest(http.MethodGet)
			if err := a.signAt(r, time.Now().Add(c.offset)); err != nil {
				t.Fatal(err)
			}
			if got := verifyStatus(a, r); got != c.want {
				t.Errorf("signed %s from now: %d; want %d", c.offset, got, c.want)
			}
		}
		late := signed(t, a, blobRequest(http.MethodGet))
		time.Sleep(MaxSkew + time.Second)
		if got := verifyStatus(a, late); got != http.StatusUnauthorized {
			t.Errorf("verified %s after signing: %d; want 401", MaxSkew+time.Second, got)
		}
	})
}

func TestVerifyRefusesUnsignedAndAltered(t *testing.T) {
	t.Parallel()
	a := newAuth(t, Secrets{Current: newSecret}, 0)
	other := newAuth(t, Secrets{Current: oldSecret}, 0)
	unauthorized := map[string]func() *http.Request{
		"unsigned": func() *http.Request { return blobRequest(http.MethodGet) },
		"wrong secret": func() *http.Request {
			return signed(t, other, blobRequest(http.MethodGet))
		},
		"no nonce": func() *http.Request {
			r := signed(t, a, blobRequest(http.MethodGet))
			r.Header.Del(headerNonce)
			return r
		},
		"nonce not hex": func() *http.Request {
			r := signed(t, a, blobRequest(http.MethodGet))
			r.Header.Set(headerNonce, strings.Repeat("z", 32))
			return r
		},
		"time not a number": func() *http.Request {
			r := signed(t, a, blobRequest(http.MethodGet))
			r.Header.Set(headerTime, "soon")
			return r
		},
		"signature cut": func() *http.Request {
			r := signed(t, a, blobRequest(http.MethodGet))
			r.Header.Set(headerSignature, r.Header.Get(headerSignature)[:32])
			return r
		},
		"path changed": func() *http.Request {
			r := signed(t, a, blobRequest(http.MethodGet))
			r.URL.Path = strings.Replace(r.URL.Path, "library/node", "library/rust", 1)
			return r
		},
		"another host": func() *http.Request {
			r := signed(t, a, blobRequest(http.MethodGet))
			r.Host = "10.0.0.9:5000"
			return r
		},
		"query added": func() *http.Request {
			r := signed(t, a, blobRequest(http.MethodGet))
			r.URL.RawQuery = "ns=evil.example"
			return r
		},
		"range added": func() *http.Request {
			r := signed(t, a, blobRequest(http.MethodGet))
			r.Header.Set("Range", "bytes=0-1")
			return r
		},
		"method changed": func() *http.Request {
			r := signed(t, a, blobRequest(http.MethodGet))
			r.Method = http.MethodHead
			return r
		},
	}
	for name, req := range unauthorized {
		if got := verifyStatus(a, req()); got != http.StatusUnauthorized {
			t.Errorf("%s: %d; want 401", name, got)
		}
	}
	forbidden := map[string]*http.Request{
		"POST":      blobRequest(http.MethodPost),
		"DELETE":    blobRequest(http.MethodDelete),
		"catalog":   httptest.NewRequest(http.MethodGet, "/v2/_catalog", nil),
		"tags":      httptest.NewRequest(http.MethodGet, "/v2/library/node/tags/list", nil),
		"not /v2/":  httptest.NewRequest(http.MethodGet, "/metrics", nil),
		"an upload": httptest.NewRequest(http.MethodGet, "/v2/library/node/blobs/uploads/1", nil),
	}
	for name, r := range forbidden {
		if got := verifyStatus(a, signed(t, a, r)); got != http.StatusForbidden {
			t.Errorf("signed %s: %d; want 403", name, got)
		}
	}
}

func TestVerifyRefusesReplays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAuth(t, Secrets{Current: newSecret}, 0)
		r := signed(t, a, blobRequest(http.MethodGet))
		if got := verifyStatus(a, r); got != http.StatusNoContent {
			t.Fatalf("first: %d; want 204", got)
		}
		for _, after := range []time.Duration{0, MaxSkew} {
			time.Sleep(after)
			if got := verifyStatus(a, r); got != http.StatusUnauthorized {
				t.Errorf("replayed %s later: %d; want 401", after, got)
			}
		}
	})
}

// The nonces remembered never exceed the bound: past it Verify refuses
// with 503 rather than forget a nonce still in its window.
func TestVerifyBoundsTheNoncesItRemembers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAuth(t, Secrets{Current: newSecret}, 2)
		first := signed(t, a, blobRequest(http.MethodGet))
		for i, r := range []*http.Request{first, signed(t, a, blobRequest(http.MethodGet))} {
			if got := verifyStatus(a, r); got != http.StatusNoContent {
				t.Fatalf("request %d: %d; want 204", i, got)
			}
		}
		rec := httptest.NewRecorder()
		a.Verify(http.NotFoundHandler()).ServeHTTP(rec, signed(t, a, blobRequest(http.MethodGet)))
		if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
			t.Errorf("third request: %d, Retry-After %q; want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
		}
		if got := verifyStatus(a, first); got != http.StatusUnauthorized {
			t.Errorf("replay when full: %d; want 401", got)
		}
		time.Sleep(nonceTTL - time.Second)
		if got := verifyStatus(a, signed(t, a, blobRequest(http.MethodGet))); got != http.StatusServiceUnavailable {
			t.Errorf("before the first nonces expire: %d; want 503", got)
		}
		time.Sleep(time.Second)
		if got := verifyStatus(a, signed(t, a, blobRequest(http.MethodGet))); got != http.StatusNoContent {
			t.Errorf("once the first nonces expired: %d; want 204", got)
		}
		if n := len(a.nonces.seen); n != 1 {
			t.Errorf("%d nonces remembered; want 1", n)
		}
	})
}

func TestSecretsMustBeLongEnough(t *testing.T) {
	t.Parallel()
	short := []byte("short-secret")
	for name, cfg := range map[string]AuthConfig{
		"no secret":      {},
		"short current":  {Secrets: Secrets{Current: short}},
		"short previous": {Secrets: Secrets{Current: newSecret, Previous: short}},
		"negative bound": {Secrets: Secrets{Current: newSecret}, MaxNonces: -1},
	} {
		_, err := NewAuthenticator(cfg)
		if err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), string(short)) {
			t.Errorf("%s: the error shows the secret: %v", name, err)
		}
	}
}

func TestReadSecretFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good, short := filepath.Join(dir, "good"), filepath.Join(dir, "short")
	if err := os.WriteFile(good, append(append([]byte(" "), newSecret...), "\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(short, []byte("tiny-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSecretFile(good)
	if err != nil || !bytes.Equal(got, newSecret) {
		t.Errorf("ReadSecretFile = %q, %v; want the secret without white space", got, err)
	}
	if _, err := ReadSecretFile(short); err == nil || strings.Contains(err.Error(), "tiny") {
		t.Errorf("short secret: %v; want an error that does not show it", err)
	}
	if _, err := ReadSecretFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file: no error")
	}
}
