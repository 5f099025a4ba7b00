package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// The headers of a signed peer request.
const (
	headerTime      = "Regmirror-Peer-Time"
	headerNonce     = "Regmirror-Peer-Nonce"
	headerSignature = "Regmirror-Peer-Signature"
)

// MaxSkew is how far a signed request's timestamp may be from the
// verifier's clock, either way. Replicas run NTP; a minute is generous.
const MaxSkew = 60 * time.Second

// MinSecretLen is the shortest secret accepted, in bytes: the hex of 16
// random bytes, say (openssl rand -hex 16).
const MinSecretLen = 32

// DefaultMaxNonces bounds the nonces remembered against replay when the
// configuration leaves it zero: at about 100 bytes each, 10 MB, enough for
// some 800 peer requests a second for the 2*MaxSkew that each is kept.
const DefaultMaxNonces = 100_000

// Secrets are the shared keys of the peer channel. Current signs and
// verifies; Previous, when set, only verifies. Rotating without a request
// refused takes three rolling restarts (or reloads): every replica gets
// the new secret as Previous; then as Current, with the old one as
// Previous; then the old one is dropped. Two steps, new Current and old
// Previous at once, do as well when a few refused forwards during the
// roll are acceptable, since a replica falls back to the upstream.
type Secrets struct {
	Current  []byte
	Previous []byte
}

func (s Secrets) validate() error {
	if len(s.Current) < MinSecretLen {
		return fmt.Errorf("cluster secret: shorter than %d bytes", MinSecretLen)
	}
	if s.Previous != nil && len(s.Previous) < MinSecretLen {
		return fmt.Errorf("cluster previous secret: shorter than %d bytes", MinSecretLen)
	}
	return nil
}

// ReadSecretFile reads a secret from a file, without the surrounding
// white space an editor or echo leaves. Its content never reaches an error.
func ReadSecretFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cluster secret: %w", err)
	}
	secret := []byte(strings.TrimSpace(string(b)))
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("cluster secret %s: shorter than %d bytes", path, MinSecretLen)
	}
	return secret, nil
}

// AuthConfig configures an Authenticator.
type AuthConfig struct {
	Secrets Secrets
	// MaxNonces bounds the nonces remembered against replay; zero means
	// DefaultMaxNonces. When it is reached, Verify answers 503 until the
	// oldest expire rather than forget one that could be replayed.
	MaxNonces int
}

// Authenticator signs peer requests and verifies them: an HMAC-SHA256
// over the method, the host, the path and query, the Range and Accept
// headers, a timestamp and a nonce. It is safe for concurrent use.
type Authenticator struct {
	secrets atomic.Pointer[Secrets]
	nonces  *nonceCache
}

// NewAuthenticator returns an Authenticator with cfg's secrets.
func NewAuthenticator(cfg AuthConfig) (*Authenticator, error) {
	if cfg.MaxNonces < 0 {
		return nil, fmt.Errorf("cluster: negative nonce bound %d", cfg.MaxNonces)
	}
	if cfg.MaxNonces == 0 {
		cfg.MaxNonces = DefaultMaxNonces
	}
	a := &Authenticator{nonces: newNonceCache(cfg.MaxNonces)}
	if err := a.SetSecrets(cfg.Secrets); err != nil {
		return nil, err
	}
	return a, nil
}

// SetSecrets replaces the secrets, as a configuration reload does during
// a rotation. Requests signed from then on use the new Current.
func (a *Authenticator) SetSecrets(s Secrets) error {
	if err := s.validate(); err != nil {
		return err
	}
	a.secrets.Store(&Secrets{Current: clone(s.Current), Previous: clone(s.Previous)})
	return nil
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}

// Sign adds a timestamp, a fresh nonce and the signature to req, which
// must not change afterwards in what is signed.
func (a *Authenticator) Sign(req *http.Request) error {
	return a.signAt(req, time.Now())
}

func (a *Authenticator) signAt(req *http.Request, at time.Time) error {
	return a.signOn(trusted, req, at)
}

// signOn signs req for channel c at time at.
func (a *Authenticator) signOn(c channel, req *http.Request, at time.Time) error {
	var n [16]byte
	if _, err := rand.Read(n[:]); err != nil {
		return fmt.Errorf("peer request nonce: %w", err)
	}
	ts, nonce := strconv.FormatInt(at.Unix(), 10), hex.EncodeToString(n[:])
	req.Header.Set(headerTime, ts)
	req.Header.Set(headerNonce, nonce)
	mac := c.signature(a.secrets.Load().Current, req, ts, nonce)
	req.Header.Set(headerSignature, hex.EncodeToString(mac))
	return nil
}

// channel is a kind of peer request, each signed in a way of its own so
// that a signature made for one is never valid for another.
type channel struct {
	// purpose is the first line signed; empty for the trusted channel,
	// which keeps its signatures what they were before hosted forwards.
	purpose string
	// extra names the headers signed after the common parts.
	extra []string
}

