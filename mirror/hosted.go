package mirror

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"time"
)

// HostedOptions turn on hosted repositories: clients push to the mirror's
// own URL, and pulls look in the hosted repositories first, then upstream,
// like a Nexus group.
type HostedOptions struct {
	// Store keeps the pushed content. Required.
	Store Hosted
	// Users checks the credentials of pushes, and of pulls from hosted
	// repositories when PrivatePulls is set. Required.
	Users Authenticator
	// Logins limits failed logins and the password checks running at once.
	Logins LoginLimits
	// Uploads caps what each user may push.
	Uploads UploadLimits
	// Repositories are globs of the names that are hosted ("team/*",
	// "team/**", "ghcr.io/org/*"; see matchRepo). A name of the default
	// registry is written without its host, e.g. "team/app", and
	// single-component names with "library/". When empty, any name of the
	// default registry may be pushed, and a name is hosted once it holds
	// pushed content; names routed to another registry are never hosted then.
	Repositories []string
	// PrivatePulls makes pulls from hosted repositories need credentials too.
	// Pulls of names that are not hosted stay anonymous whatever a client
	// sends: a failed login never locks a client out of proxied pulls.
	PrivatePulls bool
	// AllowDelete enables DELETE of hosted manifests, tags and blobs.
	AllowDelete bool
}

// hostedRepos is the mirror's hosted side. Its fields are set once.
type hostedRepos struct {
	store        Hosted
	users        Authenticator
	logins       *loginGuard
	uploads      UploadLimits
	patterns     []string
	privatePulls bool
	allowDelete  bool
	tokens       *tokenIssuer
}

func newHostedRepos(o *HostedOptions, now func() time.Time) (*hostedRepos, error) {
	if o.Store == nil {
		return nil, errors.New("hosted repositories need a store")
	}
	if o.Users == nil {
		return nil, errors.New("hosted repositories need users to authenticate pushes")
	}
	if err := checkPatterns(o.Repositories); err != nil {
		return nil, fmt.Errorf("hosted repositories: %w", err)
	}
	return &hostedRepos{
		store:        o.Store,
		users:        o.Users,
		logins:       newLoginGuard(o.Users, o.Logins, now),
		uploads:      o.Uploads.withDefaults(),
		patterns:     o.Repositories,
		privatePulls: o.PrivatePulls,
		allowDelete:  o.AllowDelete,
		tokens:       newTokenIssuer(now),
	}, nil
}

// hostedRequest is a request addressed to a repository that may be hosted.
type hostedRequest struct {
	request
	// hostedName is the repository's hosted name: the path on the default
	// registry ("team/app", "library/app"), else host and path.
	hostedName string
	// elsewhere says the name is routed to a registry other than the
	// default one, by a host prefix or containerd's ns parameter.
	elsewhere bool
}

func (m *Mirror) resolveHosted(req request) (hostedRequest, error) {
	t, err := resolveTarget(req.name, req.ns, m.defaultHost)
	if err != nil {
		return hostedRequest{}, err
	}
	hr := hostedRequest{request: req, hostedName: t.path}
	if t.host != m.defaultHost {
		hr.hostedName, hr.elsewhere = t.host+"/"+t.path, true
	}
	return hr, nil
}

// pushable reports whether clients may push to the repository.
func (h *hostedRepos) pushable(hr hostedRequest) bool {
	if len(h.patterns) > 0 {
		return matchesAny(h.patterns, hr.hostedName)
	}
	return !hr.elsewhere
}

// isHosted reports whether pulls of the repository look at hosted content.
func (h *hostedRepos) isHosted(ctx context.Context, hr hostedRequest) (bool, error) {
	if len(h.patterns) > 0 {
		return matchesAny(h.patterns, hr.hostedName), nil
	}
	if hr.elsewhere {
		return false, nil
	}
	has, err := h.store.HasRepository(ctx, hr.hostedName)
	if err != nil {
		return false, fmt.Errorf("looking up hosted repository %s: %w", hr.hostedName, err)
	}
	return has, nil
}

