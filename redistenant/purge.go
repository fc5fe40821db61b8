package redistenant

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/rueidis"
	"github.com/tenancykit/tenancy/internal/redisconfine"
	"github.com/tenancykit/tenancy/tenant"
)

// purgeBatch is how many keys one SCAN step asks for and one UNLINK removes.
const purgeBatch = 500

// Purge deletes every key of tenant t and nothing else: SCAN with the
// tenant's escaped prefix as MATCH, UNLINK in batches; on a cluster, on the
// node that holds the tenant's slot. It returns how many keys it removed. It is safe to rerun, and
// keys written while it runs may survive it.
func (c *Client) Purge(ctx context.Context, t tenant.Tenant) (int64, error) {
	if err := t.Validate(); err != nil {
		return 0, err
	}
	prefix := c.prefix(t)
	match := redisconfine.EscapeGlob(prefix) + "*"
	var removed int64
	var cursor uint64
	for {
		// Every key of the tenant is in the slot of its hash tag, so one node
		// holds them all: route SCAN there.
		scan := c.c.B().Scan().Cursor(cursor).Match(match).Count(purgeBatch).Build().SetSlot(prefix)
		entry, err := c.c.Do(ctx, scan).AsScanEntry()
		if err != nil {
			return removed, fmt.Errorf("redistenant: purge tenant %s: scan: %w", t, err)
		}
		if len(entry.Elements) > 0 {
			n, err := c.c.Do(ctx, c.c.B().Unlink().Key(entry.Elements...).Build()).AsInt64()
			if err != nil {
				return removed, fmt.Errorf("redistenant: purge tenant %s: unlink: %w", t, err)
			}
			removed += n
		}
		if entry.Cursor == 0 {
			break
		}
		cursor = entry.Cursor
	}
	return removed, nil
}

// Scan runs one SCAN step over the context tenant's keys and returns them
// without the prefix. match is a glob within the tenant's namespace ("" for
// all); count is a hint (0 for the server's default).
func (c *Client) Scan(ctx context.Context, cursor uint64, match string, count int64) (rueidis.ScanEntry, error) {
	t, err := tenant.Require(ctx)
	if err != nil {
		return rueidis.ScanEntry{}, err
	}
	return c.scan(ctx, c.prefix(t), cursor, match, count, "")
}

// scan is one SCAN step over the keys under prefix, of keyType if set,
// returned without the prefix.
func (c *Client) scan(ctx context.Context, prefix string, cursor uint64, match string, count int64, keyType string) (rueidis.ScanEntry, error) {
	if match == "" {
		match = "*"
	}
	args := []string{"SCAN", strconv.FormatUint(cursor, 10), "MATCH", redisconfine.EscapeGlob(prefix) + match}
	if count > 0 {
		args = append(args, "COUNT", strconv.FormatInt(count, 10))
	}
	if keyType != "" {
		args = append(args, "TYPE", keyType)
	}
	entry, err := c.c.Do(ctx, c.c.B().Arbitrary(args...).ReadOnly().SetSlot(prefix)).AsScanEntry()
	if err != nil {
		return entry, err
	}
	stripAll(entry.Elements, prefix)
	return entry, nil
}

// Keys returns the context tenant's keys that match pattern, without the
// prefix. Like KEYS, it blocks the server while it runs: prefer Scan.
func (c *Client) Keys(ctx context.Context, pattern string) ([]string, error) {
	t, err := tenant.Require(ctx)
	if err != nil {
		return nil, err
	}
	prefix := c.prefix(t)
	keys, err := c.c.Do(ctx, c.c.B().Keys().Pattern(redisconfine.EscapeGlob(prefix)+pattern).Build().SetSlot(prefix)).AsStrSlice()
	if err != nil {
		return nil, err
	}
	stripAll(keys, prefix)
	return keys, nil
}

// MGet is the tenant-confined rueidis.MGet: it reads keys of the context's
// tenant and returns their values by unprefixed key. All of a tenant's keys
// share a cluster slot, so it is one MGET.
func (c *Client) MGet(ctx context.Context, keys []string) (map[string]rueidis.RedisMessage, error) {
	if len(keys) == 0 {
		return map[string]rueidis.RedisMessage{}, nil
	}
	// Arbitrary with Args: no builder checks that the unprefixed keys share
	// a cluster slot (the prefixed ones do), so this works on every client.
	vals, err := c.Do(ctx, c.c.B().Arbitrary("MGET").Args(keys...).Build()).ToArray()
	if err != nil {
		return nil, err
	}
	out := make(map[string]rueidis.RedisMessage, len(keys))
	for i, k := range keys {
		out[k] = vals[i]
	}
	return out, nil
}

// MSet is the tenant-confined rueidis.MSet: one MSET of the context tenant's
// keys. It returns nil or the error for every key.
func (c *Client) MSet(ctx context.Context, kvs map[string]string) error {
	if len(kvs) == 0 {
		return nil
	}
	args := make([]string, 0, 2*len(kvs))
	for k, v := range kvs {
		args = append(args, k, v)
	}
	return c.Do(ctx, c.c.B().Arbitrary("MSET").Args(args...).Build()).Error()
}

// MDel is the tenant-confined rueidis.MDel: one DEL of the context tenant's
// keys, returning how many existed.
func (c *Client) MDel(ctx context.Context, keys []string) (int64, error) {
	if len(keys) == 0 {
		return 0, nil
	}
	return c.Do(ctx, c.c.B().Arbitrary("DEL").Args(keys...).Build()).AsInt64()
}

func stripAll(keys []string, prefix string) {
	for i, k := range keys {
		keys[i] = strip(k, prefix)
	}
}
