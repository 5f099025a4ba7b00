package e2e

import "testing"

func TestUnescapeMountPath(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{name: "plain", in: "/tmp/e2e-dockerd-1/data", want: "/tmp/e2e-dockerd-1/data"},
		{name: "space", in: `/tmp/a\040b`, want: "/tmp/a b"},
		{name: "backslash", in: `/tmp/a\134b`, want: `/tmp/a\b`},
		{name: "trailing escape", in: `/tmp/a\040`, want: "/tmp/a "},
		{name: "short escape kept", in: `/tmp/a\04`, want: `/tmp/a\04`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := unescapeMountPath(tt.in); got != tt.want {
				t.Errorf("unescapeMountPath(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
