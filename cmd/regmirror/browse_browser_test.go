//go:build browser

package main

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"testing"
)

// The browse page, rendered by a real headless Chromium, shows the
// repositories the visitor may pull, a tag's platforms, and the layers of
// a pulled image with their sizes; its search and order come from the
// link. With REGMIRROR_BROWSE_SCREENSHOT set, it also saves a screenshot
// there (make screenshot). Run with: make browser.
func TestBrowsePageInBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: run scripts/install-chromium.sh (make browser does)")
	}
	f := newInventoryFixture(t)

	// Anonymous: the public repositories only, and node:20 in full.
	dom := chromiumDOM(t, chromium, f.base+"/browse#repo=library/node")
	if state := attr(t, dom, "body", "data-state"); state != "ready" {
		t.Fatalf("the page did not render its data: body data-state=%q\n%s", state, dom)
	}
	if got := column(tableRows(t, dom, "repos"), 0); !slices.Equal(got, []string{"library/node", "team/public"}) {
		t.Errorf("anonymous visitor sees repositories %q, want library/node and team/public", got)
	}
	tags := tableRows(t, dom, "tags")
	if len(tags) != 1 || tags[0][0] != "20" || tags[0][1] != "linux/amd64, linux/arm64/v8" {
		t.Errorf("tags of library/node = %v, want 20 on linux/amd64, linux/arm64/v8", tags)
	}
	platforms := tableRows(t, dom, "platforms")
	if got := column(platforms, 0); !slices.Equal(got, []string{"linux/amd64", "linux/arm64/v8"}) {
		t.Errorf("platforms of node:20 = %v", platforms)
	}
	img := f.node.Images[0] // the first cached platform is shown
	layers := tableRows(t, dom, "layers")
	if len(layers) != len(img.Layers) {
		t.Fatalf("layers shown = %v, want %d", layers, len(img.Layers))
	}
	exact := sizeValues(t, dom, "layers")
	if len(exact) != len(img.Layers) {
		t.Fatalf("layer sizes behind the page = %q, want %d", exact, len(img.Layers))
	}
	for i, l := range img.Layers {
		if layers[i][1] != iecBytes(l.Size) || layers[i][2] != l.Digest.Encoded()[:12] || exact[i] != fmt.Sprint(l.Size) {
			t.Errorf("layer %d shows %v (%s bytes), want %s of %s (%d bytes)", i, layers[i], exact[i], l.Digest.Encoded()[:12], iecBytes(l.Size), l.Size)
		}
	}

	// Alice sees every repository; the link searches and sorts.
	page := signedIn(t, f.base, "alice")
	dom = chromiumDOM(t, chromium, page+"/browse#q=team")
	if got := column(tableRows(t, dom, "repos"), 0); !slices.Equal(got, []string{"team/private", "team/public"}) {
		t.Errorf("alice searching team sees %q", got)
	}
	dom = chromiumDOM(t, chromium, page+"/browse#sort=-size")
	if got := column(tableRows(t, dom, "repos"), 0); len(got) != 4 || got[0] != "library/node" {
		t.Errorf("alice's repositories by size = %q, want all 4, library/node first", got)
	}

	if path := os.Getenv("REGMIRROR_BROWSE_SCREENSHOT"); path != "" {
		chromiumScreenshot(t, chromium, page+"/browse#repo=library/node", path)
		t.Logf("screenshot saved to %s", path)
	}
}

// sizeValues returns the exact numbers (data-value) behind the sizes a
// table shows, in row order.
func sizeValues(t *testing.T, dom, id string) []string {
	t.Helper()
	m := regexp.MustCompile(`(?s)<table id="` + regexp.QuoteMeta(id) + `">.*?<tbody>(.*?)</tbody>`).FindStringSubmatch(dom)
	if m == nil {
		t.Fatalf("no table #%s in the page", id)
	}
	var out []string
	for _, v := range regexp.MustCompile(`data-value="(\d+)"`).FindAllStringSubmatch(m[1], -1) {
		out = append(out, v[1])
	}
	return out
}

func column(rows [][]string, i int) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r[i])
	}
	return out
}

// iecBytes formats n as the pages do.
func iecBytes(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	v, i := float64(n), 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return fmt.Sprintf("%.1f %s", v, units[i])
}