// trusted is the channel of Forwarder: reads a peer serves with the
// rights of a logged-in client.
var trusted = channel{}

// signature is the HMAC of what a peer request asks for: everything the
// owner acts on, and the peer it is addressed to, so that a request seen
// on the wire cannot be played once more to each of the other replicas.
func (c channel) signature(secret []byte, req *http.Request, ts, nonce string) []byte {
	host := req.Host // as a server reads it; a client's is in the URL
	if host == "" {
		host = req.URL.Host
	}
	m := hmac.New(sha256.New, secret)
	if c.purpose != "" {
		m.Write([]byte(c.purpose))
		m.Write([]byte{'\n'})
	}
	parts := []string{
		req.Method,
		host,
		req.URL.EscapedPath() + "?" + req.URL.RawQuery,
		strings.Join(req.Header.Values("Range"), ","),
		strings.Join(req.Header.Values("Accept"), ","),
		ts,
		nonce,
	}
	for _, h := range c.extra {
		parts = append(parts, strings.Join(req.Header.Values(h), ","))
	}
	for _, part := range parts {
		m.Write([]byte(part))
		m.Write([]byte{'\n'})
	}
	return m.Sum(nil)
}

// Verify passes on only requests signed by a peer: a valid signature
// under either secret, a timestamp within MaxSkew, a nonce not seen in
// that window, and a GET or HEAD of a blob or manifest. It answers 401
// for the first three, 403 for the last, and 503 when it has as many
// nonces to remember as it may. The handler it calls can tell the request
// came from a peer with FromPeer.
func (a *Authenticator) Verify(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ref := a.verify(r, time.Now()); ref != nil {
			if ref.status == http.StatusServiceUnavailable {
				w.Header().Set("Retry-After", "1")
			}
			http.Error(w, ref.msg, ref.status)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), fromPeerKey{}, true)))
	})
}

// refusal is why Verify turns a request away, with the status it answers.
type refusal struct {
	status int
	msg    string
}

func (r *refusal) Error() string { return r.msg }

var (
	errUnsigned   = &refusal{http.StatusUnauthorized, "missing or malformed peer signature"}
	errSkewed     = &refusal{http.StatusUnauthorized, "peer request timestamp outside the accepted window"}
	errBadSig     = &refusal{http.StatusUnauthorized, "wrong peer signature"}
	errReplayed   = &refusal{http.StatusUnauthorized, "replayed peer request"}
	errNotForPeer = &refusal{http.StatusForbidden, "peers may only read blobs and manifests"}
	errNoncesFull = &refusal{http.StatusServiceUnavailable, "too many peer requests to remember; retry"}
)

// verify checks r at time now. The nonce is remembered only once the
// signature holds, so that unsigned requests cannot fill the memory.
func (a *Authenticator) verify(r *http.Request, now time.Time) *refusal {
	return a.verifyOn(trusted, r, now, func() *refusal {
		if checkForwardable(r.Method, r.URL) != nil {
			return errNotForPeer
		}
		return nil
	})
}

// verifyOn checks r's signature for channel c at time now, then what
// allowed says of the request, then remembers its nonce.
func (a *Authenticator) verifyOn(c channel, r *http.Request, now time.Time, allowed func() *refusal) *refusal {
	ts, nonce := r.Header.Get(headerTime), r.Header.Get(headerNonce)
	sig, err := hex.DecodeString(r.Header.Get(headerSignature))
	unix, tsErr := strconv.ParseInt(ts, 10, 64)
	if err != nil || tsErr != nil || len(sig) != sha256.Size || !validNonce(nonce) {
		return errUnsigned
	}
	if skew := now.Sub(time.Unix(unix, 0)); skew > MaxSkew || skew < -MaxSkew {
		return errSkewed
	}
	if !a.signedByPeer(c, r, ts, nonce, sig) {
		return errBadSig
	}
	if ref := allowed(); ref != nil {
		return ref
	}
	return a.nonces.add(nonce, now)
}

func (a *Authenticator) signedByPeer(c channel, r *http.Request, ts, nonce string, sig []byte) bool {
	s := a.secrets.Load()
	if hmac.Equal(sig, c.signature(s.Current, r, ts, nonce)) {
		return true
	}
	return s.Previous != nil && hmac.Equal(sig, c.signature(s.Previous, r, ts, nonce))
}

// validNonce accepts what Sign makes, 32 lower-case hex digits, so that a
// remembered nonce takes a bounded size.
func validNonce(n string) bool {
	if len(n) != 32 {
		return false
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

type fromPeerKey struct{}

// FromPeer reports whether the request of ctx passed Verify: a peer sent
// it, and it must be served here, never forwarded again.
func FromPeer(ctx context.Context) bool {
	v, _ := ctx.Value(fromPeerKey{}).(bool)
	return v
}
