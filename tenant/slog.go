package tenant

import (
	"context"
	"log/slog"
)

// LogHandler is a [slog.Handler] that adds the context's tenant to every
// record as the attributes "tenant_id" and "tenant_slug", so each log line of
// a request says whose it was. Records logged without a context, or with one
// that carries no tenant, pass through unchanged. Use the *Context logging
// methods (InfoContext, ...) to hand it the context.
type LogHandler struct {
	next slog.Handler
}

// NewLogHandler returns a LogHandler that passes records on to next.
func NewLogHandler(next slog.Handler) *LogHandler {
	return &LogHandler{next: next}
}

// Enabled reports whether next handles records of level.
func (h *LogHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle adds the tenant attributes and passes r on. Like any attribute added
// to a record, they land inside the groups opened with WithGroup.
func (h *LogHandler) Handle(ctx context.Context, r slog.Record) error {
	if t, ok := FromContext(ctx); ok {
		r = r.Clone()
		r.AddAttrs(slog.String("tenant_id", t.ID), slog.String("tenant_slug", t.Slug))
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs returns a LogHandler whose next handler has attrs.
func (h *LogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &LogHandler{next: h.next.WithAttrs(attrs)}
}

// WithGroup returns a LogHandler whose next handler has the group name.
func (h *LogHandler) WithGroup(name string) slog.Handler {
	return &LogHandler{next: h.next.WithGroup(name)}
}