// serveHosted answers the requests that involve hosted repositories: every
// write, the ping, the catalog, the referrers API and pulls of hosted names.
// It reports false, having answered nothing, for pulls that go upstream
// only, after making sure those cannot read pushed content by digest.
func (m *Mirror) serveHosted(w http.ResponseWriter, r *http.Request, req request) (bool, error) {
	h := m.hosted
	switch req.kind {
	case kindBase:
		return true, h.serveBase(w, r)
	case kindCatalog:
		return true, h.serveCatalog(w, r)
	}
	hr, err := m.resolveHosted(req)
	if err != nil {
		return true, err
	}
	if !isReadMethod(r.Method) || req.kind == kindBlobUpload {
		return true, m.serveHostedWrite(w, r, hr)
	}
	hosted, err := h.isHosted(r.Context(), hr)
	if err != nil {
		return true, err
	}
	if hosted && h.privatePulls && !h.authenticated(r) {
		return true, challenge(w, "pulling from "+hr.hostedName+" needs credentials: docker login")
	}
	switch {
	case req.kind == kindReferrers:
		return true, h.serveReferrers(w, r, hr, hosted)
	case req.kind == kindTags && hosted:
		return true, m.serveMergedTags(w, r, hr)
	case hosted:
		if served, err := m.serveHostedRead(w, r, hr); served || err != nil {
			return true, err
		}
	}
	return false, m.guardPushedContent(r.Context(), req)
}

// serveBase answers the ping. A client with neither a token nor valid
// credentials gets a Bearer challenge: see auth_token.go for why docker
// needs one to log in and push, and why it must be Bearer.
func (h *hostedRepos) serveBase(w http.ResponseWriter, r *http.Request) error {
	if !isReadMethod(r.Method) {
		return newError(codeUnsupported, "%s is not supported on the base endpoint", r.Method)
	}
	if _, ok := h.identify(r); !ok {
		return pingChallenge(w, r)
	}
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write([]byte("{}"))
	return err
}

// serveHostedWrite answers pushes and deletes: they need credentials and a
// repository that may be hosted.
func (m *Mirror) serveHostedWrite(w http.ResponseWriter, r *http.Request, hr hostedRequest) error {
	h := m.hosted
	if !h.authenticated(r) {
		return h.refuseLogin(w, r, "pushing needs credentials: docker login")
	}
	if !h.pushable(hr) {
		if hr.elsewhere {
			return newError(codeDenied, "%s is mirrored from another registry, not hosted here", truncate(hr.hostedName))
		}
		return newError(codeDenied, "%s is not a hosted repository of this mirror", truncate(hr.hostedName))
	}
	if r.Method == http.MethodDelete && hr.kind != kindBlobUpload && !h.allowDelete {
		return newError(codeUnsupported, "deleting is disabled on this mirror")
	}
	switch {
	case hr.kind == kindBlobUpload:
		return m.serveUpload(w, r, hr)
	case hr.kind == kindManifest && r.Method == http.MethodPut:
		return m.putManifest(w, r, hr)
	case hr.kind == kindManifest && r.Method == http.MethodDelete:
		return h.deleteManifest(w, r, hr)
	case hr.kind == kindBlob && r.Method == http.MethodDelete:
		return h.deleteBlob(w, r, hr)
	}
	return newError(codeUnsupported, "%s is not supported on %s", r.Method, hr.kind)
}

// guardPushedContent keeps a pull that goes upstream from reading pushed
// content by digest: the cache serves any stored digest to any repository,
// which is right for content some upstream served, but pushed content is
// served for another repository only once that repository's upstream
// confirms it has the same digest.
func (m *Mirror) guardPushedContent(ctx context.Context, req request) error {
	if req.digest == "" || (req.kind != kindBlob && req.kind != kindManifest) {
		return nil
	}
	pushedOnly, err := m.hosted.store.HostedOnly(ctx, req.digest)
	if err != nil {
		return fmt.Errorf("checking whether %s was pushed: %w", req.digest, err)
	}
	if !pushedOnly {
		return nil
	}
	rem, t, err := m.remoteFor(ctx, req)
	if err != nil {
		return notFoundOrErr(err, req.kind)
	}
	if req.kind == kindBlob {
		var rc interface{ Close() error }
		rc, _, err = rem.Upstream.GetBlob(ctx, t.path, req.digest)
		if err == nil {
			rc.Close()
		}
	} else {
		_, err = rem.Upstream.HeadManifest(ctx, t.path, req.digest.String())
	}
	if err != nil {
		return fromUpstream(err, rem.Host, req.kind)
	}
	if err := m.hosted.store.RecordCached(ctx, t.cacheKey(), req.digest); err != nil {
		m.log.WarnContext(ctx, "recording upstream use of pushed content", "digest", req.digest, "error", err)
	}
	return nil
}

// notFoundOrErr turns "no such registry" into the kind's not-found answer:
// for a repository that holds no such content, that is what it is.
func notFoundOrErr(err error, k kind) error {
	var e *Error
	if errors.As(err, &e) && e.Code == codeNameUnknown {
		return &Error{Code: notFoundCode(k), Message: "not found", Err: err}
	}
	return err
}

// hostedNotFound reports whether err means the hosted repository lacks
// what was asked for.
func hostedNotFound(err error) bool { return errors.Is(err, fs.ErrNotExist) }
