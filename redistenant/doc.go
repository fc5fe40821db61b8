// Package redistenant confines a rueidis client to the tenant carried by each
// call's context.
//
// Wrap the client once; from then on every command built with the normal
// rueidis builder and sent with a tenant context reaches Redis with its keys,
// channels and patterns under the tenant's namespace, "t:{<tenant-id>}:" by
// default:
//
//	client := redistenant.New(rc, redistenant.Config{})
//	ctx = tenant.NewContext(ctx, t) // usually done by tenant.Middleware
//	client.Do(ctx, client.B().Set().Key("cart:42").Value("3").Build()) // SET t:{<id>}:cart:42 3
//
// # How keys are found
//
// Key positions come from a table generated from a Redis 7 server's own
// COMMAND reply (internal/keyspec), with hand-written handling where the
// server's key specs cannot say: EVAL/FCALL numkeys, SORT BY/GET/STORE
// patterns, KEYS and SCAN MATCH (the prefix is glob-escaped, and SCAN without
// MATCH gets one), pub/sub channels and patterns.
// Every command in the table is checked against COMMAND GETKEYS in the tests.
//
// # Fail closed
//
// A call whose context carries no tenant returns [tenant.ErrNoTenant]. A
// command whose keys cannot be located returns [ErrUnsupportedCommand]; one
// that reaches across the keyspace or the server (FLUSHALL, FLUSHDB, SWAPDB,
// SELECT, RANDOMKEY, DBSIZE, CONFIG, DEBUG, MONITOR, INFO, SCRIPT/FUNCTION
// FLUSH, COPY ... DB, ...) returns [ErrCommandNotAllowed]. The error is the command's result, nothing
// is sent, and in DoMulti one refused command stops the whole pipeline, so a
// MULTI/EXEC block never runs in part.
//
// Scripts must declare their keys (numkeys > 0): the declared keys are
// confined, but Redis cannot stop a script from naming other keys, so a
// script that declares none is refused. Review scripts like any code that
// builds key names. On a cluster, start scripts with "#!lua": Redis 7 then
// refuses any key outside the declared keys' slot, which is the tenant's.
//
// # The shared connection
//
// rueidis multiplexes every tenant's commands over one pipelined connection
// per node, so a command that changes or reads the state of that connection
// would do so for every tenant. Each such command — every one the server
// documents in its "connection" and "transactions" groups, the subscribe
// family, READONLY/READWRITE/ASKING, MONITOR, SWAPDB; a test checks the table
// against COMMAND DOCS — is decided once, and refused elsewhere with
// [ErrConnectionState] (which also matches [ErrCommandNotAllowed]) naming the
// safe alternative:
//
//   - MULTI, EXEC, DISCARD: on the shared client only inside [Client.DoMulti],
//     as complete, unnested blocks (rueidis writes a DoMulti with nothing in
//     between); anywhere on a dedicated connection.
//   - WATCH, UNWATCH: only on a dedicated connection ([Client.Dedicated],
//     [Client.Dedicate]), for optimistic transactions. A WATCH or MULTI left
//     open there is discarded before the connection goes back to the pool.
//   - SUBSCRIBE and the rest of the family: through [Client.Receive], or on a
//     dedicated connection.
//   - PING, ECHO, CLIENT ID, CLIENT GETNAME, CLIENT INFO: allowed.
//   - Everything else — SELECT, SWAPDB, RESET, HELLO, AUTH, QUIT, MONITOR,
//     READONLY, READWRITE, ASKING, and CLIENT REPLY, SETNAME, SETINFO,
//     TRACKING, CACHING, TRACKINGINFO, GETREDIR, NO-EVICT, NO-TOUCH, KILL,
//     PAUSE, UNPAUSE, UNBLOCK, LIST: refused everywhere; set what they set
//     through rueidis.ClientOption.
//
// # Clusters
//
// The prefix's braces make the tenant ID the hash tag, so all of a tenant's
// keys share one slot: multi-key commands work within a tenant, and every
// rewritten command carries the slot of its rewritten keys, so no command
// costs a MOVED. On a cluster, [Client.B] returns a builder that does not
// insist that unprefixed keys share a slot, as rueidis's cluster builder does.
//
// # Replies that hold key names
//
// Replies cannot be rewritten on the way back. These helpers return key names
// without the prefix, and work on a cluster as on a single server:
//
//   - [Client.Scan], [Client.Keys]: the tenant's keys.
//   - [Client.MGet], [Client.MSet], [Client.MDel]: tenant-safe forms of
//     rueidis's helpers (one command each: a tenant's keys share a slot).
//   - [Client.DoPop] (BLPOP, BRPOP), [Client.DoZPop] (BZPOPMIN, BZPOPMAX),
//     [Client.DoLMPop] (LMPOP, BLMPOP), [Client.DoZMPop] (ZMPOP, BZMPOP),
//     [Client.DoXRead] (XREAD, XREADGROUP): the reply with its keys stripped.
//   - [Client.Key] and [Client.Strip]: add or remove the prefix yourself, for
//     any other reply.
//
// Pub/sub messages reach Receive callbacks without the prefix. The prefix
// cache is per Client.
//
// # Code that does not carry the tenant: bound clients and rueidis companions
//
// [Client.For] returns a [Bound] handle: a rueidis.Client confined to one
// tenant whatever its calls' contexts carry (a context naming another
// tenant is refused with [ErrTenantMismatch]; closing the handle leaves the
// shared client open). [ClientBuilder] makes such clients from a
// rueidis.ClientOption, for companions that build their own, and delivers
// their client-side caching invalidations without the tenant's prefix.
//
//   - rueidislock: pass ClientBuilder(t, cfg) as LockerOption.ClientBuilder;
//     the same lock name is a different lock in each tenant, and release
//     (which rueidislock sends with context.Background()) works. Tested.
//   - rueidiscompat: [Compat](handle) is its go-redis-style API on the
//     tenant: Scan, ScanType and Keys return names without the prefix (Scan
//     then Del works), DBSize counts and FlushDB deletes the tenant's keys,
//     FlushAll is refused. (rueidiscompat.NewAdapter(handle) directly reads
//     and writes the tenant's keys too, but its Scan and Keys return them
//     prefixed and its DBSize and FlushDB are refused.) Tested.
//   - rueidisaside is not on the module proxy this project builds from, so
//     it is untested; it calls with context.Background() like rueidislock,
//     which a handle from For or ClientBuilder covers.
//
// On a [Client] itself (no handle), a companion's background-context calls
// are refused with tenant.ErrNoTenant, as any call without a tenant is.
//
// # Commands used many times
//
// A command is rewritten in place, as rueidis hands it over to the call. A
// pinned command (Pin) is copied instead, so reusing it, from any number of
// goroutines and tenants, never prefixes twice. A pinned Cacheable cannot be
// copied and is refused: build cacheable commands per call.
//
// # go-redis
//
// contrib/goredistenant applies the same key table, refusals and
// connection-state rules to a go-redis client, as a hook: a tenant's keys
// are the same through either client.
//
// # Removing a tenant
//
// [Client.Purge] deletes every key of one tenant and nothing else.
//
// # Per-tenant budgets
//
// Config.MaxInFlight bounds the calls one tenant has in flight on the
// client, so that a burst of one tenant's slow commands (BLPOP, large
// MGETs) cannot take every connection of the shared client: over the bound
// a call waits for one of its tenant's calls to return (bounded by its
// context) or, with Config.FailOverInFlight, fails with an
// *[InFlightError]. Other tenants are not slowed by the bound.
//
// For a rate instead (N calls per window per tenant), rueidislimiter
// (github.com/redis/rueidis/rueidislimiter) keyed by tenant ID does it in
// one round trip. Give it the unconfined client: its counters belong to
// the service, not to the tenant, and its Lua script would otherwise be
// confined to the tenant's namespace. Keep its KeyPrefix outside every
// tenant's namespace (the default namespaces start with "t:{"):
//
//	limiter, err := rueidislimiter.NewRateLimiter(rueidislimiter.RateLimiterOption{
//		ClientBuilder: func(rueidis.ClientOption) (rueidis.Client, error) { return tc.Unwrap(), nil },
//		KeyPrefix:     "ratelimit:tenant",
//		Limit:         100,
//		Window:        time.Second,
//	})
//	...
//	t, err := tenant.Require(ctx)
//	if err != nil { return err }
//	res, err := limiter.Allow(ctx, t.ID)
//	if err != nil { return err }
//	if !res.Allowed { return fmt.Errorf("tenant %s over its rate; retry in %v", t, res.RetryAfter) }
//
// Tiers are one limiter per tier, picked by the tenant's plan. The module
// is not in this repository's go.mod (its proxy did not serve it when this
// was written), so the recipe is not compiled here.
//
// For spans and metrics per tenant, wrap the client redistenant confines
// with tenantotel's WrapRedis.
package redistenant
