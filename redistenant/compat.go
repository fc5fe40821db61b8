package redistenant

import (
	"context"
	"fmt"

	"github.com/redis/rueidis/rueidiscompat"
)

// Compat returns rueidiscompat's go-redis-style API
// (rueidiscompat.NewAdapter) over the tenant handle b, with the commands
// whose replies name keys, or whose reach is the whole database, made the
// tenant's:
//
//   - Scan, ScanType and Keys return key names without the tenant's
//     prefix, so what they return can be passed back (Scan then Del works);
//   - DBSize counts the tenant's keys (a SCAN of its namespace);
//   - FlushDB and FlushDBAsync delete the tenant's keys and nothing else
//     ([Client.Purge]; keys written meanwhile may survive, and both run
//     synchronously);
//   - FlushAll and FlushAllAsync are refused with [ErrCommandNotAllowed].
//
// Every other method is rueidiscompat's own over b, confined like any call
// on b. Replies of commands not listed here are not rewritten (a Lua
// script's reply naming keys carries the prefix).
func Compat(b *Bound, opts ...rueidiscompat.AdapterOption) rueidiscompat.Cmdable {
	return &compat{Cmdable: rueidiscompat.NewAdapter(b, opts...), b: b}
}

type compat struct {
	rueidiscompat.Cmdable
	b *Bound
}

func (c *compat) Scan(ctx context.Context, cursor uint64, match string, count int64) *rueidiscompat.ScanCmd {
	return c.ScanType(ctx, cursor, match, count, "")
}

func (c *compat) ScanType(ctx context.Context, cursor uint64, match string, count int64, keyType string) *rueidiscompat.ScanCmd {
	cmd := &rueidiscompat.ScanCmd{}
	ctx, err := c.b.bind(ctx)
	if err != nil {
		cmd.SetErr(err)
		return cmd
	}
	entry, err := c.b.c.scan(ctx, c.b.c.prefix(c.b.t), cursor, match, count, keyType)
	if err != nil {
		cmd.SetErr(err)
		return cmd
	}
	cmd.SetVal(entry.Elements, entry.Cursor)
	return cmd
}

func (c *compat) Keys(ctx context.Context, pattern string) *rueidiscompat.StringSliceCmd {
	cmd := &rueidiscompat.StringSliceCmd{}
	ctx, err := c.b.bind(ctx)
	if err == nil {
		var keys []string
		if keys, err = c.b.c.Keys(ctx, pattern); err == nil {
			cmd.SetVal(keys)
			return cmd
		}
	}
	cmd.SetErr(err)
	return cmd
}

func (c *compat) DBSize(ctx context.Context) *rueidiscompat.IntCmd {
	cmd := &rueidiscompat.IntCmd{}
	ctx, err := c.b.bind(ctx)
	if err != nil {
		cmd.SetErr(err)
		return cmd
	}
	prefix := c.b.c.prefix(c.b.t)
	var n int64
	for cursor := uint64(0); ; {
		entry, err := c.b.c.scan(ctx, prefix, cursor, "*", purgeBatch, "")
		if err != nil {
			cmd.SetErr(fmt.Errorf("redistenant: DBSize of tenant %s: %w", c.b.t, err))
			return cmd
		}
		n += int64(len(entry.Elements))
		if cursor = entry.Cursor; cursor == 0 {
			break
		}
	}
	cmd.SetVal(n)
	return cmd
}

func (c *compat) FlushDB(ctx context.Context) *rueidiscompat.StatusCmd {
	cmd := &rueidiscompat.StatusCmd{}
	ctx, err := c.b.bind(ctx)
	if err == nil {
		if _, err = c.b.c.Purge(ctx, c.b.t); err == nil {
			cmd.SetVal("OK")
			return cmd
		}
	}
	cmd.SetErr(err)
	return cmd
}

func (c *compat) FlushDBAsync(ctx context.Context) *rueidiscompat.StatusCmd { return c.FlushDB(ctx) }

func (c *compat) FlushAll(context.Context) *rueidiscompat.StatusCmd {
	cmd := &rueidiscompat.StatusCmd{}
	cmd.SetErr(fmt.Errorf("%w: FLUSHALL deletes every tenant's keys; FlushDB deletes this tenant's", ErrCommandNotAllowed))
	return cmd
}

func (c *compat) FlushAllAsync(ctx context.Context) *rueidiscompat.StatusCmd { return c.FlushAll(ctx) }
