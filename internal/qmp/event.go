package qmp

import (
	"encoding/json"
	"sync"
	"time"
)

// Event is an asynchronous message of QEMU: STOP, RESUME, SHUTDOWN, RESET,
// BLOCK_JOB_COMPLETED... Data is the event's "data" object as sent (nil for
// events without one), shared by all subscribers, so read it, do not
// modify it; Time is QEMU's timestamp of the event.
type Event struct {
	Name string
	Data json.RawMessage
	Time time.Time
}

// subscriberBuffer is how many events a subscriber may lag behind before it
// loses some. QEMU sends few events outside of block jobs and migration, so
// this only matters for a subscriber that stopped reading.
const subscriberBuffer = 256

// Subscribe returns a channel that receives every event from now on, and a
// func that ends the subscription. A subscriber that falls more than
// subscriberBuffer events behind loses the newest ones rather than slowing
// the connection down. The channel is closed by the unsubscribe func and
// when the connection ends, so a range over it terminates.
func (c *Client) Subscribe() (<-chan Event, func()) {
	ch := make(chan Event, subscriberBuffer)
	c.subMu.Lock()
	if c.subs == nil { // already ended
		c.subMu.Unlock()
		close(ch)
		return ch, func() {}
	}
	c.subs[ch] = struct{}{}
	c.subMu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			c.subMu.Lock()
			if _, ok := c.subs[ch]; ok {
				delete(c.subs, ch)
				close(ch)
			}
			c.subMu.Unlock()
		})
	}
}

func (c *Client) publish(m *message) {
	e := Event{Name: m.Event, Data: m.Data}
	if m.Timestamp != nil {
		e.Time = time.Unix(m.Timestamp.Seconds, m.Timestamp.Microseconds*int64(time.Microsecond))
	}
	c.subMu.Lock()
	defer c.subMu.Unlock()
	for ch := range c.subs {
		select {
		case ch <- e:
		default:
		}
	}
}
