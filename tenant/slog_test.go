package tenant_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tenancykit/tenancy/tenant"
)

func TestLogHandler(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(tenant.NewLogHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))).With("svc", "api")
	ctx := tenant.NewContext(context.Background(), tenant.Tenant{ID: "id-acme", Slug: "acme"})
	log.InfoContext(ctx, "created", "n", 1)
	log.InfoContext(context.Background(), "no tenant")
	log.WithGroup("req").InfoContext(ctx, "grouped", "path", "/x")

	var got []map[string]any
	dec := json.NewDecoder(&buf)
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		got = append(got, m)
	}
	want := []map[string]any{
		{"level": "INFO", "msg": "created", "svc": "api", "n": 1.0, "tenant_id": "id-acme", "tenant_slug": "acme"},
		{"level": "INFO", "msg": "no tenant", "svc": "api"},
		{"level": "INFO", "msg": "grouped", "svc": "api", "req": map[string]any{"path": "/x", "tenant_id": "id-acme", "tenant_slug": "acme"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("log records (-want +got):\n%s", diff)
	}
}

func TestLogHandlerEnabledFollowsNext(t *testing.T) {
	t.Parallel()
	h := tenant.NewLogHandler(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if h.Enabled(context.Background(), slog.LevelInfo) || !h.Enabled(context.Background(), slog.LevelError) {
		t.Error("Enabled does not follow the wrapped handler's level")
	}
}
