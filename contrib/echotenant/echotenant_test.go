package echotenant_test

import (
	"net/http"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/tenancykit/tenancy/contrib/echotenant"
	"github.com/tenancykit/tenancy/contrib/internal/webtest"
)

// TestEcho: through the Echo adapter each tenant reads exactly its own
// notes with echotenant.Context(c); requests without a tenant never reach
// the handler.
func TestEcho(t *testing.T) {
	bed := webtest.New(t)
	e := echo.New()
	mw, err := echotenant.Middleware(bed.Config)
	if err != nil {
		t.Fatal(err)
	}
	e.Use(mw)
	var ran bool
	e.GET("/notes", func(c echo.Context) error {
		ran = true
		notes, err := bed.Notes(echotenant.Context(c))
		if err != nil {
			return err
		}
		return c.String(http.StatusOK, notes)
	})
	e.GET("/health", func(c echo.Context) error { ran = true; return c.String(http.StatusOK, "ok") })
	webtest.Run(t, e, func() bool { r := ran; ran = false; return r })
}
