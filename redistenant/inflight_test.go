package redistenant_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/rueidis"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
)

// peakClient counts, per tenant, the calls it has in flight to the real
// client beneath it, and remembers the most at once.
type peakClient struct {
	rueidis.Client
	mu        sync.Mutex
	now, peak map[string]int
}

func (p *peakClient) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	t, _ := tenant.FromContext(ctx)
	p.mu.Lock()
	p.now[t.ID]++
	p.peak[t.ID] = max(p.peak[t.ID], p.now[t.ID])
	p.mu.Unlock()
	defer func() { p.mu.Lock(); p.now[t.ID]--; p.mu.Unlock() }()
	return p.Client.Do(ctx, cmd)
}

// TestMaxInFlightBoundsATenant: a tenant with 8 callers of a blocking
// command never has more than MaxInFlight (2) of them at the server at
// once, while another tenant's calls go through; FailOverInFlight refuses
// the third at once with an *InFlightError, and a waiting call ends with
// its context.
func TestMaxInFlightBoundsATenant(t *testing.T) {
	t.Parallel()
	raw := testenv.RedisClient(t)
	noisy, quiet := testenv.Tenant(t, "noisy"), testenv.Tenant(t, "quiet")
	pc := &peakClient{Client: raw, now: map[string]int{}, peak: map[string]int{}}
	c := redistenant.New(pc, redistenant.Config{MaxInFlight: 2})
	nctx, qctx := tenant.NewContext(context.Background(), noisy), tenant.NewContext(context.Background(), quiet)

	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			// BLPOP on an empty list blocks for its timeout (0.2 s).
			if err := c.Do(nctx, c.B().Blpop().Key("empty").Timeout(0.2).Build()).Error(); !rueidis.IsRedisNil(err) {
				t.Errorf("noisy BLPOP: %v", err)
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	for i := range 5 {
		if err := c.Do(qctx, c.B().Set().Key("k").Value("v").Build()).Error(); err != nil {
			t.Fatalf("quiet SET %d: %v", i, err)
		}
	}
	wctx, cancel := context.WithTimeout(nctx, 20*time.Millisecond)
	err := c.Do(wctx, c.B().Get().Key("k").Build()).Error()
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("noisy call over the bound: %v; want context.DeadlineExceeded", err)
	}
	wg.Wait()
	_ = c.Do(qctx, c.B().Del().Key("k").Build())
	pc.mu.Lock()
	peak := pc.peak[noisy.ID]
	pc.mu.Unlock()
	if peak != 2 {
		t.Errorf("noisy tenant had at most %d calls in flight; want exactly MaxInFlight, 2", peak)
	}

	strict := redistenant.New(raw, redistenant.Config{MaxInFlight: 1, FailOverInFlight: true})
	done := make(chan error)
	go func() {
		done <- strict.Do(nctx, strict.B().Blpop().Key("empty").Timeout(0.3).Build()).Error()
	}()
	time.Sleep(50 * time.Millisecond)
	err = strict.Do(nctx, strict.B().Get().Key("k").Build()).Error()
	var ie *redistenant.InFlightError
	if !errors.As(err, &ie) || !errors.Is(err, redistenant.ErrTenantInFlight) || ie.Tenant != noisy || ie.MaxInFlight != 1 {
		t.Errorf("second call with FailOverInFlight: %v; want an *InFlightError for %s", err, noisy)
	}
	if err := strict.Do(qctx, strict.B().Get().Key("k").Build()).Error(); !rueidis.IsRedisNil(err) {
		t.Errorf("another tenant's call: %v; want a nil reply", err)
	}
	if err := <-done; !rueidis.IsRedisNil(err) {
		t.Errorf("BLPOP: %v", err)
	}
	if err := strict.Do(nctx, strict.B().Get().Key("k").Build()).Error(); !rueidis.IsRedisNil(err) {
		t.Errorf("call after the first returned: %v; want a nil reply", err)
	}
}
