package goredistenant_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"github.com/tenancykit/tenancy/internal/testenv"
	"github.com/tenancykit/tenancy/redistenant"
	"github.com/tenancykit/tenancy/tenant"
)

// op is one step of a random program: run builds its command on a
// go-redis Cmdable, k turns a key name into the name to send (the identity
// for the confined client, the prefix added by hand for the oracle), and
// result normalises what the command returned.
type op struct {
	name string
	run  func(ctx context.Context, c redis.Cmdable, k func(string) string) redis.Cmder
}

var programKeys = []string{"a", "b", "c", "h", "l", "s", "z"}

// randomOp draws an op; keyless adds KEYS and SCAN, which a raw go-redis
// ClusterClient sends to any node (it cannot know they concern one slot),
// so the cluster's differential test leaves them out (TestCluster covers
// them).
func randomOp(r *rand.Rand, keyless bool) op {
	key := programKeys[r.IntN(len(programKeys))]
	other := programKeys[r.IntN(len(programKeys))]
	val := fmt.Sprint(r.IntN(5))
	score := float64(r.IntN(3))
	ops := []op{
		{"set", func(ctx context.Context, c redis.Cmdable, k func(string) string) redis.Cmder {
			return c.Set(ctx, k(key), val, 0)
		}},
		{"get", func(ctx context.Context, c redis.Cmdable, k func(string) string) redis.Cmder {
			return c.Get(ctx, k(key))
		}},
		{"incr", func(ctx context.Context, c redis.Cmdable, k func(string) string) redis.Cmder {
			return c.Incr(ctx, k(key))
		}},
		{"append", func(ctx context.Context, c redis.Cmdable, k func(string) string) redis.Cmder {
			return c.Append(ctx, k(key), val)
		}},
		{"del", func(ctx context.Context, c redis.Cmdable, k func(string) string) redis.Cmder {
			return c.Del(ctx, k(key), k(other))
		}},
		{"exists", func(ctx context.Context, c redis.Cmdable, k func(string) string) redis.Cmder {
			return c.Exists(ctx, k(key), k(other))
		}},
		{"type", func(ctx context.Context, c redis.Cmdable, k func(string) string) redis.Cmder {
			return c.Type(ctx, k(key))
		}},
		{"mset", func(ctx context.Context, c redis.Cmdable, k func(string) string) redis.Cmder {
			return c.MSet(ctx, k(key), val, k(other), val)
		}},
		{"mget", func(ctx context.Context, c redis.Cmdable, k func(string) string) redis.Cmder {
			return c.MGet(ctx, k(key), k(other))
		}},
		{"hset", func(ctx context.Context, c redis.Cmdable, k func(string) string) redis.Cmder {
			return c.HSet(ctx, k(key), "f"+val, val)
		}},
		{"hgetall", func(ctx context.Context, c redis.Cmdable, k func(string) string) redis.Cmder {
			return c.HGetAll(ctx, k(key))
		}},
		{"lpush", func(ctx context.Context, c redis.Cmdable, k func(string) string) redis.Cmder {
			return c.LPush(ctx, k(key), val)
		}},
		{"lrange", func(ctx context.Context, c redis.Cmdable, k func(string) string) redis.Cmder {
			return c.LRange(ctx, k(key), 0, -1)
		}},
		{"lmove", func(ctx context.Context, c redis.Cmdable, k func(string) string) redis.Cmder {
			return c.LMove(ctx, k(key), k(other), "LEFT", "RIGHT")
		}},
		{"sadd", func(ctx context.Context, c redis.Cmdable, k func(string) string) redis.Cmder {
			return c.SAdd(ctx, k(key), val)
		}},
		{"sunionstore", func(ctx context.Context, c redis.Cmdable, k func(string) string) redis.Cmder {
			return c.SUnionStore(ctx, k(key), k(other), k(key))
		}},
		{"zadd", func(ctx context.Context, c redis.Cmdable, k func(string) string) redis.Cmder {
			return c.ZAdd(ctx, k(key), redis.Z{Score: score, Member: val})
		}},
		{"zrange", func(ctx context.Context, c redis.Cmdable, k func(string) string) redis.Cmder {
			return c.ZRangeWithScores(ctx, k(key), 0, -1)
		}},
		{"rename", func(ctx context.Context, c redis.Cmdable, k func(string) string) redis.Cmder {
			return c.Rename(ctx, k(key), k(other))
		}},
		{"copy", func(ctx context.Context, c redis.Cmdable, k func(string) string) redis.Cmder {
			return c.Copy(ctx, k(key), k(other), 0, true)
		}},
		{"eval", func(ctx context.Context, c redis.Cmdable, k func(string) string) redis.Cmder {
			return c.Eval(ctx, "return redis.call('exists', KEYS[1]) + #ARGV", []string{k(key)}, val)
		}},
	}
	if keyless {
		ops = append(ops, []op{{"keys", func(ctx context.Context, c redis.Cmdable, k func(string) string) redis.Cmder {
			return c.Keys(ctx, k("*"))
		}},
			{"scan", func(ctx context.Context, c redis.Cmdable, k func(string) string) redis.Cmder {
				// One page that covers the whole keyspace (other tests'
				// keys included), so both clients see every key they have.
				return c.Scan(ctx, 0, k("*"), 1<<20)
			}}}...)
	}
	return ops[r.IntN(len(ops))]
}

