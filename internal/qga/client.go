package qga

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"
)

// ErrClosed is wrapped in the error of a call made after Close, or after
// the connection ended (QEMU exited).
var ErrClosed = errors.New("qga connection closed")

// Error is an error answer of the agent. Class is the QMP error class
// ("GenericError", "CommandNotFound" for a command the agent lacks or had
// disabled with --block-rpcs...).
type Error struct {
	Class   string
	Desc    string
	Command string
}

func (e *Error) Error() string {
	return fmt.Sprintf("qga %s: %s: %s", e.Command, e.Class, e.Desc)
}

// maxAnswer bounds one answer line. The guest is not trusted, and the
// largest legitimate answer, guest-exec-status with both 16 MiB streams in
// base64, stays under 45 MiB.
const maxAnswer = 64 << 20

// sentinel is the byte that resets the agent's JSON parser and that leads
// its answer to guest-sync-delimited; it never occurs in UTF-8 JSON.
const sentinel = 0xFF

var errTooLong = fmt.Errorf("answer longer than %d bytes", maxAnswer)

// past is a deadline that makes blocked I/O return at once.
var past = time.Unix(1, 0)

// Client is a connection to one guest agent. Calls are serialized (the
// agent runs one command at a time); it is safe for concurrent use.
type Client struct {
	conn net.Conn
	r    *bufio.Reader

	// sem is held for a whole exchange. A channel rather than a mutex, so
	// that a caller waiting behind a slow command gives up with its ctx.
	sem chan struct{}
	// Guarded by sem:
	synced bool   // the next line read answers the next command sent
	nextID uint64 // ids of commands and syncs
	broken error  // the connection failed for good

	closeOnce sync.Once
	closed    chan struct{}
}

// Dial connects to the agent's socket at path and synchronizes with it.
// With no agent running in the guest the connection succeeds but the sync
// is never answered, so ctx must carry a deadline; Dial then fails with an
// error wrapping context.DeadlineExceeded.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qga dial %s: %w", path, err)
	}
	c := &Client{
		conn: conn,
		r:    bufio.NewReaderSize(conn, 64<<10),
		sem:  make(chan struct{}, 1),
		// Random, so that an answer to a sync of an earlier client, still
		// in the stream, is not taken for ours. Below 2^53 so that any
		// JSON implementation reads the ids exactly.
		nextID: rand.Uint64N(1<<52) + 1,
		closed: make(chan struct{}),
	}
	release, err := c.acquire(ctx, "guest-sync-delimited")
	if err == nil {
		err = c.sync(ctx)
		release()
	}
	if err != nil {
		conn.Close()
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("qga dial %s: no answer from the guest agent: %w", path, err)
		}
		return nil, fmt.Errorf("qga dial %s: %w", path, err)
	}
	return c, nil
}

// Close ends the connection; calls in progress fail with ErrClosed.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.conn.Close()
	})
	return nil
}

// acquire takes the connection for one exchange bounded by ctx. release
// must be called when the exchange is over.
func (c *Client) acquire(ctx context.Context, command string) (release func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("qga %s: %w", command, err)
	}
	select {
	case c.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("qga %s: waiting for the agent to finish another command: %w", command, ctx.Err())
	case <-c.closed:
		return nil, fmt.Errorf("qga %s: %w", command, ErrClosed)
	}
	if err := c.closedErr(); err != nil {
		<-c.sem
		return nil, fmt.Errorf("qga %s: %w", command, err)
	}
	// Blocked reads and writes return as soon as ctx ends, by moving the
	// connection's deadline into the past.
	fired := make(chan struct{})
	unregister := context.AfterFunc(ctx, func() {
		c.conn.SetDeadline(past)
		close(fired)
	})
	return func() {
		if !unregister() {
			<-fired // or it could move the deadline after we reset it
		}
		c.conn.SetDeadline(time.Time{})
		<-c.sem
	}, nil
}

// closedErr says whether the connection can no longer be used. Called with
// sem held.
func (c *Client) closedErr() error {
	select {
	case <-c.closed:
		return ErrClosed
	default:
	}
	if c.broken != nil {
		return fmt.Errorf("%w (%v)", ErrClosed, c.broken)
	}
	return nil
}

// ioErr turns an I/O error into what the caller should see: ctx's error
// when ctx interrupted it, ErrClosed after Close. Any other failure of the
// socket is final: QEMU went away.
func (c *Client) ioErr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	if errors.Is(err, errTooLong) {
		return err
	}
	if c.broken == nil {
		c.broken = err
		c.conn.Close()
	}
	return c.closedErr()
}

