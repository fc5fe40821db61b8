package provision_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/provision"
)

// BenchmarkCreateTenant creates tenants (three tables with indexes, RLS and
// grants) into a database that already holds 0, 1,000 or 5,000 of them, to
// show the cost per tenant does not grow with the catalog, one at a time and
// from 4 goroutines at once. Each size gets a
// database of its own; filling it is not timed.
func BenchmarkCreateTenant(b *testing.B) {
	for _, present := range []int{0, 1000, 5000} {
		// Filled here, in the parent, which runs once however often the
		// sub-benchmark is run to find b.N.
		pg := testenv.PostgreSQL(b).NewDatabase(b)
		reg := newRegistry(b, pg, nil)
		ctx := context.Background()
		for i := range present {
			if _, err := reg.Create(ctx, provision.Spec{Slug: fmt.Sprintf("fill_%05d", i)}); err != nil {
				b.Fatal(err)
			}
		}
		run := 0
		for _, workers := range []int{1, 4} {
			b.Run(fmt.Sprintf("present=%d/concurrency=%d", present, workers), func(b *testing.B) {
				run++
				b.ReportAllocs()
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				for range workers {
					wg.Go(func() {
						for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
							if _, err := reg.Create(ctx, provision.Spec{Slug: fmt.Sprintf("bench_%d_%07d", run, i)}); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tenants/s")
			})
		}
	}
}
