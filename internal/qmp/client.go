package qmp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Client is a connection to one QEMU's QMP socket. It is safe for
// concurrent use.
type Client struct {
	conn net.Conn

	// wsem serializes writes so that two commands never interleave on the
	// wire; it is a channel rather than a mutex so that waiting for it
	// honours ctx.
	wsem   chan struct{}
	nextID atomic.Uint64

	mu      sync.Mutex
	pending map[uint64]chan answer // nil once the connection ended
	err     error                  // why the connection ended; set before done is closed
	failErr error                  // a write failure that tore the connection down

	subMu sync.Mutex
	subs  map[chan Event]struct{} // nil once the connection ended

	closing   atomic.Bool
	closeOnce sync.Once
	done      chan struct{}
}

// answer is what the reader hands to a waiting Execute.
type answer struct {
	ret json.RawMessage
	err *Error
}

// message is any object QEMU sends after the greeting: an answer (return
// or error, with our id) or an event.
type message struct {
	ID     json.RawMessage `json:"id"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
}

type request struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments,omitempty"`
	ID        uint64          `json:"id"`
}

// past is a deadline that makes a blocked read or write return at once;
// it is how a ctx interrupts I/O on a net.Conn.
var past = time.Unix(1, 0)

// Dial connects to the QMP socket at path, reads QEMU's greeting and leaves
// capabilities negotiation mode. ctx bounds all of it; once Dial returned,
// the connection no longer depends on ctx.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp dial %s: %w", path, err)
	}
	c, err := newClient(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp dial %s: %w", path, err)
	}
	return c, nil
}

// newClient runs the handshake on conn and starts the reader. It is split
// from Dial so that the framing can be tested over net.Pipe.
func newClient(ctx context.Context, conn net.Conn) (*Client, error) {
	c := &Client{
		conn:    conn,
		wsem:    make(chan struct{}, 1),
		pending: make(map[uint64]chan answer),
		subs:    make(map[chan Event]struct{}),
		done:    make(chan struct{}),
	}
	dec := json.NewDecoder(conn)
	stop := interruptOnDone(ctx, conn.SetDeadline)
	err := c.handshake(dec)
	stop()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("qmp handshake: %w", ctx.Err())
		}
		return nil, err
	}
	go c.readLoop(dec)
	return c, nil
}

// interruptOnDone makes I/O on the connection fail as soon as ctx ends, by
// moving its deadline into the past. The returned func undoes that and must
// be called before the connection is used under another ctx.
func interruptOnDone(ctx context.Context, setDeadline func(time.Time) error) (stop func()) {
	fired := make(chan struct{})
	unregister := context.AfterFunc(ctx, func() {
		setDeadline(past)
		close(fired)
	})
	return func() {
		if !unregister() {
			// The func may still be running: wait, or it could move the
			// deadline after we reset it.
			<-fired
			setDeadline(time.Time{})
		}
	}
}

func (c *Client) handshake(dec *json.Decoder) error {
	var greeting struct {
		QMP *json.RawMessage `json:"QMP"`
	}
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return fmt.Errorf("qmp greeting: %w", err)
	}
	if err := json.Unmarshal(raw, &greeting); err != nil || greeting.QMP == nil {
		return fmt.Errorf("qmp greeting: not a QMP greeting: %.200s", raw)
	}
	id := c.nextID.Add(1)
	b, err := json.Marshal(request{Execute: "qmp_capabilities", ID: id})
	if err != nil {
		return fmt.Errorf("qmp qmp_capabilities: %w", err)
	}
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("qmp qmp_capabilities: %w", err)
	}
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fmt.Errorf("qmp qmp_capabilities: %w", err)
		}
		var m message
		if json.Unmarshal(raw, &m) != nil || m.Event != "" {
			// Nobody can have subscribed yet: an event this early is lost.
			continue
		}
		if got, ok := parseID(m.ID); !ok || got != id {
			continue
		}
		if m.Error != nil {
			return &Error{Class: m.Error.Class, Desc: m.Error.Desc, Command: "qmp_capabilities"}
		}
		return nil
	}
}

func parseID(raw json.RawMessage) (uint64, bool) {
	if len(raw) == 0 {
		return 0, false
	}
	id, err := strconv.ParseUint(string(raw), 10, 64)
	return id, err == nil
}

// Execute runs a QMP command. args, if not nil, is marshalled as the
// command's "arguments" object; result, if not nil, receives the "return"
// value. An error answer of QEMU is an *Error. When ctx ends first, Execute
// returns at once with ctx's error; the command may still run in QEMU, and
// its answer is dropped when it comes.
func (c *Client) Execute(ctx context.Context, command string, args any, result any) error {
	return c.execute(ctx, command, args, result, nil)
}

// ExecuteWithFile runs a command that takes a file descriptor (getfd,
// add-fd): f's descriptor goes along with the command (SCM_RIGHTS), and
// QEMU keeps its own copy; the caller may close f once this returns.
func (c *Client) ExecuteWithFile(ctx context.Context, command string, args any, result any, f *os.File) error {
	if _, ok := c.conn.(*net.UnixConn); !ok {
		return fmt.Errorf("qmp %s: passing a file needs a unix socket", command)
	}
	return c.execute(ctx, command, args, result, syscall.UnixRights(int(f.Fd())))
}

