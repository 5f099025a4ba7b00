//go:build e2e

package e2e_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/regmirror/regmirror/scripts/e2e"
)

// docs/clients.md states the versions of the clients this suite runs; a
// run against other versions fails here until the page says so.
func TestClientsDocNamesTheVersionsTested(t *testing.T) {
	clients, err := e2e.Clients(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	_, file, _, _ := runtime.Caller(0)
	doc, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "docs", "clients.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range clients {
		t.Logf("%s %s (%s)", c.Name, c.Version, c.Reported)
		if want := c.Name + " " + c.Version; !strings.Contains(string(doc), want) {
			t.Errorf("docs/clients.md does not name %q, the version the e2e tests ran against", want)
		}
	}
}
