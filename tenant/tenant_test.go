package tenant_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/tenancykit/tenancy/tenant"
)

func TestValidateID(t *testing.T) {
	t.Parallel()
	valid := []string{
		"a", "Z", "0", "-", "_", "acme", "ACME-01_x",
		"0b7f1c8e-8d5e-4c62-9a8e-2f2f0f6e4a11",
		strings.Repeat("x", tenant.MaxIDLen),
	}
	for _, id := range valid {
		if err := tenant.ValidateID(id); err != nil {
			t.Errorf("ValidateID(%q) = %v, want nil", id, err)
		}
	}
	invalid := map[string]string{
		"":                                     "must not be empty",
		strings.Repeat("x", tenant.MaxIDLen+1): "more than 64",
		"a:b":                                  `byte 1 (':')`,
		"{a}":                                  `byte 0 ('{')`,
		"a*":                                   `byte 1 ('*')`,
		"a?":                                   `byte 1 ('?')`,
		"[a]":                                  `byte 0 ('[')`,
		`a\b`:                                  `byte 1 ('\\')`,
		"a b":                                  `byte 1 (' ')`,
		"a\x00":                                `byte 1 (0x00)`,
		"é":                                    `byte 0 (0xc3)`,
		"a.b":                                  `byte 1 ('.')`,
	}
	for id, reason := range invalid {
		err := tenant.ValidateID(id)
		if !errors.Is(err, tenant.ErrInvalidID) {
			t.Errorf("ValidateID(%q) = %v, want ErrInvalidID", id, err)
			continue
		}
		if !strings.Contains(err.Error(), reason) || !strings.Contains(err.Error(), "allowed: 1-64 bytes") {
			t.Errorf("ValidateID(%q) = %q, want it to name %q and what is allowed", id, err, reason)
		}
	}
}

func TestValidateSlug(t *testing.T) {
	t.Parallel()
	valid := []string{"a", "acme", "acme_corp", "a1", "z_9_", strings.Repeat("s", tenant.MaxSlugLen)}
	for _, s := range valid {
		if err := tenant.ValidateSlug(s); err != nil {
			t.Errorf("ValidateSlug(%q) = %v, want nil", s, err)
		}
	}
	invalid := map[string]string{
		"":                                       "must not be empty",
		strings.Repeat("s", tenant.MaxSlugLen+1): "49 bytes long, more than 48",
		"Acme":                                   "must start with a lowercase letter",
		"1acme":                                  "must start with a lowercase letter",
		"_acme":                                  "must start with a lowercase letter",
		"acme-corp":                              `byte 4 ('-')`,
		"acme corp":                              `byte 4 (' ')`,
		`acme"; drop schema public; --`:          `byte 4 ('"')`,
		"acmÉ":                                   `byte 3 (0xc3)`,
		"public":                                 "is reserved",
		"tenancy":                                "is reserved",
		"www":                                    "is reserved",
	}
	for s, reason := range invalid {
		err := tenant.ValidateSlug(s)
		var ve *tenant.ValidationError
		if !errors.As(err, &ve) || !errors.Is(err, tenant.ErrInvalidSlug) {
			t.Errorf("ValidateSlug(%q) = %v, want a *ValidationError matching ErrInvalidSlug", s, err)
			continue
		}
		if ve.Field != "slug" || !strings.Contains(ve.Reason, reason) {
			t.Errorf("ValidateSlug(%q): field %q reason %q, want slug and %q", s, ve.Field, ve.Reason, reason)
		}
	}
}

func TestValidationErrorShortensLongValues(t *testing.T) {
	t.Parallel()
	err := tenant.ValidateID(strings.Repeat("y", 10_000))
	var ve *tenant.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("got %v, want *ValidationError", err)
	}
	if len(ve.Value) > 100 {
		t.Errorf("Value is %d bytes; long input must be shortened in errors", len(ve.Value))
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	got, err := tenant.New("t-1", "acme")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(tenant.Tenant{ID: "t-1", Slug: "acme"}, got); diff != "" {
		t.Errorf("New (-want +got):\n%s", diff)
	}
	if _, err := tenant.New("t:1", "acme"); !errors.Is(err, tenant.ErrInvalidID) {
		t.Errorf("New with bad ID = %v, want ErrInvalidID", err)
	}
	if got, err := tenant.New("t1", "Acme"); !errors.Is(err, tenant.ErrInvalidSlug) || !got.IsZero() {
		t.Errorf("New with bad slug = %v, %v; want zero Tenant and ErrInvalidSlug", got, err)
	}
}

func TestReservedSlugsIsACopy(t *testing.T) {
	t.Parallel()
	r := tenant.ReservedSlugs()
	r[0] = "acme"
	if err := tenant.ValidateSlug(tenant.ReservedSlugs()[0]); err == nil {
		t.Fatal("changing the returned slice changed the reserved list")
	}
	if err := tenant.ValidateSlug("acme"); err != nil {
		t.Fatalf("acme became reserved: %v", err)
	}
}

func TestTenantString(t *testing.T) {
	t.Parallel()
	if got := (tenant.Tenant{ID: "42", Slug: "acme"}).String(); got != "acme (42)" {
		t.Errorf("String() = %q", got)
	}
}