// result is what a command returned, comparable between the two clients:
// key names from KEYS and SCAN are those of the tenant, sorted.
func result(cmd redis.Cmder, strip func(string) string) any {
	if err := cmd.Err(); err != nil {
		return "error: " + err.Error()
	}
	switch c := cmd.(type) {
	case *redis.StringSliceCmd:
		if strings.EqualFold(cmd.Name(), "keys") {
			keys := c.Val()
			out := make([]string, len(keys))
			for i, k := range keys {
				out[i] = strip(k)
			}
			sort.Strings(out)
			return out
		}
		return c.Val()
	case *redis.ScanCmd:
		keys, _ := c.Val()
		out := make([]string, len(keys))
		for i, k := range keys {
			out[i] = strip(k)
		}
		sort.Strings(out)
		return out
	case *redis.StatusCmd:
		return c.Val()
	case *redis.StringCmd:
		return c.Val()
	case *redis.IntCmd:
		return c.Val()
	case *redis.SliceCmd:
		return c.Val()
	case *redis.MapStringStringCmd:
		return c.Val()
	case *redis.ZSliceCmd:
		return c.Val()
	case *redis.Cmd:
		return c.Val()
	}
	return fmt.Sprintf("%T %v", cmd, cmd)
}

// TestSameProgramAsRawGoRedis runs random programs of commands, some one by
// one and some pipelined, through the confined client with a tenant context
// and through a raw go-redis client with the tenant's prefix added by hand:
// every result must be the same, and the server must hold the same keys.
func TestSameProgramAsRawGoRedis(t *testing.T) {
	t.Parallel()
	c, raw, a, _ := setup(t)
	oracle := testenv.Tenant(t, "go")
	t.Cleanup(func() {
		for _, k := range rawKeys(t, raw, oracle) {
			raw.Del(context.Background(), k)
		}
	})
	sameProgram(t, c, raw, a, oracle, 150, true, func(tn tenant.Tenant) []string { return rawKeys(t, raw, tn) })
}

// TestSameProgramAsRawGoRedisCluster is the differential test on a Redis
// Cluster, against a raw go-redis ClusterClient.
func TestSameProgramAsRawGoRedisCluster(t *testing.T) {
	c, raw, a, _ := setupCluster(t)
	oracle := testenv.Tenant(t, "goc")
	t.Cleanup(func() {
		for _, k := range clusterKeys(t, raw, oracle) {
			raw.Del(context.Background(), k)
		}
	})
	sameProgram(t, c, raw, a, oracle, 60, false, func(tn tenant.Tenant) []string { return clusterKeys(t, raw, tn) })
}