func (c *Client) execute(ctx context.Context, command string, args any, result any, oob []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	req := request{Execute: command, ID: c.nextID.Add(1)}
	if args != nil {
		a, err := json.Marshal(args)
		if err != nil {
			return fmt.Errorf("qmp %s: encode arguments: %w", command, err)
		}
		if !bytes.Equal(a, []byte("null")) { // a typed nil pointer
			req.Arguments = a
		}
	}
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	ch := make(chan answer, 1) // the reader must never block on us
	c.mu.Lock()
	if c.pending == nil {
		c.mu.Unlock()
		return c.closedError(command)
	}
	c.pending[req.ID] = ch
	c.mu.Unlock()

	if err := c.write(ctx, append(b, '\n'), oob); err != nil {
		c.forget(req.ID)
		if ctx.Err() != nil {
			return fmt.Errorf("qmp %s: %w", command, ctx.Err())
		}
		return c.closedError(command)
	}

	var a answer
	select {
	case a = <-ch:
	case <-ctx.Done():
		c.forget(req.ID)
		return fmt.Errorf("qmp %s: %w", command, ctx.Err())
	case <-c.done:
		// The answer may have come just before the end.
		select {
		case a = <-ch:
		default:
			return c.closedError(command)
		}
	}
	if a.err != nil {
		a.err.Command = command
		return a.err
	}
	if result != nil && len(a.ret) > 0 {
		if err := json.Unmarshal(a.ret, result); err != nil {
			return fmt.Errorf("qmp %s: decode result: %w", command, err)
		}
	}
	return nil
}

func (c *Client) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, id) // a no-op on a nil map
	c.mu.Unlock()
}

// write sends one whole command. A write cut short by ctx leaves half a
// command on the wire, which no later command can recover from, so that
// ends the connection.
func (c *Client) write(ctx context.Context, b, oob []byte) error {
	select {
	case c.wsem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return ErrClosed
	}
	defer func() { <-c.wsem }()
	stop := interruptOnDone(ctx, c.conn.SetWriteDeadline)
	var n int
	var err error
	if oob != nil {
		n, _, err = c.conn.(*net.UnixConn).WriteMsgUnix(b, oob, nil)
		if err == nil && n < len(b) { // the descriptor went with the first part
			var m int
			m, err = c.conn.Write(b[n:])
			n += m
		}
	} else {
		n, err = c.conn.Write(b)
	}
	stop()
	if err == nil {
		return nil
	}
	if n == 0 && ctx.Err() != nil {
		return ctx.Err()
	}
	c.fail(fmt.Errorf("qmp: write: %w", err))
	return err
}

// fail tears the connection down because of err; the reader then ends and
// reports err from Err.
func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.failErr == nil {
		c.failErr = err
	}
	c.mu.Unlock()
	c.conn.Close()
}

func (c *Client) closedError(command string) error {
	<-c.done // pending is nil only once the reader is finishing
	if err := c.Err(); err != nil && !errors.Is(err, ErrClosed) {
		return fmt.Errorf("qmp %s: %w (%v)", command, ErrClosed, err)
	}
	return fmt.Errorf("qmp %s: %w", command, ErrClosed)
}

func (c *Client) readLoop(dec *json.Decoder) {
	var err error
	for {
		// Decode into a RawMessage first: a message we cannot make sense of
		// must not stop the reader, only a broken stream may.
		var raw json.RawMessage
		if err = dec.Decode(&raw); err != nil {
			break
		}
		var m message
		if json.Unmarshal(raw, &m) != nil {
			continue
		}
		if m.Event != "" {
			c.publish(&m)
			continue
		}
		id, ok := parseID(m.ID)
		if !ok {
			continue // not an answer to one of our commands
		}
		a := answer{ret: m.Return}
		if m.Error != nil {
			a.err = &Error{Class: m.Error.Class, Desc: m.Error.Desc}
		}
		c.mu.Lock()
		ch := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if ch != nil {
			ch <- a
		}
	}
	c.finish(err)
}

// finish records why the connection ended, wakes everyone and ends the
// subscriptions.
func (c *Client) finish(readErr error) {
	c.conn.Close()
	c.mu.Lock()
	switch {
	case c.closing.Load():
		c.err = ErrClosed
	case c.failErr != nil:
		c.err = c.failErr
	case errors.Is(readErr, io.EOF):
		c.err = fmt.Errorf("qmp: QEMU closed the connection: %w", readErr)
	default:
		c.err = fmt.Errorf("qmp: read: %w", readErr)
	}
	c.pending = nil
	c.mu.Unlock()
	c.subMu.Lock()
	for ch := range c.subs {
		close(ch)
	}
	c.subs = nil
	c.subMu.Unlock()
	close(c.done)
}

// Done is closed when the connection has ended: QEMU exited or closed it,
// or Close was called.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err says why the connection ended: ErrClosed after Close, an error
// wrapping io.EOF when QEMU closed it (it exited, or ran quit). It is nil
// until Done is closed.
func (c *Client) Err() error {
	select {
	case <-c.done:
	default:
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close ends the connection and waits for the reader to finish. Commands
// still waiting for an answer fail with ErrClosed.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closing.Store(true)
		c.conn.Close()
	})
	<-c.done
	return nil
}
