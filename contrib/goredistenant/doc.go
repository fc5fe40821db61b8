// Package goredistenant confines a go-redis (github.com/redis/go-redis/v9)
// client to the tenant carried by each call's context, with the key table,
// refusals and connection-state rules of redistenant: the same command
// reaches Redis as the same confined command through either client, so a
// service can serve a tenant through both.
//
//	c := goredistenant.New(redis.NewClient(&redis.Options{Addr: addr}), goredistenant.Config{})
//	ctx = tenant.NewContext(ctx, t)   // usually done by tenant.Middleware
//	c.Set(ctx, "cart:42", "3", 0)     // SET t:{<id>}:cart:42 3
//
// New adds a hook to the *redis.Client, so code that already takes a
// *redis.Client (c.Client) is confined too. [NewCluster] does the same for a
// *redis.ClusterClient, with a hook on it and one on each node client: a
// tenant's keys share its hash tag's slot, so a tenant's multi-key commands,
// pipelines and transactions run on one node, and SCAN and KEYS are sent to
// that node. A call whose context carries no
// tenant fails with tenant.ErrNoTenant, before anything is sent; refusals are
// redistenant's [redistenant.CommandError], matching
// [redistenant.ErrUnsupportedCommand], [redistenant.ErrCommandNotAllowed] or
// [redistenant.ErrConnectionState]. In a pipeline one refused command fails
// every command and sends none.
//
// # Replies
//
// Key names in replies are stripped of the prefix for SCAN (so Scan then Del
// works, and the ScanIterator), KEYS, BLPOP, BRPOP, LMPOP, BLMPOP, BZPOPMIN,
// BZPOPMAX, ZMPOP, BZMPOP, XREAD and XREADGROUP, for the channel names of
// PubSubChannels, PubSubShardChannels, PubSubNumSub and PubSubShardNumSub,
// and for SCAN, KEYS, BLPOP and BRPOP through Do. SCAN without MATCH is sent with MATCH <prefix>*. Use
// [Client.Strip] for key names in any other reply (a key stored as a
// value), and [Client.Key] to build one. After a call, the command's
// arguments read as they were built: processing a command twice prefixes
// it once.
//
// # Connections
//
// go-redis hands a pooled connection to one tenant after another, so a
// command that changes a connection's state is refused as on rueidis's
// shared connection:
//
//   - MULTI, EXEC, DISCARD: only inside one pipeline, as complete blocks —
//     TxPipelined, or a Pipelined holding the whole block.
//   - WATCH, UNWATCH: only through [Client.Watch], which watches its keys on
//     the transaction's own connection; go-redis's Watch (c.Client.Watch)
//     and Tx.Watch inside the callback are refused. go-redis unwatches the
//     connection before it goes back to the pool.
//   - SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE: only through [Client.Subscribe],
//     [Client.PSubscribe] and [Client.SSubscribe], which return a [PubSub]
//     bound to the tenant (channels and patterns prefixed, messages
//     stripped). go-redis writes its own PubSub's subscriptions past every
//     hook, so every connection the hooked client dials is guarded: a
//     subscribe command written on it by anything but this package's PubSub
//     fails the write, and go-redis discards the connection. Spelling
//     another tenant's channel in full with c.Client.Subscribe subscribes to
//     nothing.
//   - HELLO, AUTH, SELECT, CLIENT SETNAME, CLIENT SETINFO and CLIENT
//     MAINT_NOTIFICATIONS: go-redis sets every new connection up with them,
//     through the hooks and with or without a tenant. They are allowed, with
//     or without a tenant, exactly as the client's options say (its
//     protocol, database, client name and credentials; a COPY within the
//     client's own database too) and refused otherwise; with a credentials
//     provider, any credentials are accepted.
//   - Everything else redistenant refuses (SWAPDB, CLIENT REPLY, CLIENT
//     KILL, MONITOR, ...): refused here.
//
// # Removing a tenant
//
// [Client.Purge] (and ClusterClient's) deletes every key of one tenant and
// nothing else, as redistenant's Purge does.
//
// # Where it stops
//
//   - *redis.Client (NewClient, and NewFailoverClient reading the primary)
//     and *redis.ClusterClient only: Ring, and a FailoverClusterClient's
//     or UniversalClient's other shapes, are not covered.
//   - go-redis's AutoPipeliner (v9.22 and later; this module builds with
//     v9.21) writes a command before the hooks run in its full-duplex mode,
//     so its commands are not confined: do not use it on a confined client.
//   - Hooks added before New see the commands as built, hooks added after
//     see them prefixed. Connections dialed before New are not guarded, and
//     a redis.Conn, Tx or cluster node client made before New has no hook:
//     call New (NewCluster) first.
//   - Options.OnConnect runs with the context of the dial; commands it sends
//     other than the handshake's need a tenant in that context.
//   - Scripts: as in redistenant, EVAL and FCALL must declare their keys.
package goredistenant
