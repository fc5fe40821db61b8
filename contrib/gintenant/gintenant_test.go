package gintenant_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/tenancykit/tenancy/contrib/gintenant"
	"github.com/tenancykit/tenancy/contrib/internal/webtest"
)

func router(t *testing.T, bed *webtest.Bed, fallback bool, ran *bool) *gin.Engine {
	t.Helper()
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.ContextWithFallback = fallback
	mw, err := gintenant.Middleware(bed.Config)
	if err != nil {
		t.Fatal(err)
	}
	r.Use(mw)
	r.GET("/notes", func(c *gin.Context) {
		*ran = true
		notes, err := bed.Notes(c) // the *gin.Context itself, as Gin code passes it
		if err != nil {
			c.String(http.StatusInternalServerError, err.Error())
			return
		}
		c.String(http.StatusOK, notes)
	})
	r.GET("/health", func(c *gin.Context) { *ran = true; c.String(http.StatusOK, "ok") })
	return r
}

// TestGin: through the Gin adapter each tenant reads exactly its own notes
// with the *gin.Context as the pool's context; requests without a tenant
// never reach the handler.
func TestGin(t *testing.T) {
	bed := webtest.New(t)
	var ran bool
	webtest.Run(t, router(t, bed, true, &ran), func() bool { r := ran; ran = false; return r })
}

// TestGinWithoutFallback: on an engine without ContextWithFallback a
// *gin.Context would carry no tenant; the adapter answers 500 naming the
// setting, and the handler never runs.
func TestGinWithoutFallback(t *testing.T) {
	bed := webtest.New(t)
	var ran bool
	r := router(t, bed, false, &ran)
	req := httptest.NewRequest(http.MethodGet, "/notes", nil)
	req.Header.Set("X-Tenant", "acme")
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, req)
	if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "ContextWithFallback") || ran {
		t.Errorf("without ContextWithFallback: %d %q, handler ran %v; want 500 naming ContextWithFallback, not run", rec.Code, rec.Body, ran)
	}
}
