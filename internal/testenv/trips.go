package testenv

import (
	"context"
	"net"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgconn"
)

// CountRoundTrips wraps cfg's DialFunc so that every connection dialled
// with it counts the round trips its client starts into the returned
// counter: a write that follows a read starts one, so a pipeline written in
// several Write calls counts once.
func CountRoundTrips(cfg *pgconn.Config) *atomic.Int64 {
	trips := new(atomic.Int64)
	dial := cfg.DialFunc
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &tripConn{Conn: c, trips: trips}, nil
	}
	return trips
}

type tripConn struct {
	net.Conn
	trips *atomic.Int64
	mu    sync.Mutex
	read  bool
}

func (c *tripConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if c.read {
		c.trips.Add(1)
		c.read = false
	}
	c.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *tripConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.mu.Lock()
	c.read = true
	c.mu.Unlock()
	return n, err
}
