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
// MATCH gets one), pub/sub channels and patterns, CLIENT TRACKING PREFIX.
// Every command in the table is checked against COMMAND GETKEYS in the tests.
//
// # Fail closed
//
// A call whose context carries no tenant returns [tenant.ErrNoTenant]. A
// command whose keys cannot be located returns [ErrUnsupportedCommand]; one
// that reaches across the keyspace or the server (FLUSHALL, FLUSHDB, SWAPDB,
// SELECT, RANDOMKEY, DBSIZE, CONFIG, DEBUG, MONITOR, INFO, SCRIPT/FUNCTION
// FLUSH, CLIENT KILL/LIST, COPY ... DB, CLIENT TRACKING without PREFIX, ...)
// returns [ErrCommandNotAllowed]. The error is the command's result, nothing
// is sent, and in DoMulti one refused command stops the whole pipeline, so a
// MULTI/EXEC block never runs in part.
//
// Scripts must declare their keys (numkeys > 0): the declared keys are
// confined, but Redis cannot stop a script from naming other keys, so a
// script that declares none is refused. Review scripts like any code that
// builds key names. On a cluster, start scripts with "#!lua": Redis 7 then
// refuses any key outside the declared keys' slot, which is the tenant's.
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
// Replies cannot be rewritten on the way back. [Client.Scan] and
// [Client.Keys] return keys without the prefix, [Client.MGet], [Client.MSet]
// and [Client.MDel] are tenant-safe forms of rueidis's helpers, and
// [Client.Strip] removes the prefix from a key in any other reply (BLPOP,
// XREAD, ...). Pub/sub messages reach Receive callbacks without the prefix.
//
// # Commands used many times
//
// A command is rewritten in place, as rueidis hands it over to the call. A
// pinned command (Pin) is copied instead, so reusing it, from any number of
// goroutines and tenants, never prefixes twice. A pinned Cacheable cannot be
// copied and is refused: build cacheable commands per call.
//
// # Removing a tenant
//
// [Client.Purge] deletes every key of one tenant and nothing else.
package redistenant
