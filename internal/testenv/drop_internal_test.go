package testenv

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestDropWithRetryReportsWhatStays makes a package's worth of databases
// and roles under a base of its own, plus one role the drop cannot remove
// (it owns a table in another database): dropWithRetry removes the rest and
// names the role that stayed, which is then removed by hand.
func TestDropWithRetryReportsWhatStays(t *testing.T) {
	svc, err := pgService()
	if err != nil {
		unavailable(t, err)
	}
	pause := dropPause
	dropPause = 10 * time.Millisecond
	t.Cleanup(func() { dropPause = pause })
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, svc.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	base := fmt.Sprintf("%sdroptest_%s", namePrefix, randomHex(4))
	stuck := base + "_stuck"
	pin := base + "_pin" // not under base's _d names: the drop leaves it, and so the role
	t.Cleanup(func() {
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(pin)+" WITH (FORCE)")
		_ = dropPG(ctx, admin, base)
	})
	for _, s := range []string{
		"CREATE ROLE " + ident(base+"_owner"),
		"CREATE ROLE " + ident(stuck),
		"CREATE DATABASE " + ident(base) + " OWNER " + ident(base+"_owner"),
		"CREATE DATABASE " + ident(base+"_d1") + " OWNER " + ident(base+"_owner"),
		"CREATE DATABASE " + ident(pin) + " OWNER " + ident(stuck),
	} {
		if _, err := admin.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
	err = dropWithRetry(svc.URL, base)
	if err == nil || !strings.Contains(err.Error(), "role "+stuck) {
		t.Fatalf("dropWithRetry: %v, want it to name role %s", err, stuck)
	}
	left, err := leftOf(ctx, admin, base)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0] != "role "+stuck {
		t.Errorf("left after the drop: %v, want only role %s", left, stuck)
	}
	if _, err := admin.Exec(ctx, "DROP DATABASE "+ident(pin)+" WITH (FORCE)"); err != nil {
		t.Fatal(err)
	}
	if err := dropWithRetry(svc.URL, base); err != nil {
		t.Errorf("dropWithRetry once nothing holds the role: %v", err)
	}
}
