package mirror

import (
	"context"
	"io"

	"github.com/opencontainers/go-digest"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// readOnly is a backend that answers reads with its Reader and refuses
// every write: a mirror without hosted repositories serves pulls only.
type readOnly struct{ ociserver.Reader }

var _ ociserver.Backend = readOnly{}

// pullsOnly refuses a write.
func pullsOnly(what string) error {
	return newError(ociserver.CodeUnsupported, "%s is not supported: this mirror serves pulls only", what)
}

func (readOnly) StartUpload(context.Context, ociserver.Repo) (string, error) {
	return "", pullsOnly("uploading")
}

func (readOnly) UploadSize(context.Context, ociserver.Repo, string) (int64, error) {
	return 0, pullsOnly("uploading")
}

func (readOnly) WriteUpload(context.Context, ociserver.Repo, string, int64, int64, io.Reader) (int64, error) {
	return 0, pullsOnly("uploading")
}

func (readOnly) CommitUpload(context.Context, ociserver.Repo, string, digest.Digest) error {
	return pullsOnly("uploading")
}

func (readOnly) CancelUpload(context.Context, ociserver.Repo, string) error {
	return pullsOnly("uploading")
}

func (readOnly) MountBlob(context.Context, ociserver.Repo, string, digest.Digest) (bool, error) {
	return false, pullsOnly("mounting")
}

func (readOnly) PushManifest(context.Context, ociserver.Repo, func() (*ociserver.PushedManifest, error)) error {
	return pullsOnly("pushing")
}

func (readOnly) DeleteManifest(context.Context, ociserver.Repo, digest.Digest) error {
	return pullsOnly("deleting")
}

func (readOnly) DeleteTag(context.Context, ociserver.Repo, string) error {
	return pullsOnly("deleting")
}

func (readOnly) DeleteBlob(context.Context, ociserver.Repo, digest.Digest) error {
	return pullsOnly("deleting")
}
