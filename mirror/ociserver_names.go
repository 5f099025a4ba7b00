package mirror

import "github.com/regmirror/regmirror/internal/ociserver"

// The protocol's names, as this package uses them throughout.
type (
	// Error is an error answered in the OCI error format.
	Error    = ociserver.Error
	kind     = ociserver.Kind
	request  = ociserver.Request
	manifest = ociserver.Manifest
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