func sameProgram(t *testing.T, c, raw redis.Cmdable, a, oracle tenant.Tenant, programs int, keyless bool, keysOf func(tenant.Tenant) []string) {
	oraclePrefix := redistenant.Prefix(oracle)
	ctx := ctxFor(a)
	same := func(k string) string { return k }
	byHand := func(k string) string { return oraclePrefix + k }
	strip := func(k string) string { return strings.TrimPrefix(k, oraclePrefix) }
	const steps = 20
	for p := range programs {
		r := rand.New(rand.NewPCG(uint64(p), 7))
		for s := 0; s < steps; {
			n := 1 + r.IntN(4)
			prog := make([]op, n)
			for i := range prog {
				prog[i] = randomOp(r, keyless)
			}
			var got, want []any
			if r.IntN(2) == 0 { // one by one
				for _, o := range prog {
					got = append(got, result(o.run(ctx, c, same), same))
					want = append(want, result(o.run(context.Background(), raw, byHand), strip))
				}
			} else { // pipelined, in a transaction half of the time
				pipe := c.Pipelined
				rawPipe := raw.Pipelined
				if r.IntN(2) == 0 {
					pipe, rawPipe = c.TxPipelined, raw.TxPipelined
				}
				cmds, _ := pipe(ctx, func(pl redis.Pipeliner) error {
					for _, o := range prog {
						o.run(ctx, pl, same)
					}
					return nil
				})
				rawCmds, _ := rawPipe(context.Background(), func(pl redis.Pipeliner) error {
					for _, o := range prog {
						o.run(context.Background(), pl, byHand)
					}
					return nil
				})
				for i := range cmds {
					got = append(got, result(cmds[i], same))
					want = append(want, result(rawCmds[i], strip))
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				names := make([]string, len(prog))
				for i, o := range prog {
					names[i] = o.name
				}
				t.Fatalf("program %d step %d %v: confined vs raw (-raw +confined):\n%s", p, s, names, diff)
			}
			s += n
		}
		ours := keysOf(a)
		theirs := keysOf(oracle)
		for i := range ours {
			ours[i] = strings.TrimPrefix(ours[i], redistenant.Prefix(a))
		}
		for i := range theirs {
			theirs[i] = strip(theirs[i])
		}
		if diff := cmp.Diff(theirs, ours); diff != "" {
			t.Fatalf("program %d: keys held (-raw +confined):\n%s", p, diff)
		}
		for _, k := range programKeys { // the next program starts empty
			raw.Del(context.Background(), redistenant.Prefix(a)+k)
			raw.Del(context.Background(), oraclePrefix+k)
		}
	}
}

type marshaled struct{ s string }

func (m marshaled) MarshalBinary() ([]byte, error) { return []byte("bin-" + m.s), nil }

// TestKeysOfEveryArgumentType: go-redis writes a key of any type it can
// write; the confined key is the tenant's prefix followed by exactly the
// bytes go-redis would have written, which the server echoes back.
func TestKeysOfEveryArgumentType(t *testing.T) {
	t.Parallel()
	c, raw, a, _ := setup(t)
	ctx := ctxFor(a)
	n, u8, f := 42, uint8(7), 2.5
	var nilInt *int
	var nilU8 *uint8
	when := time.Date(2026, 12, 7, 10, 0, 0, 123, time.UTC)
	for _, key := range []any{
		"s", []byte("b"), 1, int8(-2), int16(3), int32(-4), int64(5), uint(6), u8, uint16(8), uint32(9), uint64(10),
		float32(1.5), 3.25, true, false, time.Second, when, &n, &u8, &f, nilInt, nilU8, &when,
		marshaled{"m"}, net.ParseIP("10.0.0.1"),
	} {
		echo, err := raw.Do(context.Background(), "echo", key).Text()
		if err != nil {
			t.Fatalf("echo %T: %v", key, err)
		}
		if err := c.Do(ctx, "set", key, "v").Err(); err != nil {
			t.Errorf("set with a %T key: %v", key, err)
			continue
		}
		if got := raw.Get(context.Background(), redistenant.Prefix(a)+echo).Val(); got != "v" {
			t.Errorf("a %T key %q did not land at the tenant's prefix + %q", key, key, echo)
		}
		raw.Del(context.Background(), redistenant.Prefix(a)+echo)
	}
	if err := c.Do(ctx, "set", struct{}{}, "v").Err(); err == nil {
		t.Error("a key go-redis cannot write was sent")
	}
}

func TestHandshakeFollowsTheOptions(t *testing.T) {
	t.Parallel()
	c, raw, a, _ := setup(t, func(o *redis.Options) {
		o.DB = 3
		o.ClientName = "gr-handshake"
		o.MinIdleConns = 2 // dialled by the pool with no tenant
	})
	ctx := ctxFor(a)
	if err := c.Set(ctx, "indb3", "v", 0).Err(); err != nil {
		t.Fatalf("a client with DB, ClientName and idle connections: %v", err)
	}
	db3 := redis.NewClient(&redis.Options{Addr: raw.Options().Addr, DB: 3})
	defer db3.Close()
	if got := db3.Get(context.Background(), redistenant.Prefix(a)+"indb3").Val(); got != "v" {
		t.Errorf("the key is not in database 3: %q", got)
	}
	db3.Del(context.Background(), redistenant.Prefix(a)+"indb3")
	if name := c.ClientGetName(ctx).Val(); name != "gr-handshake" {
		t.Errorf("CLIENT GETNAME = %q", name)
	}
	// The handshake's own commands are allowed only as the options say.
	conn := c.Conn()
	defer conn.Close()
	for _, cmd := range []func() error{
		func() error { return conn.Select(ctx, 0).Err() },
		func() error { return conn.ClientSetName(ctx, "other").Err() },
		func() error { return conn.Hello(ctx, 3, "", "", "other").Err() },
	} {
		if err := cmd(); err == nil {
			t.Error("a handshake command with other values than the options' was sent")
		}
	}
	if err := conn.Select(ctx, 3).Err(); err != nil {
		t.Errorf("SELECT of the client's own database: %v", err)
	}
}
