package tenant_test

import (
	"strings"
	"testing"

	"github.com/tenancykit/tenancy/tenant"
)

func FuzzValidateID(f *testing.F) {
	for _, s := range []string{"acme", "a:b", "{x}", "0b7f1c8e-8d5e-4c62-9a8e-2f2f0f6e4a11", "", "a*?[]\\", strings.Repeat("a", 65)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if tenant.ValidateID(id) != nil {
			return
		}
		if len(id) == 0 || len(id) > tenant.MaxIDLen {
			t.Fatalf("accepted ID of %d bytes", len(id))
		}
		// A valid ID never holds a Redis delimiter, glob, escape or hash-tag
		// byte, so "t:{<id>}:" prefixes are injective and glob-safe.
		if i := strings.IndexAny(id, ":{}*?[]\\^ \"'\x00./"); i >= 0 {
			t.Fatalf("accepted ID %q containing %q", id, id[i])
		}
	})
}

func FuzzValidateSlug(f *testing.F) {
	for _, s := range []string{"acme", "Acme", "a-b", "public", "", "a\"b", strings.Repeat("s", 48), strings.Repeat("s", 49)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, slug string) {
		if tenant.ValidateSlug(slug) != nil {
			return
		}
		schema := "tenant_" + slug
		if len(schema) > 63 {
			t.Fatalf("slug %q yields schema name of %d bytes, over PostgreSQL's 63", slug, len(schema))
		}
		for i := 0; i < len(slug); i++ {
			c := slug[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
				t.Fatalf("accepted slug %q with byte %q that needs quoting", slug, c)
			}
		}
		// Every valid slug is a valid ID too: the middleware relies on it.
		if err := tenant.ValidateID(slug); err != nil {
			t.Fatalf("valid slug %q is not a valid ID: %v", slug, err)
		}
	})
}
