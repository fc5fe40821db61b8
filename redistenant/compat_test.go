package redistenant_test

import (
	"context"
	"errors"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tenancykit/tenancy/redistenant"
)

// TestCompat: on the tenant's go-redis-style API, Scan, ScanType and Keys
// return the tenant's key names as it wrote them (Scan then Del deletes
// them), DBSize counts only its keys, FlushDB deletes only its keys, and
// FlushAll is refused; the other tenant's keys are untouched throughout.
func TestCompat(t *testing.T) {
	t.Parallel()
	c, raw, a, b := setup(t)
	ctx := context.Background()
	ba, err := c.For(a)
	if err != nil {
		t.Fatal(err)
	}
	bb, err := c.For(b)
	if err != nil {
		t.Fatal(err)
	}
	ra, rb := redistenant.Compat(ba), redistenant.Compat(bb)
	if err := ra.Set(ctx, "s1", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := ra.Set(ctx, "s2", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := ra.HSet(ctx, "h1", "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	if err := rb.Set(ctx, "s1", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rb.Set(ctx, "other", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	scanAll := func(keyType string) []string {
		t.Helper()
		var keys []string
		for cursor := uint64(0); ; {
			page, next, err := ra.ScanType(ctx, cursor, "*", 2, keyType).Result()
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, page...)
			if cursor = next; cursor == 0 {
				break
			}
		}
		sort.Strings(keys)
		return keys
	}
	if diff := cmp.Diff([]string{"h1", "s1", "s2"}, scanAll("")); diff != "" {
		t.Errorf("Scan (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"h1"}, scanAll("hash")); diff != "" {
		t.Errorf("ScanType hash (-want +got):\n%s", diff)
	}
	keys, err := ra.Keys(ctx, "s*").Result()
	sort.Strings(keys)
	if diff := cmp.Diff([]string{"s1", "s2"}, keys); err != nil || diff != "" {
		t.Errorf("Keys s* (%v) (-want +got):\n%s", err, diff)
	}
	if n, err := ra.DBSize(ctx).Result(); err != nil || n != 3 {
		t.Errorf("DBSize of a: %d, %v; want 3", n, err)
	}
	if n, err := rb.DBSize(ctx).Result(); err != nil || n != 2 {
		t.Errorf("DBSize of b: %d, %v; want 2", n, err)
	}
	// Scan then Del: the names Scan returned are the names Del takes.
	page, _, err := ra.Scan(ctx, 0, "s*", 1<<20).Result() // one page over the whole keyspace
	if err != nil {
		t.Fatal(err)
	}
	if n, err := ra.Del(ctx, page...).Result(); err != nil || n != int64(len(page)) || n == 0 {
		t.Errorf("Del of the %d keys Scan returned: %d, %v", len(page), n, err)
	}
	if err := ra.FlushAll(ctx).Err(); !errors.Is(err, redistenant.ErrCommandNotAllowed) {
		t.Errorf("FlushAll: %v, want ErrCommandNotAllowed", err)
	}
	if err := ra.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if got := rawKeys(t, raw, a); len(got) != 0 {
		t.Errorf("after FlushDB a holds %v", got)
	}
	if diff := cmp.Diff([]string{redistenant.Prefix(b) + "other", redistenant.Prefix(b) + "s1"}, rawKeys(t, raw, b)); diff != "" {
		t.Errorf("b's keys after a's Scan, Del and FlushDB (-want +got):\n%s", diff)
	}
	if err := ra.DBSize(ctxFor(b)).Err(); !errors.Is(err, redistenant.ErrTenantMismatch) {
		t.Errorf("DBSize with b's context on a's handle: %v, want ErrTenantMismatch", err)
	}
}
