package goredistenant

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
	"github.com/tenancykit/tenancy/internal/redisconfine"
	"github.com/tenancykit/tenancy/tenant"
)

// hook confines every command and pipeline of the client it is added to.
type hook struct {
	prefix    func(tenant.Tenant) string
	handshake *handshake
	// cluster is set on a ClusterClient's own hook: it marks the context
	// of what it confined, and sets the slot of a keyless command confined
	// to the tenant (SCAN, KEYS) to the tenant's.
	cluster bool
	// node is set on the hook of a ClusterClient's node clients: what the
	// cluster's hook confined passes (it must not be prefixed twice), and
	// what reaches a node client directly (a Watch's transaction,
	// ForEachShard) is confined here.
	node bool
}

var _ redis.Hook = (*hook)(nil)

// alternatives names what to use instead of a refused connection-scoped
// command, in this package's terms.
var alternatives = &redisconfine.Alternatives{
	Block:     "TxPipelined (or one Pipelined holding the whole MULTI ... EXEC block)",
	Watch:     "Client.Watch of goredistenant, with the keys to watch as its arguments",
	Subscribe: "Client.Subscribe, PSubscribe or SSubscribe of goredistenant",
}

type ctxKey uint8

const (
	// dedicatedKey marks the context Client.Watch gives go-redis's Watch:
	// the WATCH of its keys and the UNWATCH of Tx.Close run there, on the
	// Tx's own connection.
	dedicatedKey ctxKey = iota + 1
	// subscriberKey marks the contexts this package's PubSub gives
	// go-redis's: a connection dialed with it may write subscriptions.
	subscriberKey
	// confinedKey marks the context of a command a ClusterClient's hook
	// confined, when it reaches the node client's hook.
	confinedKey
)

func confinedCtx(ctx context.Context) context.Context {
	return context.WithValue(ctx, confinedKey, true)
}

func usage(ctx context.Context) redisconfine.Usage {
	if ctx.Value(dedicatedKey) != nil {
		return redisconfine.Dedicated
	}
	return redisconfine.Shared
}

func (h *hook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err != nil || ctx.Value(subscriberKey) != nil {
			return c, err
		}
		return guarded(c), nil
	}
}

func (h *hook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if h.node && ctx.Value(confinedKey) != nil {
			return next(ctx, cmd)
		}
		var c confined
		sc := scopeOf{ctx: ctx, h: h}
		if err := c.confine(ctx, cmd, usage(ctx), h, &sc); err != nil {
			return err
		}
		if h.cluster {
			ctx = confinedCtx(ctx)
		}
		var err error
		if c.swap != nil {
			err = next(ctx, c.swap)
		} else {
			err = next(ctx, cmd)
		}
		c.undo(cmd)
		c.strip(cmd)
		return err
	}
}

func (h *hook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.node && ctx.Value(confinedKey) != nil {
			return next(ctx, cmds)
		}
		use := usage(ctx)
		if use == redisconfine.Shared {
			use = redisconfine.Multi
			if err := redisconfine.CheckBlocks(len(cmds), func(i int) string { return name(cmds[i]) }, alternatives); err != nil {
				return failAll(cmds, err)
			}
		}
		var small [16]confined
		done := small[:0]
		if len(cmds) > len(small) {
			done = make([]confined, 0, len(cmds))
		}
		sc := scopeOf{ctx: ctx, h: h} // one tenant for the whole pipeline
		for _, cmd := range cmds {
			var c confined
			if err := c.confine(ctx, cmd, use, h, &sc); err != nil {
				for i := range done {
					done[i].undo(cmds[i])
				}
				return failAll(cmds, err)
			}
			done = append(done, c)
		}
		send, copied := cmds, false
		for i := range done {
			if done[i].swap != nil {
				if !copied { // the caller's slice keeps the caller's commands
					send, copied = append([]redis.Cmder(nil), cmds...), true
				}
				send[i] = done[i].swap
			}
		}
		if h.cluster {
			ctx = confinedCtx(ctx)
		}
		err := next(ctx, send)
		for i := range done {
			done[i].undo(cmds[i])
			done[i].strip(cmds[i])
		}
		return err
	}
}

// name is the name of cmd as built, for CheckBlocks (which compares it
// without regard to case).
func name(cmd redis.Cmder) string {
	if args := cmd.Args(); len(args) > 0 {
		if s, ok := args[0].(string); ok {
			return s
		}
	}
	return cmd.Name()
}

