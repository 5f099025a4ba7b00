package mirror_test

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/mirror"
)

// upload is one blob upload as alice or bob.
type upload struct {
	e        *limitsEnv
	user     string
	location string
}

func (e *limitsEnv) startUpload(t *testing.T, user, repo string) (upload, hostedResponse) {
	t.Helper()
	got := e.do(t, nil, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", nil, user, limitsUsers[user])
	return upload{e: e, user: user, location: got.header.Get("Location")}, got
}

func (u upload) send(t *testing.T, method, query string, body io.Reader, header http.Header) hostedResponse {
	t.Helper()
	req, err := http.NewRequest(method, u.e.server.URL+u.location+query, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.SetBasicAuth(u.user, limitsUsers[u.user])
	resp, err := u.e.server.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u.location, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return hostedResponse{status: resp.StatusCode, header: resp.Header, body: data}
}

// pushBlob uploads data monolithically as user and returns the answer.
func (e *limitsEnv) pushBlob(t *testing.T, user, repo string, data []byte) hostedResponse {
	t.Helper()
	return e.do(t, nil, http.MethodPost, "/v2/"+repo+"/blobs/uploads/?digest="+digest.FromBytes(data).String(),
		bytes.NewReader(data), user, limitsUsers[user])
}

// stagedUploads lists the upload sessions on disk.
func (e *limitsEnv) stagedUploads(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(e.dir, "uploads"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, entry := range entries {
		names = append(names, entry.Name())
	}
	return names
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// streamed hides a reader's length, so the request body is chunked.
type streamed struct{ io.Reader }

// An upload larger than the size cap is refused with SIZE_INVALID (413),
// however it arrives, and the upload is discarded: no staged bytes stay on
// disk and nothing is stored.
func TestUploadOverSizeCapIsRefusedAndDiscarded(t *testing.T) {
	t.Parallel()
	const limit = 1024
	big := make([]byte, 2*limit)
	cases := []struct {
		name string
		send func(t *testing.T, e *limitsEnv, data []byte) hostedResponse
	}{
		{"monolithic POST", func(t *testing.T, e *limitsEnv, data []byte) hostedResponse {
			return e.pushBlob(t, "alice", "team/app", data)
		}},
		{"one PATCH with its length", func(t *testing.T, e *limitsEnv, data []byte) hostedResponse {
			u, _ := e.startUpload(t, "alice", "team/app")
			return u.send(t, http.MethodPatch, "", bytes.NewReader(data), nil)
		}},
		{"one streamed PATCH", func(t *testing.T, e *limitsEnv, data []byte) hostedResponse {
			u, _ := e.startUpload(t, "alice", "team/app")
			return u.send(t, http.MethodPatch, "", streamed{bytes.NewReader(data)}, nil)
		}},
		{"chunks that add up past it", func(t *testing.T, e *limitsEnv, data []byte) hostedResponse {
			u, _ := e.startUpload(t, "alice", "team/app")
			half := len(data) / 2
			if got := u.send(t, http.MethodPatch, "", bytes.NewReader(data[:half]), http.Header{"Content-Range": {"0-" + strconv.Itoa(half-1)}}); got.status != http.StatusAccepted {
				t.Fatalf("first chunk = %d %s", got.status, got.body)
			}
			return u.send(t, http.MethodPatch, "", streamed{bytes.NewReader(data[half:])}, nil)
		}},
		{"the last chunk in the PUT", func(t *testing.T, e *limitsEnv, data []byte) hostedResponse {
			u, _ := e.startUpload(t, "alice", "team/app")
			return u.send(t, http.MethodPut, "?digest="+digest.FromBytes(data).String(), bytes.NewReader(data), nil)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newLimitsEnv(t, mirror.HostedOptions{Repositories: []string{"team/*"}, Uploads: mirror.UploadLimits{MaxUploadSize: limit}})
			data := append([]byte(nil), big...)
			copy(data, randomBytes(t, 32))
			got := tc.send(t, e, data)
			if got.status != http.StatusRequestEntityTooLarge || got.errorCode() != "SIZE_INVALID" {
				t.Fatalf("an upload of %d bytes with a cap of %d = %d %s, want 413 SIZE_INVALID", len(data), limit, got.status, got.body)
			}
			if staged := e.stagedUploads(t); len(staged) != 0 {
				t.Errorf("the refused upload left sessions on disk: %v", staged)
			}
			blob := e.do(t, nil, http.MethodHead, "/v2/team/app/blobs/"+digest.FromBytes(data).String(), nil, "alice", limitsUsers["alice"])
			if blob.status != http.StatusNotFound {
				t.Errorf("HEAD of the refused blob = %d, want 404", blob.status)
			}
		})
	}
	t.Run("at the cap", func(t *testing.T) {
		t.Parallel()
		e := newLimitsEnv(t, mirror.HostedOptions{Repositories: []string{"team/*"}, Uploads: mirror.UploadLimits{MaxUploadSize: limit}})
		if got := e.pushBlob(t, "alice", "team/app", randomBytes(t, limit)); got.status != http.StatusCreated {
			t.Fatalf("an upload of exactly the cap = %d %s, want 201", got.status, got.body)
		}
	})
}

// A user may hold DefaultMaxUploadSessions open uploads; one more is
// refused with DENIED and stages nothing, while other users are not
// affected, and finishing or cancelling one frees its place.
func TestUploadSessionsPerUserAreCapped(t *testing.T) {
	t.Parallel()
	e := newLimitsEnv(t, mirror.HostedOptions{Repositories: []string{"team/*"}})
	var open []upload
	for i := range mirror.DefaultMaxUploadSessions {
		u, got := e.startUpload(t, "alice", "team/app")
		if got.status != http.StatusAccepted {
			t.Fatalf("alice's upload %d = %d %s, want 202", i+1, got.status, got.body)
		}
		open = append(open, u)
	}
	staged := len(e.stagedUploads(t))
	if _, got := e.startUpload(t, "alice", "team/other"); got.status != http.StatusForbidden || got.errorCode() != "DENIED" {
		t.Fatalf("alice's upload %d = %d %s, want 403 DENIED", mirror.DefaultMaxUploadSessions+1, got.status, got.body)
	}
	if got := e.pushBlob(t, "alice", "team/app", randomBytes(t, 16)); got.status != http.StatusForbidden {
		t.Fatalf("alice's monolithic upload over the cap = %d %s, want 403", got.status, got.body)
	}
	if n := len(e.stagedUploads(t)); n != staged {
		t.Errorf("refused uploads staged %d sessions", n-staged)
	}
	if _, got := e.startUpload(t, "bob", "team/app"); got.status != http.StatusAccepted {
		t.Errorf("bob's upload = %d %s, want 202", got.status, got.body)
	}
	if got := open[0].send(t, http.MethodDelete, "", nil, nil); got.status != http.StatusNoContent {
		t.Fatalf("cancelling an upload = %d %s", got.status, got.body)
	}
	if _, got := e.startUpload(t, "alice", "team/app"); got.status != http.StatusAccepted {
		t.Errorf("alice's upload after cancelling one = %d %s, want 202", got.status, got.body)
	}
}

// Pushes that would take a user's stored blobs past their storage cap are
// refused with DENIED and discarded; a blob the user stored already costs
// nothing more, and other users have caps of their own.
func TestStoragePerUserIsCapped(t *testing.T) {
	t.Parallel()
	e := newLimitsEnv(t, mirror.HostedOptions{Repositories: []string{"team/*"}, Uploads: mirror.UploadLimits{MaxStorage: 3000}})
	first, second := randomBytes(t, 2000), randomBytes(t, 2000)
	if got := e.pushBlob(t, "alice", "team/app", first); got.status != http.StatusCreated {
		t.Fatalf("alice's first blob = %d %s, want 201", got.status, got.body)
	}
	got := e.pushBlob(t, "alice", "team/app", second)
	if got.status != http.StatusForbidden || got.errorCode() != "DENIED" {
		t.Fatalf("alice's blob past her cap = %d %s, want 403 DENIED", got.status, got.body)
	}
	if staged := e.stagedUploads(t); len(staged) != 0 {
		t.Errorf("the refused upload left sessions on disk: %v", staged)
	}
	if got := e.do(t, nil, http.MethodHead, "/v2/team/app/blobs/"+digest.FromBytes(second).String(), nil, "alice", limitsUsers["alice"]); got.status != http.StatusNotFound {
		t.Errorf("HEAD of the refused blob = %d, want 404", got.status)
	}
	if got := e.pushBlob(t, "alice", "team/other", first); got.status != http.StatusCreated {
		t.Errorf("alice pushing her stored blob again = %d %s, want 201", got.status, got.body)
	}
	if got := e.pushBlob(t, "bob", "team/app", second); got.status != http.StatusCreated {
		t.Errorf("bob's blob = %d %s, want 201", got.status, got.body)
	}
}

// An upload session nobody touches for an hour is gone by default.
func TestIdleUploadSessionsExpireAfterAnHourByDefault(t *testing.T) {
	t.Parallel()
	e := newLimitsEnv(t, mirror.HostedOptions{Repositories: []string{"team/*"}})
	u, got := e.startUpload(t, "alice", "team/app")
	if got.status != http.StatusAccepted {
		t.Fatalf("start upload = %d %s", got.status, got.body)
	}
	e.clock.Advance(time.Hour + time.Minute)
	if got := u.send(t, http.MethodGet, "", nil, nil); got.status != http.StatusNotFound {
		t.Errorf("an upload idle for an hour = %d, want 404", got.status)
	}
}
