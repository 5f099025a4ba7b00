package ociserver

import (
	"fmt"
	"testing"
)

// The n of a tag listing is clamped: a client asking for a billion tags, or
// a negative or malformed number, gets one page of at most maxPage.
func TestTagPageSizeClamped(t *testing.T) {
	t.Parallel()
	tags := make([]string, 3*maxPage)
	for i := range tags {
		tags[i] = fmt.Sprintf("t%06d", i)
	}
	for _, n := range []string{"1000000000", "99999999999999999999", "-1", "abc", ""} {
		page, more := pageOf(tags, "", n)
		if len(page) != maxPage || !more {
			t.Errorf("n=%q: %d tags (more %v), want %d and more", n, len(page), more, maxPage)
		}
	}
	if page, _ := pageOf(tags, "", "5"); len(page) != 5 {
		t.Errorf("n=5: %d tags", len(page))
	}
}