// scopeOf finds the context's tenant and its prefix once per call: a
// pipeline's commands share them.
type scopeOf struct {
	ctx    context.Context
	h      *hook
	prefix string
	err    error
	done   bool
}

func (s *scopeOf) get() (string, error) {
	if !s.done {
		t, err := tenant.Require(s.ctx)
		if err == nil {
			s.prefix = s.h.prefix(t)
		}
		s.err, s.done = err, true
	}
	return s.prefix, s.err
}

func failAll(cmds []redis.Cmder, err error) error {
	for _, c := range cmds {
		c.SetErr(err)
	}
	return err
}

// confined is what confining one command changed in its arguments, undone
// after the call so the command reads as it was built (and a command
// processed again is prefixed once).
type confined struct {
	// name is the command's name, read during the call only (it may view
	// the caller's []byte).
	name string
	sub  string // the second argument, for PUBSUB's subcommands
	// prefix is the tenant's, or "" for a handshake command.
	prefix string
	n      int
	small  [6]change
	more   []change
	// swap is the command sent instead of one that needs an argument
	// appended (SCAN without MATCH), which go-redis's commands cannot take.
	swap redis.Cmder
}

// argvPool holds the argument lists commands are planned on: the planner
// keeps none, and a pooled list saves an allocation per command.
// A list grown past maxPooledArgs (an MSET of thousands of keys) is not
// kept, so the pool never holds a large one for small commands.
var argvPool = sync.Pool{New: func() any { s := make([]string, 0, 16); return &s }}

const maxPooledArgs = 64

type change struct {
	pos  int
	orig any
}

func (c *confined) save(pos int, v any) {
	if c.n < len(c.small) {
		c.small[c.n] = change{pos, v}
		c.n++
		return
	}
	c.more = append(c.more, change{pos, v})
}

// confine confines cmd to the context's tenant, unless it is one of the
// commands that set a connection up as the client's options say.
func (c *confined) confine(ctx context.Context, cmd redis.Cmder, use redisconfine.Usage, h *hook, sc *scopeOf) error {
	args := cmd.Args()
	bp := argvPool.Get().(*[]string)
	argv := (*bp)[:0]
	defer func() {
		clear(argv) // the views of the caller's arguments go with the call
		if cap(argv) <= maxPooledArgs {
			*bp = argv[:0]
			argvPool.Put(bp)
		}
	}()
	for i, a := range args {
		s, ok := argString(a)
		if !ok {
			return redisconfine.Unsupported(redisconfine.Display(argv), fmt.Sprintf("argument %d is a %T, which go-redis cannot write", i, a))
		}
		argv = append(argv, s)
	}
	if len(argv) == 0 {
		return redisconfine.Unsupported("", "empty command")
	}
	if h.handshake.allows(argv) {
		return nil
	}
	prefix, err := sc.get()
	if err != nil {
		return err
	}
	p, err := redisconfine.For(h.handshake.sameDB(argv), use, alternatives)
	if err != nil {
		return err
	}
	c.name, c.prefix = argv[0], prefix
	if len(argv) > 1 {
		c.sub = argv[1]
	}
	if p.Len() == 0 && !p.MatchAll {
		return nil
	}
	out := redisconfine.Apply(argv, p, prefix)
	if p.MatchAll {
		if err := c.swapFor(ctx, cmd, args, p, out); err != nil {
			return err
		}
		if h.cluster && p.ToTenantSlot {
			c.swap.(interface{ SetFirstKeyPos(int8) }).SetFirstKeyPos(int8(len(out) - 1)) // the appended pattern: the tenant's hash tag
		}
		return nil
	}
	for i := 0; i < p.Len(); i++ {
		pos := p.At(i).Pos
		c.save(pos, args[pos])
		args[pos] = out[pos]
		if h.cluster && p.ToTenantSlot && i == 0 && pos < 128 {
			cmd.(interface{ SetFirstKeyPos(int8) }).SetFirstKeyPos(int8(pos)) // the pattern, which starts with the tenant's hash tag
		}
	}
	return nil
}

// swapFor makes the command sent instead of cmd, whose confined form out
// has arguments appended.
func (c *confined) swapFor(ctx context.Context, cmd redis.Cmder, args []any, p redisconfine.Plan, out []string) error {
	sent := make([]any, len(out))
	copy(sent, args)
	for i := 0; i < p.Len(); i++ {
		pos := p.At(i).Pos
		sent[pos] = out[pos]
	}
	for i := len(args); i < len(out); i++ {
		sent[i] = out[i]
	}
	switch cmd.(type) {
	case *redis.ScanCmd:
		c.swap = redis.NewScanCmd(ctx, nil, sent...)
	case *redis.StringSliceCmd:
		c.swap = redis.NewStringSliceCmd(ctx, sent...)
	case *redis.Cmd:
		c.swap = redis.NewCmd(ctx, sent...)
	default:
		return redisconfine.Unsupported(redisconfine.Display(out), fmt.Sprintf("a %T cannot be given the MATCH that confines it; pass a pattern", cmd))
	}
	return nil
}

