package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/regmirror/regmirror/internal/ociserver"
)

// The source and result hosted content is counted and logged under.
const (
	resultHosted = "hosted"
	sourceHosted = "hosted"
)

// hostedBackend reads and writes hosted repositories, for whoever the
// authorizer let through: it checks quotas and size caps, not permissions.
// Content a repository lacks is an error wrapping fs.ErrNotExist, so that
// a group can look elsewhere.
type hostedBackend struct{ m *Mirror }

var _ ociserver.Backend = hostedBackend{}

func (b hostedBackend) store() Hosted { return b.m.hosted.store }

// name resolves the hosted name of repo, refusing a name the operator
// did not list as hosted: only those take pushes, and only those are
// answered from what was pushed.
func (b hostedBackend) name(repo ociserver.Repo) (string, error) {
	name, err := resolveHostedName(repo.Name, repo.NS, b.m.defaultHost)
	if err == nil && !b.m.hosted.isHostedName(name) {
		err = newError(ociserver.CodeDenied, "%s is not a hosted repository of this mirror: only the names the operator lists take pushes",
			truncate(name))
	}
	return name, err
}

func (b hostedBackend) GetManifest(ctx context.Context, repo ociserver.Repo, ref string) (*ociserver.Manifest, error) {
	name, err := b.name(repo)
	if err != nil {
		return nil, err
	}
	d := digest.Digest(ref)
	if !strings.Contains(ref, ":") {
		if d, err = b.store().Tag(ctx, name, ref); err != nil {
			return nil, err
		}
	}
	mediaType, data, err := b.store().Manifest(ctx, name, d)
	if err != nil {
		return nil, err
	}
	noteResult(ctx, resultHosted)
	return &ociserver.Manifest{Digest: d, MediaType: mediaType, Data: data}, nil
}

func (b hostedBackend) GetBlob(ctx context.Context, repo ociserver.Repo, d digest.Digest, offset int64) (*ociserver.Blob, error) {
	name, err := b.name(repo)
	if err != nil {
		return nil, err
	}
	rc, size, err := b.store().OpenBlob(ctx, name, d, offset)
	if err != nil {
		return nil, err
	}
	noteResult(ctx, resultHosted)
	return &ociserver.Blob{Body: rc, Offset: offset, Size: size, Source: sourceHosted}, nil
}

// Tags lists a hosted repository's tags; a repository without any is
// unknown (NAME_UNKNOWN, wrapping fs.ErrNotExist).
func (b hostedBackend) Tags(ctx context.Context, repo ociserver.Repo) ([]string, error) {
	name, err := b.name(repo)
	if err != nil {
		return nil, err
	}
	tags, err := b.store().Tags(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("listing hosted tags of %s: %w", name, err)
	}
	if len(tags) == 0 {
		return nil, hostedNotFoundError(ociserver.KindTags, name, "", nil)
	}
	return tags, nil
}

func (b hostedBackend) Referrers(ctx context.Context, repo ociserver.Repo, d digest.Digest) ([]ocispec.Descriptor, error) {
	name, err := b.name(repo)
	if err != nil {
		return nil, err
	}
	descs, err := b.store().Referrers(ctx, name, d)
	if err != nil {
		return nil, fmt.Errorf("listing referrers of %s in %s: %w", d, name, err)
	}
	return descs, nil
}

// Catalog lists the hosted repositories the client may pull.
func (b hostedBackend) Catalog(ctx context.Context) ([]string, error) {
	names, err := b.store().Repositories(ctx)
	if err != nil {
		return nil, err
	}
	var readable []string
	for _, name := range names {
		if b.m.mayPullHosted(ctx, name) {
			readable = append(readable, name)
		}
	}
	return readable, nil
}

func (b hostedBackend) StartUpload(ctx context.Context, repo ociserver.Repo) (string, error) {
	name, err := b.name(repo)
	if err != nil {
		return "", err
	}
	id, err := b.store().StartUserUpload(ctx, name, clientOf(ctx).user, b.m.hosted.uploads.MaxSessions)
	return id, quotaErr(err)
}

func (b hostedBackend) UploadSize(ctx context.Context, repo ociserver.Repo, id string) (int64, error) {
	name, err := b.name(repo)
	if err != nil {
		return 0, err
	}
	size, err := b.store().UploadSize(ctx, name, id)
	return size, uploadErr(err)
}

// WriteUpload appends body under the size cap of one blob: a body that
// would pass it ends the upload with 413.
func (b hostedBackend) WriteUpload(ctx context.Context, repo ociserver.Repo, id string, offset, length int64, body io.Reader) (int64, error) {
	name, err := b.name(repo)
	if err != nil {
		return 0, err
	}
	limit := b.m.hosted.uploads.MaxUploadSize
	if limit >= 0 {
		if offset > limit || length > limit-offset {
			return 0, b.refuseOversize(ctx, name, id, limit)
		}
		body = &cappedReader{r: body, left: limit - offset}
	}
	size, err := b.store().WriteUpload(ctx, name, id, offset, body)
	var offsetErr interface{ UploadSize() int64 }
	switch {
	case errors.Is(err, errUploadTooLarge):
		return 0, b.refuseOversize(ctx, name, id, limit)
	case errors.As(err, &offsetErr):
		return 0, err // the server answers where the upload stands
	}
	return size, uploadErr(err)
}