// Execute runs an agent command. args, if not nil, is marshalled as the
// command's "arguments"; result, if not nil, receives the "return" value.
// An error answer of the agent is an *Error. When ctx ends first the agent
// may still run the command; its answer is skipped by the sync that the
// next call starts with.
func (c *Client) Execute(ctx context.Context, command string, args any, result any) error {
	ret, err := c.call(ctx, command, args)
	if err != nil {
		return err
	}
	if result != nil && len(ret) > 0 {
		if err := json.Unmarshal(ret, result); err != nil {
			return fmt.Errorf("qga %s: decode result: %w", command, err)
		}
	}
	return nil
}

func (c *Client) call(ctx context.Context, command string, args any) (json.RawMessage, error) {
	release, err := c.acquire(ctx, command)
	if err != nil {
		return nil, err
	}
	defer release()
	id, err := c.send(ctx, command, args)
	if err != nil {
		return nil, err
	}
	a, err := c.readAnswer(id)
	if err != nil {
		return nil, fmt.Errorf("qga %s: %w", command, c.ioErr(ctx, err))
	}
	c.synced = true
	if a.Error != nil {
		return nil, &Error{Class: a.Error.Class, Desc: a.Error.Desc, Command: command}
	}
	return a.Return, nil
}

type request struct {
	Execute   string          `json:"execute"`
	Arguments json.RawMessage `json:"arguments,omitempty"`
	ID        uint64          `json:"id"`
}

type answer struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	ID json.RawMessage `json:"id"`
}

// send synchronizes the stream if needed and writes one command. Called
// with sem held; from then on the stream counts as out of step until the
// caller has read the answer.
func (c *Client) send(ctx context.Context, command string, args any) (uint64, error) {
	req := request{Execute: command}
	if args != nil {
		a, err := json.Marshal(args)
		if err != nil {
			return 0, fmt.Errorf("qga %s: encode arguments: %w", command, err)
		}
		if !bytes.Equal(a, []byte("null")) { // a typed nil pointer
			req.Arguments = a
		}
	}
	if !c.synced {
		if err := c.sync(ctx); err != nil {
			return 0, fmt.Errorf("qga %s: %w", command, err)
		}
	}
	c.synced = false
	req.ID = c.newID()
	b, err := json.Marshal(req)
	if err != nil {
		return 0, fmt.Errorf("qga %s: %w", command, err)
	}
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return 0, fmt.Errorf("qga %s: %w", command, c.ioErr(ctx, err))
	}
	return req.ID, nil
}

func (c *Client) newID() uint64 {
	c.nextID++
	return c.nextID
}

// readAnswer reads the answer to the command with the given id. Agents
// since QEMU 2.12 echo the id; older ones do not, and then the answer in
// turn is ours, which the sync before the command guarantees.
func (c *Client) readAnswer(id uint64) (answer, error) {
	for {
		line, err := c.readLine()
		if err != nil {
			return answer{}, err
		}
		var a answer
		if json.Unmarshal(line, &a) != nil || (a.Return == nil && a.Error == nil) {
			continue
		}
		if len(a.ID) > 0 {
			if got, err := strconv.ParseUint(string(a.ID), 10, 64); err != nil || got != id {
				continue
			}
		}
		return a, nil
	}
}

// readLine reads one answer: the agent ends each with a newline.
func (c *Client) readLine() ([]byte, error) {
	var line []byte
	for {
		chunk, err := c.r.ReadSlice('\n')
		if len(line)+len(chunk) > maxAnswer {
			return nil, errTooLong
		}
		line = append(line, chunk...)
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
	}
}

// sync brings the stream back in step: whatever the agent had half-read is
// dropped by the 0xFF, whatever it answered before is skipped up to the
// 0xFF that leads the answer to this sync. Called with sem held.
func (c *Client) sync(ctx context.Context) error {
	id := c.newID()
	var req struct {
		Execute   string `json:"execute"`
		Arguments struct {
			ID uint64 `json:"id"`
		} `json:"arguments"`
	}
	req.Execute = "guest-sync-delimited"
	req.Arguments.ID = id
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	msg := append([]byte{sentinel}, b...)
	if _, err := c.conn.Write(append(msg, '\n')); err != nil {
		return fmt.Errorf("guest-sync-delimited: %w", c.ioErr(ctx, err))
	}
	for {
		// Skip up to a sentinel. Earlier syncs that timed out may have
		// left theirs (with their own ids) before ours.
		for {
			_, err := c.r.ReadSlice(sentinel)
			if err == nil {
				break
			}
			if !errors.Is(err, bufio.ErrBufferFull) {
				return fmt.Errorf("guest-sync-delimited: %w", c.ioErr(ctx, err))
			}
		}
		line, err := c.readLine()
		if errors.Is(err, errTooLong) {
			continue
		}
		if err != nil {
			return fmt.Errorf("guest-sync-delimited: %w", c.ioErr(ctx, err))
		}
		var a struct {
			Return *uint64 `json:"return"`
		}
		if json.Unmarshal(line, &a) == nil && a.Return != nil && *a.Return == id {
			c.synced = true
			return nil
		}
	}
}