// undo puts the arguments of cmd back as they were built, and copies the
// result of a swapped command into cmd.
func (c *confined) undo(cmd redis.Cmder) {
	args := cmd.Args()
	for i := 0; i < c.n; i++ {
		args[c.small[i].pos] = c.small[i].orig
	}
	for _, ch := range c.more {
		args[ch.pos] = ch.orig
	}
	c.n, c.more = 0, nil
	if c.swap == nil {
		return
	}
	switch dst := cmd.(type) {
	case *redis.ScanCmd:
		keys, cursor := c.swap.(*redis.ScanCmd).Val()
		dst.SetVal(keys, cursor)
	case *redis.StringSliceCmd:
		dst.SetVal(c.swap.(*redis.StringSliceCmd).Val())
	case *redis.Cmd:
		dst.SetVal(c.swap.(*redis.Cmd).Val())
	}
	cmd.SetErr(c.swap.Err())
	c.swap = nil
}

// strip removes the prefix from the key and channel names a reply holds:
// SCAN, KEYS, the blocking pops, LMPOP, ZMPOP, XREAD/XREADGROUP and PUBSUB
// CHANNELS/SHARDCHANNELS/NUMSUB/SHARDNUMSUB, in go-redis's typed commands,
// and in Do's generic replies of SCAN, KEYS, BLPOP and BRPOP.
func (c *confined) strip(cmd redis.Cmder) {
	name, prefix := c.name, c.prefix
	if cmd.Err() != nil || prefix == "" {
		return
	}
	is := func(names ...string) bool {
		for _, n := range names {
			if strings.EqualFold(name, n) {
				return true
			}
		}
		return false
	}
	trim := func(s string) string { return strings.TrimPrefix(s, prefix) }
	switch cmd := cmd.(type) {
	case *redis.ScanCmd:
		if is("scan") {
			keys, cursor := cmd.Val()
			for i := range keys {
				keys[i] = trim(keys[i])
			}
			cmd.SetVal(keys, cursor)
		}
	case *redis.StringSliceCmd:
		v := cmd.Val()
		switch {
		case is("keys"):
			for i := range v {
				v[i] = trim(v[i])
			}
		case is("blpop", "brpop") && len(v) > 0:
			v[0] = trim(v[0])
		case is("pubsub") && (strings.EqualFold(c.sub, "channels") || strings.EqualFold(c.sub, "shardchannels")):
			for i := range v {
				v[i] = trim(v[i])
			}
		}
	case *redis.MapStringIntCmd:
		if is("pubsub") { // NUMSUB, SHARDNUMSUB: counts by channel
			m := cmd.Val()
			out := make(map[string]int64, len(m))
			for k, n := range m {
				out[trim(k)] = n
			}
			cmd.SetVal(out)
		}
	case *redis.KeyValuesCmd:
		k, v := cmd.Val()
		cmd.SetVal(trim(k), v)
	case *redis.ZWithKeyCmd:
		if z := cmd.Val(); z != nil {
			z.Key = trim(z.Key)
		}
	case *redis.ZSliceWithKeyCmd:
		k, z := cmd.Val()
		cmd.SetVal(trim(k), z)
	case *redis.XStreamSliceCmd:
		v := cmd.Val()
		for i := range v {
			v[i].Stream = trim(v[i].Stream)
		}
	case *redis.Cmd:
		stripGeneric(cmd, is, trim)
	}
}

func stripGeneric(c *redis.Cmd, is func(...string) bool, trim func(string) string) {
	v, ok := c.Val().([]any)
	if !ok {
		return
	}
	trimAll := func(xs []any) {
		for i, x := range xs {
			if s, ok := x.(string); ok {
				xs[i] = trim(s)
			}
		}
	}
	switch {
	case is("keys"):
		trimAll(v)
	case is("scan") && len(v) == 2:
		if keys, ok := v[1].([]any); ok {
			trimAll(keys)
		}
	case is("blpop", "brpop") && len(v) == 2:
		trimAll(v[:1])
	}
}
