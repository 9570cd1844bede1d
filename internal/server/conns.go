package server

import (
	"container/list"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// connLimiter bounds the connections the server keeps open. It is the
// http.Server's ConnState hook: a connection beyond the limit first evicts
// the connection that has been waiting longest without a request in
// progress (new or idle keep-alive, in either case holding only buffers);
// when every connection is busy with a request, the newcomer is closed at
// once. Unlike a listener that stops accepting (netutil.LimitListener),
// this never leaves new clients queueing in the kernel's backlog behind
// thousands of idle connections, and unlike a plain cap it never refuses
// a new request because idle sockets are parked on the server.
type connLimiter struct {
	max int

	mu   sync.Mutex
	open map[net.Conn]*list.Element // every tracked connection
	// waiting lists the connections without a request in progress, oldest
	// first; Element.Value is the net.Conn. A busy connection maps to nil.
	waiting *list.List
	// evicted and refused count connections closed to stay in the limit.
	evicted, refused atomic.Int64
}

func newConnLimiter(max int) *connLimiter {
	return &connLimiter{max: max, open: make(map[net.Conn]*list.Element), waiting: list.New()}
}

// count reports the connections open.
func (c *connLimiter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.open)
}

// hook is the http.Server ConnState callback.
func (c *connLimiter) hook(conn net.Conn, state http.ConnState) {
	var closeConn net.Conn
	c.mu.Lock()
	switch state {
	case http.StateNew:
		if len(c.open) >= c.max {
			if front := c.waiting.Front(); front != nil {
				victim := c.waiting.Remove(front).(net.Conn)
				delete(c.open, victim) // its StateClosed finds nothing
				closeConn = victim
				c.evicted.Add(1)
			} else {
				closeConn = conn
				c.refused.Add(1)
			}
		}
		if closeConn != conn {
			c.open[conn] = c.waiting.PushBack(conn)
		}
	case http.StateIdle:
		if e, ok := c.open[conn]; ok {
			if e != nil {
				c.waiting.Remove(e)
			}
			c.open[conn] = c.waiting.PushBack(conn)
		}
	case http.StateActive:
		if e, ok := c.open[conn]; ok && e != nil {
			c.waiting.Remove(e)
			c.open[conn] = nil
		}
	case http.StateHijacked, http.StateClosed:
		if e, ok := c.open[conn]; ok {
			if e != nil {
				c.waiting.Remove(e)
			}
			delete(c.open, conn)
		}
	}
	c.mu.Unlock()
	if closeConn != nil {
		// The connection's goroutine sees the error on its next read and
		// reports StateClosed, which untracks it.
		closeConn.Close()
	}
}
