package mirror

import (
	"context"
	"io"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// authorizer lets through what the client may do and refuses the rest:
// pulls of hosted names need the pull permission, every write a login
// and, on a hosted name, the push or delete permission. Pulls of other
// names pass: they are anonymous, whatever the client sends (see doc.go).
type authorizer struct {
	ociserver.Backend
	m *Mirror
}

var _ ociserver.Backend = authorizer{}

// mayPull refuses a pull of a hosted name the client may not pull.
func (a authorizer) mayPull(ctx context.Context, repo ociserver.Repo) error {
	name, err := resolveHostedName(repo.Name, repo.NS, a.m.defaultHost)
	if err != nil || !a.m.hosted.isHostedName(name) {
		return err
	}
	return a.m.hosted.authorize(ctx, name, ActionPull)
}

// mayWrite refuses a write of action by a client without a valid login,
// or without the permission on a hosted name. Writes to other names are
// refused behind it, by the hosted backend.
func (a authorizer) mayWrite(ctx context.Context, repo ociserver.Repo, action Action) error {
	if !clientOf(ctx).loggedIn() {
		return refuseLogin(ctx, "pushing needs credentials: docker login")
	}
	name, err := resolveHostedName(repo.Name, repo.NS, a.m.defaultHost)
	if err != nil || !a.m.hosted.isHostedName(name) {
		return err
	}
	return a.m.hosted.authorize(ctx, name, action)
}

func (a authorizer) GetManifest(ctx context.Context, repo ociserver.Repo, ref string) (*ociserver.Manifest, error) {
	return then(a.mayPull(ctx, repo), func() (*ociserver.Manifest, error) { return a.Backend.GetManifest(ctx, repo, ref) })
}

func (a authorizer) GetBlob(ctx context.Context, repo ociserver.Repo, d digest.Digest, offset int64) (*ociserver.Blob, error) {
	return then(a.mayPull(ctx, repo), func() (*ociserver.Blob, error) { return a.Backend.GetBlob(ctx, repo, d, offset) })
}

func (a authorizer) Tags(ctx context.Context, repo ociserver.Repo) ([]string, error) {
	return then(a.mayPull(ctx, repo), func() ([]string, error) { return a.Backend.Tags(ctx, repo) })
}

func (a authorizer) Referrers(ctx context.Context, repo ociserver.Repo, d digest.Digest) ([]ocispec.Descriptor, error) {
	return then(a.mayPull(ctx, repo), func() ([]ocispec.Descriptor, error) { return a.Backend.Referrers(ctx, repo, d) })
}

func (a authorizer) StartUpload(ctx context.Context, repo ociserver.Repo) (string, error) {
	return then(a.mayWrite(ctx, repo, ActionPush), func() (string, error) { return a.Backend.StartUpload(ctx, repo) })
}

func (a authorizer) UploadSize(ctx context.Context, repo ociserver.Repo, id string) (int64, error) {
	return then(a.mayWrite(ctx, repo, ActionPush), func() (int64, error) { return a.Backend.UploadSize(ctx, repo, id) })
}

func (a authorizer) WriteUpload(ctx context.Context, repo ociserver.Repo, id string, offset, length int64, body io.Reader) (int64, error) {
	return then(a.mayWrite(ctx, repo, ActionPush), func() (int64, error) { return a.Backend.WriteUpload(ctx, repo, id, offset, length, body) })
}

func (a authorizer) CommitUpload(ctx context.Context, repo ociserver.Repo, id string, d digest.Digest) error {
	return thenDo(a.mayWrite(ctx, repo, ActionPush), func() error { return a.Backend.CommitUpload(ctx, repo, id, d) })
}

// CancelUpload needs the push permission, like the upload: an upload
// belongs to the repository, and DELETE of one deletes nothing stored.
func (a authorizer) CancelUpload(ctx context.Context, repo ociserver.Repo, id string) error {
	return thenDo(a.mayWrite(ctx, repo, ActionPush), func() error { return a.Backend.CancelUpload(ctx, repo, id) })
}

func (a authorizer) MountBlob(ctx context.Context, repo ociserver.Repo, from string, d digest.Digest) (bool, error) {
	return then(a.mayWrite(ctx, repo, ActionPush), func() (bool, error) { return a.Backend.MountBlob(ctx, repo, from, d) })
}

func (a authorizer) PushManifest(ctx context.Context, repo ociserver.Repo, read func() (*ociserver.PushedManifest, error)) error {
	return thenDo(a.mayWrite(ctx, repo, ActionPush), func() error { return a.Backend.PushManifest(ctx, repo, read) })
}

func (a authorizer) DeleteManifest(ctx context.Context, repo ociserver.Repo, d digest.Digest) error {
	return thenDo(a.mayWrite(ctx, repo, ActionDelete), func() error { return a.Backend.DeleteManifest(ctx, repo, d) })
}

func (a authorizer) DeleteTag(ctx context.Context, repo ociserver.Repo, tag string) error {
	return thenDo(a.mayWrite(ctx, repo, ActionDelete), func() error { return a.Backend.DeleteTag(ctx, repo, tag) })
}

func (a authorizer) DeleteBlob(ctx context.Context, repo ociserver.Repo, d digest.Digest) error {
	return thenDo(a.mayWrite(ctx, repo, ActionDelete), func() error { return a.Backend.DeleteBlob(ctx, repo, d) })
}

// then returns next's answer unless refusal refuses.
func then[T any](refusal error, next func() (T, error)) (T, error) {
	if refusal != nil {
		var zero T
		return zero, refusal
	}
	return next()
}

// thenDo is then for answers that are only an error.
func thenDo(refusal error, next func() error) error {
	if refusal != nil {
		return refusal
	}
	return next()
}

// authorize lets the client do a on the hosted repository name, or says
// why not: a client that did not log in is challenged to, a user without
// the permission is refused.
func (h *hostedRepos) authorize(ctx context.Context, name string, a Action) error {
	who := clientOf(ctx)
	if h.allowed(who, name, a) {
		return nil
	}
	if !who.loggedIn() {
		return challenge(string(a) + " on " + truncate(name) + " needs credentials: docker login")
	}
	if a == ActionDelete && !h.allowDelete {
		return newError(ociserver.CodeUnsupported, "deleting is disabled on this mirror")
	}
	return newError(ociserver.CodeDenied, "%s may not %s %s", who.user, a, truncate(name))
}
