package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/tenancykit/tenancy/internal/testenv"
)

// syncBuffer is a bytes.Buffer safe for the exporters' goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// TestTelemetryNamesEachTenant: with OTEL_STDOUT's telemetry, the spans of
// two tenants' requests carry their tenant.id, and the exported metrics
// include the per-tenant statement and pool metrics.
func TestTelemetryNamesEachTenant(t *testing.T) {
	pg := testenv.PostgreSQL(t)
	var out syncBuffer
	tel, shutdown, err := stdoutTelemetry(&out, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	app, err := NewApp(context.Background(), Config{
		OwnerURL: pg.OwnerURL, AppURL: pg.AppURL, AppRole: pg.AppRole, Redis: testenv.RedisClient(t),
		AdminToken: adminToken, Logger: slog.New(slog.DiscardHandler), TokenSecret: []byte(tokenSecret),
		Telemetry: tel,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(app.Close)
	srv := httptest.NewServer(app.Handler())
	t.Cleanup(srv.Close)
	ids := map[string]string{}
	for range 2 {
		slug := testenv.NewTenant("otel").Slug
		var tj tenantJSON
		call(t, srv, "POST", "/api/v1/tenants", "", fmt.Sprintf(`{"slug":%q}`, slug), true).decode(t, &tj)
		ids[tj.ID] = slug
		if r := call(t, srv, "POST", "/api/v1/projects", slug, `{"name":"apollo"}`, false); r.status != 201 {
			t.Fatalf("create project: %d %s", r.status, r.body)
		}
	}
	if err := shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}

	// Each line the trace exporter wrote is one span.
	spans := map[string]int{}
	metrics := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out.b.Bytes()))
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var span struct {
			Name       string
			Attributes []struct {
				Key   string
				Value struct{ Value any }
			}
			ScopeMetrics []struct {
				Metrics []struct{ Name string }
			}
		}
		if err := json.Unmarshal(sc.Bytes(), &span); err != nil {
			continue
		}
		for _, sm := range span.ScopeMetrics {
			for _, m := range sm.Metrics {
				metrics[m.Name] = true
			}
		}
		for _, a := range span.Attributes {
			if id, ok := a.Value.Value.(string); ok && a.Key == "tenant.id" && ids[id] != "" && span.Name == "INSERT" {
				spans[id]++
			}
		}
	}
	for id, slug := range ids {
		if spans[id] == 0 {
			t.Errorf("no INSERT span names tenant %s (%s)", slug, id)
		}
	}
	for _, name := range []string{"tenancy.db.statements", "tenancy.db.statement.duration", "tenancy.db.pool.wait", "tenancy.db.pool.held"} {
		if !metrics[name] {
			t.Errorf("metric %s was not exported; got %v", name, metrics)
		}
	}
}