func (b hostedBackend) CommitUpload(ctx context.Context, repo ociserver.Repo, id string, d digest.Digest) error {
	name, err := b.name(repo)
	if err != nil {
		return err
	}
	_, err = b.store().CommitUserUpload(ctx, name, id, clientOf(ctx).user, d, b.m.hosted.uploads.MaxStorage)
	var mismatch interface{ ContentDigest() digest.Digest }
	switch {
	case isQuota(err):
		return quotaErr(err)
	case errors.As(err, &mismatch):
		return &Error{Code: ociserver.CodeDigestInvalid, Err: err,
			Message: "the uploaded content hashes to " + mismatch.ContentDigest().String() + ", not " + d.String() + "; nothing was stored"}
	case hostedNotFound(err):
		return &Error{Code: ociserver.CodeBlobUploadUnknown, Message: "no such upload", Err: err}
	}
	return err
}

func (b hostedBackend) CancelUpload(ctx context.Context, repo ociserver.Repo, id string) error {
	name, err := b.name(repo)
	if err != nil {
		return err
	}
	return uploadErr(b.store().CancelUpload(ctx, name, id))
}

// MountBlob links d into the repository when the client may read it where
// it comes from (see mayMount); otherwise the client uploads it.
func (b hostedBackend) MountBlob(ctx context.Context, repo ociserver.Repo, from string, d digest.Digest) (bool, error) {
	name, err := b.name(repo)
	if err != nil {
		return false, err
	}
	if may, err := b.m.mayMount(ctx, from, d); !may || err != nil {
		return false, err
	}
	_, err = b.store().LinkUserBlob(ctx, name, clientOf(ctx).user, d, b.m.hosted.uploads.MaxStorage)
	switch {
	case isQuota(err):
		return false, quotaErr(err)
	case hostedNotFound(err):
		return false, nil
	}
	return err == nil, err
}

func (b hostedBackend) PushManifest(ctx context.Context, repo ociserver.Repo, read func() (*ociserver.PushedManifest, error)) error {
	name, err := b.name(repo)
	if err != nil {
		return err
	}
	pm, err := read()
	if err != nil {
		return err
	}
	who := clientOf(ctx).user
	err = b.store().PutUserManifest(ctx, name, who, b.m.hosted.uploads.MaxStorage, pm.Desc, pm.Data, pm.Refs, pm.Subject, pm.Tags)
	var missing interface{ MissingDigest() digest.Digest }
	switch {
	case isQuota(err):
		return quotaErr(err)
	case errors.As(err, &missing):
		return &Error{Code: ociserver.CodeManifestBlobUnknown, Err: err,
			Message: "the manifest refers to " + missing.MissingDigest().String() + ", which has not been pushed"}
	case err != nil:
		return err
	}
	var tag string
	if len(pm.Tags) > 0 {
		tag = pm.Tags[0]
	}
	b.m.notify(ctx, Event{Action: EventPush, Repository: name, Tag: tag, Digest: pm.Desc.Digest,
		MediaType: pm.Desc.MediaType, Size: pm.Desc.Size, Actor: who}, repo.Name, "manifests", pm.Desc.Digest.String())
	return nil
}

func (b hostedBackend) DeleteManifest(ctx context.Context, repo ociserver.Repo, d digest.Digest) error {
	return b.deleteManifestOrTag(ctx, repo, "", d)
}

func (b hostedBackend) DeleteTag(ctx context.Context, repo ociserver.Repo, tag string) error {
	return b.deleteManifestOrTag(ctx, repo, tag, "")
}

// deleteManifestOrTag removes a tag, or manifest d with its tags, and
// tells the webhooks.
func (b hostedBackend) deleteManifestOrTag(ctx context.Context, repo ociserver.Repo, tag string, d digest.Digest) error {
	name, err := b.name(repo)
	if err != nil {
		return err
	}
	reference := tag
	if tag != "" {
		err = b.store().DeleteTag(ctx, name, tag)
	} else {
		err = b.store().DeleteManifest(ctx, name, d)
		reference = d.String()
	}
	if hostedNotFound(err) {
		return &Error{Code: ociserver.CodeManifestUnknown, Message: "not in " + name, Err: err}
	}
	if err != nil {
		return err
	}
	b.m.notify(ctx, Event{Action: EventDelete, Repository: name, Tag: tag, Digest: d, Actor: clientOf(ctx).user},
		repo.Name, "manifests", reference)
	return nil
}

func (b hostedBackend) DeleteBlob(ctx context.Context, repo ociserver.Repo, d digest.Digest) error {
	name, err := b.name(repo)
	if err != nil {
		return err
	}
	err = b.store().UnlinkBlob(ctx, name, d)
	if hostedNotFound(err) {
		return &Error{Code: ociserver.CodeBlobUnknown, Message: "not in " + name, Err: err}
	}
	return err
}
