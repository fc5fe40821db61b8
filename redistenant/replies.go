package redistenant

import (
	"context"
	"fmt"

	"github.com/redis/rueidis"
)

// Replies cannot be rewritten on their way back, so replies that name keys
// would carry the tenant's prefix. These helpers send a command through the
// confining client and return its reply with the keys stripped.

// DoPop sends BLPOP or BRPOP and returns the key (without the prefix) and the
// element popped. A timeout returns rueidis's nil error.
func (c *Client) DoPop(ctx context.Context, cmd rueidis.Completed) (key, element string, err error) {
	prefix, err := c.prefixOf(ctx)
	if err != nil {
		return "", "", err
	}
	kv, err := c.Do(ctx, cmd).AsStrSlice()
	if err != nil {
		return "", "", err
	}
	if len(kv) != 2 {
		return "", "", fmt.Errorf("redistenant: want a key and an element, got %d values", len(kv))
	}
	return strip(kv[0], prefix), kv[1], nil
}

// DoZPop sends BZPOPMIN or BZPOPMAX and returns the key (without the prefix)
// and the member popped with its score.
func (c *Client) DoZPop(ctx context.Context, cmd rueidis.Completed) (key string, member rueidis.ZScore, err error) {
	prefix, err := c.prefixOf(ctx)
	if err != nil {
		return "", member, err
	}
	vals, err := c.Do(ctx, cmd).ToArray()
	if err != nil {
		return "", member, err
	}
	if len(vals) != 3 {
		return "", member, fmt.Errorf("redistenant: want key, member and score, got %d values", len(vals))
	}
	if key, err = vals[0].ToString(); err != nil {
		return "", member, err
	}
	if member.Member, err = vals[1].ToString(); err != nil {
		return "", member, err
	}
	if member.Score, err = vals[2].AsFloat64(); err != nil {
		return "", member, err
	}
	return strip(key, prefix), member, nil
}

// DoLMPop sends LMPOP or BLMPOP and returns the reply with its key stripped.
func (c *Client) DoLMPop(ctx context.Context, cmd rueidis.Completed) (rueidis.KeyValues, error) {
	prefix, err := c.prefixOf(ctx)
	if err != nil {
		return rueidis.KeyValues{}, err
	}
	kv, err := c.Do(ctx, cmd).AsLMPop()
	kv.Key = strip(kv.Key, prefix)
	return kv, err
}

// DoZMPop sends ZMPOP or BZMPOP and returns the reply with its key stripped.
func (c *Client) DoZMPop(ctx context.Context, cmd rueidis.Completed) (rueidis.KeyZScores, error) {
	prefix, err := c.prefixOf(ctx)
	if err != nil {
		return rueidis.KeyZScores{}, err
	}
	kv, err := c.Do(ctx, cmd).AsZMPop()
	kv.Key = strip(kv.Key, prefix)
	return kv, err
}

// DoXRead sends XREAD or XREADGROUP and returns the entries by stream name
// without the prefix.
func (c *Client) DoXRead(ctx context.Context, cmd rueidis.Completed) (map[string][]rueidis.XRangeEntry, error) {
	prefix, err := c.prefixOf(ctx)
	if err != nil {
		return nil, err
	}
	streams, err := c.Do(ctx, cmd).AsXRead()
	if err != nil {
		return nil, err
	}
	out := make(map[string][]rueidis.XRangeEntry, len(streams))
	for k, v := range streams {
		out[strip(k, prefix)] = v
	}
	return out, nil
}

func (c *Client) prefixOf(ctx context.Context) (string, error) {
	k, err := c.Key(ctx, "")
	return k, err
}

func strip(key, prefix string) string {
	if len(key) >= len(prefix) && key[:len(prefix)] == prefix {
		return key[len(prefix):]
	}
	return key
}
