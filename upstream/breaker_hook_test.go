package upstream

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/regmirror/regmirror/internal/registrytest"
	"github.com/regmirror/regmirror/internal/testclock"
)

// The BreakerChanged hook hears the breaker open once and close once: a
// failed probe in between (open → half-open → open) is no news.
func TestBreakerChangedHook(t *testing.T) {
	t.Parallel()
	reg := registrytest.New(t, registrytest.Options{})
	if _, err := reg.PushImage("library/alpine", "3", registrytest.ImageOptions{}); err != nil {
		t.Fatal(err)
	}
	clk := testclock.New(time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC))
	var mu sync.Mutex
	var heard []string
	hook := func(host string, open bool) {
		mu.Lock()
		defer mu.Unlock()
		heard = append(heard, fmt.Sprintf("%s open=%v", host, open))
	}
	c, _ := newClient(t, reg, Config{Host: "docker.io", BreakerMinRequests: 2, BreakerCooldown: time.Minute, Retries: -1},
		nil, Options{Now: clk.Now, BreakerChanged: hook})
	head := func() error {
		_, err := c.HeadManifest(context.Background(), "library/alpine", "3")
		return err
	}
	reg.SetDown(true)
	for range 2 {
		_ = head()
	}
	clk.Advance(time.Minute)
	if err := head(); err == nil { // the probe fails: open again
		t.Fatal("the probe succeeded while the upstream is down")
	}
	reg.SetDown(false)
	clk.Advance(time.Minute)
	if err := head(); err != nil {
		t.Fatalf("probe after the upstream came back: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"docker.io open=true", "docker.io open=false"}; !slices.Equal(heard, want) {
		t.Errorf("hook heard %q, want %q", heard, want)
	}
}
