package chitenant_test

import (
	"net/http"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/tenancykit/tenancy/contrib/internal/webtest"
	"github.com/tenancykit/tenancy/tenant"
)

// TestChi: tenant.Middleware in chi's Use, r.Context() to the pool: each
// tenant reads exactly its own notes; requests without a tenant never reach
// the handler.
func TestChi(t *testing.T) {
	bed := webtest.New(t)
	mw, err := tenant.Middleware(bed.Config)
	if err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	r.Use(mw)
	var ran bool
	r.Get("/notes", func(w http.ResponseWriter, req *http.Request) {
		ran = true
		notes, err := bed.Notes(req.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte(notes))
	})
	r.Get("/health", func(w http.ResponseWriter, _ *http.Request) { ran = true; _, _ = w.Write([]byte("ok")) })
	webtest.Run(t, r, func() bool { r := ran; ran = false; return r })
}
