package tenant

import "context"

// ctxKey is unexported so no other package can read or overwrite the tenant
// stored in a context except through NewContext.
type ctxKey struct{}

// NewContext returns a copy of ctx that carries t.
func NewContext(ctx context.Context, t Tenant) context.Context {
	return context.WithValue(ctx, ctxKey{}, t)
}

// FromContext returns the tenant stored in ctx by [NewContext], if any.
func FromContext(ctx context.Context) (Tenant, bool) {
	t, ok := ctx.Value(ctxKey{}).(Tenant)
	return t, ok
}

// Require returns the tenant carried by ctx. It fails closed: with no tenant it
// returns [ErrNoTenant], and with an invalid one (a zero Tenant stored by
// mistake, say) it returns the *ValidationError. Every tenant-scoped call of
// the SDK starts here, before any I/O.
func Require(ctx context.Context) (Tenant, error) {
	t, ok := FromContext(ctx)
	if !ok {
		return Tenant{}, ErrNoTenant
	}
	if err := t.Validate(); err != nil {
		return Tenant{}, err
	}
	return t, nil
}
