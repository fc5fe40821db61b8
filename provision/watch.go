package provision

import (
	"context"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/tenancykit/tenancy/tenant"
)

// WatchChannel is the PostgreSQL notification channel on which the registry
// announces every change of a tenant (Create, Update, Suspend, Resume,
// Delete), in the transaction that makes the change. The payload is
// "<id> <slug>".
const WatchChannel = "tenancy_registry"

// Invalidator is what [Registry.Watch] keeps fresh: a *tenant.Cache.
type Invalidator interface {
	// Invalidate drops what is cached for a tenant name (slug or ID).
	Invalidate(key string)
}

// notify announces t's change on WatchChannel, delivered when tx commits.
func notify(ctx context.Context, tx pgx.Tx, t tenant.Tenant) error {
	_, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", WatchChannel, t.ID+" "+t.Slug)
	return err
}

// Watch keeps cache fresh across instances: it listens on [WatchChannel] and
// invalidates every name of each tenant the registry changes, in this
// process or in any other that shares the database, so a suspension is
// refused everywhere within a round trip rather than at the end of a cache
// TTL. Run it in a goroutine per cache; it returns ctx's error when ctx ends.
//
// It holds a dedicated connection made from Config.Owner's configuration and
// reconnects with backoff (100 ms doubling to 5 s) when that connection
// fails. Notifications sent while it was disconnected are lost, so on every
// (re)connect it drops everything cache holds if cache has an
// InvalidateAll method (a *tenant.Cache does).
func (r *Registry) Watch(ctx context.Context, cache Invalidator) error {
	backoff := 100 * time.Millisecond
	for {
		err := r.watchOnce(ctx, cache, func() { backoff = 100 * time.Millisecond })
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.cfg.Logger.WarnContext(ctx, "registry watch lost its connection; reconnecting", "error", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// watchOnce listens until the connection fails or ctx ends.
func (r *Registry) watchOnce(ctx context.Context, cache Invalidator, connected func()) error {
	conn, err := pgx.ConnectConfig(ctx, r.cfg.Owner.Config().ConnConfig.Copy())
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{WatchChannel}.Sanitize()); err != nil {
		return err
	}
	connected()
	if all, ok := cache.(interface{ InvalidateAll() }); ok {
		all.InvalidateAll()
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		id, slug, ok := strings.Cut(n.Payload, " ")
		if !ok {
			r.cfg.Logger.WarnContext(ctx, "registry watch: malformed notification", "payload", n.Payload)
			continue
		}
		cache.Invalidate(id)
		cache.Invalidate(slug)
	}
}

var _ Invalidator = (*tenant.Cache)(nil)
