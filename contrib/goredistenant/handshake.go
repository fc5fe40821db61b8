package goredistenant

import (
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// go-redis sets up every new connection with commands it sends through the
// client's hooks, with the context of the call that needed the connection
// (or none, for the pool's idle connections): HELLO, AUTH, SELECT, CLIENT
// SETNAME, CLIENT SETINFO and CLIENT MAINT_NOTIFICATIONS (and READONLY,
// CLUSTER SLOTS and COMMAND on a cluster's nodes). Each of them
// changes the connection's state, which is refused to a tenant; but set to
// what the client's options say, it is the state every connection of the
// client has anyway, so nothing of one tenant reaches another. handshake
// lets exactly those through, with or without a tenant.
type handshake struct {
	protocol, db, name string
	user, pass         string
	// static is false when a credentials provider supplies them: they are
	// not known in advance, so any are accepted.
	static bool
	// readOnly: a cluster client that reads from replicas sends READONLY.
	readOnly bool
	// cluster: a cluster client learns its topology and the command table
	// through its node clients (CLUSTER SLOTS, COMMAND), also in the
	// background with no tenant. Neither holds a tenant's data or changes a
	// connection.
	cluster bool
}

// newClusterHandshake is newHandshake for a cluster client's nodes.
func newClusterHandshake(o *redis.ClusterOptions) *handshake {
	h := newHandshake(&redis.Options{
		Protocol: o.Protocol, ClientName: o.ClientName, Username: o.Username, Password: o.Password,
		CredentialsProvider: o.CredentialsProvider, CredentialsProviderContext: o.CredentialsProviderContext,
		StreamingCredentialsProvider: o.StreamingCredentialsProvider,
	})
	h.readOnly = o.ReadOnly || o.RouteByLatency || o.RouteRandomly
	h.cluster = true
	return h
}

func newHandshake(o *redis.Options) *handshake {
	h := &handshake{
		protocol: strconv.Itoa(o.Protocol),
		db:       strconv.Itoa(o.DB),
		name:     o.ClientName,
		user:     o.Username,
		pass:     o.Password,
		static:   o.CredentialsProvider == nil && o.CredentialsProviderContext == nil && o.StreamingCredentialsProvider == nil,
	}
	if o.Protocol == 0 {
		h.protocol = "3" // go-redis's default
	}
	return h
}

// allows reports whether argv is one of the commands that set a connection
// up as the client's options say.
func (h *handshake) allows(argv []string) bool {
	is := strings.EqualFold
	switch {
	case is(argv[0], "hello"):
		return h.hello(argv[1:])
	case is(argv[0], "auth"):
		switch len(argv) {
		case 2:
			return h.creds("", argv[1])
		case 3:
			return h.creds(argv[1], argv[2])
		}
	case is(argv[0], "select"):
		return len(argv) == 2 && argv[1] == h.db
	case is(argv[0], "readonly"):
		return len(argv) == 1 && h.readOnly
	case is(argv[0], "command"):
		return len(argv) == 1 && h.cluster
	case is(argv[0], "client") && len(argv) >= 3:
		switch {
		case is(argv[1], "setname"):
			return len(argv) == 3 && h.name != "" && argv[2] == h.name
		case is(argv[1], "setinfo"):
			return len(argv) == 4 && (is(argv[2], "lib-name") && strings.HasPrefix(argv[3], "go-redis(") ||
				is(argv[2], "lib-ver") && argv[3] == redis.Version())
		case is(argv[1], "maint_notifications"):
			return true // server push notifications of maintenance, for this connection
		}
	case is(argv[0], "cluster") && len(argv) == 2:
		return h.cluster && (is(argv[1], "slots") || is(argv[1], "shards"))
	}
	return false
}

func (h *handshake) hello(args []string) bool {
	if len(args) == 0 || args[0] != h.protocol {
		return false
	}
	for rest := args[1:]; len(rest) > 0; {
		switch {
		case strings.EqualFold(rest[0], "auth") && len(rest) >= 3:
			if !h.creds(rest[1], rest[2]) {
				return false
			}
			rest = rest[3:]
		case strings.EqualFold(rest[0], "setname") && len(rest) >= 2:
			if h.name == "" || rest[1] != h.name {
				return false
			}
			rest = rest[2:]
		default:
			return false
		}
	}
	return true
}

func (h *handshake) creds(user, pass string) bool {
	if !h.static {
		return true
	}
	if user == "" || user == "default" && h.user == "" {
		user = h.user
	}
	return user == h.user && pass == h.pass
}

// sameDB returns argv without the "DB n" of a COPY whose n is the client's
// own database, which go-redis's Copy always sends: that copies within the
// database, so it is planned as a COPY without DB (the key positions are the
// same). Any other argv is returned as it is.
func (h *handshake) sameDB(argv []string) []string {
	if len(argv) < 5 || !strings.EqualFold(argv[0], "copy") {
		return argv
	}
	for i := 3; i+1 < len(argv); i++ {
		if strings.EqualFold(argv[i], "db") {
			if argv[i+1] != h.db {
				return argv
			}
			return append(argv[:i:i], argv[i+2:]...)
		}
	}
	return argv
}
