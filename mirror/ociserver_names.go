package mirror

import "github.com/regmirror/regmirror/mirror/ociserver"

// The protocol's names, as this package uses them throughout.
type (
	// Error is an error answered in the OCI error format.
	Error    = ociserver.Error
	kind     = ociserver.Kind
	request  = ociserver.Request
	manifest = ociserver.Manifest
)

const (
	kindBase       = ociserver.KindBase
	kindManifest   = ociserver.KindManifest
	kindBlob       = ociserver.KindBlob
	kindBlobUpload = ociserver.KindBlobUpload
	kindTags       = ociserver.KindTags
	kindReferrers  = ociserver.KindReferrers
	kindCatalog    = ociserver.KindCatalog
)

const (
	codeBlobUnknown         = ociserver.CodeBlobUnknown
	codeBlobUploadInvalid   = ociserver.CodeBlobUploadInvalid
	codeBlobUploadUnknown   = ociserver.CodeBlobUploadUnknown
	codeDigestInvalid       = ociserver.CodeDigestInvalid
	codeManifestBlobUnknown = ociserver.CodeManifestBlobUnknown
	codeManifestInvalid     = ociserver.CodeManifestInvalid
	codeManifestUnknown     = ociserver.CodeManifestUnknown
	codeNameInvalid         = ociserver.CodeNameInvalid
	codeNameUnknown         = ociserver.CodeNameUnknown
	codeSizeInvalid         = ociserver.CodeSizeInvalid
	codeTagInvalid          = ociserver.CodeTagInvalid
	codeUnauthorized        = ociserver.CodeUnauthorized
	codeDenied              = ociserver.CodeDenied
	codeUnsupported         = ociserver.CodeUnsupported
	codeUnavailable         = ociserver.CodeUnavailable
	codeUnknown             = ociserver.CodeUnknown
)

var (
	newError     = ociserver.NewError
	writeError   = ociserver.WriteError
	truncate     = ociserver.Truncate
	parseDigest  = ociserver.ParseDigest
	isReadMethod = ociserver.IsReadMethod
)

// DefaultSendTimeout is what a zero Options.SendTimeout means.
const DefaultSendTimeout = ociserver.DefaultSendTimeout
