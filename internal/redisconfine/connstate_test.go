package redisconfine

import (
	"context"
	"sort"
	"strings"
	"testing"

	"github.com/redis/rueidis"
	"github.com/tenancykit/tenancy/internal/testenv"
)

// TestConnStateTableCoversTheServer reads COMMAND DOCS from the server and
// checks that every command of the "connection" and "transactions" groups,
// and every subscribe command, has a decision in connState.
func TestConnStateTableCoversTheServer(t *testing.T) {
	raw := testenv.RedisClient(t)
	docs, err := raw.Do(context.Background(), raw.B().CommandDocs().Build()).AsMap()
	if err != nil {
		t.Fatal(err)
	}
	var missing, checked []string
	var walk func(docs map[string]rueidis.RedisMessage)
	walk = func(docs map[string]rueidis.RedisMessage) {
		for name, doc := range docs {
			fields, err := doc.AsMap()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			full := strings.ToLower(name) // subcommands come as "client|kill"
			g := fields["group"]
			group, _ := g.ToString()
			if group == "connection" || group == "transactions" || strings.HasSuffix(full, "subscribe") {
				checked = append(checked, full)
				if _, ok := connState[full]; !ok {
					missing = append(missing, full+" ("+group+")")
				}
			}
			if subs, ok := fields["subcommands"]; ok {
				m, err := subs.AsMap()
				if err != nil {
					t.Fatalf("%s subcommands: %v", name, err)
				}
				walk(m)
			}
		}
	}
	walk(docs)
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("connection-scoped commands of this server without a decision in connState: %v", missing)
	}
	if len(checked) < 30 {
		t.Errorf("only %d connection-scoped commands found in COMMAND DOCS: %v", len(checked), checked)
	}
}
