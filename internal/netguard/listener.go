package netguard

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Limits bound what one client may hold on a listener. The zero value of
// a field means its default.
type Limits struct {
	// MaxConnsPerIP is how many connections one remote IP may hold open
	// before they authenticate (default 64). Connections beyond it are
	// closed as they are accepted. A connection that made an authenticated
	// request (a valid token, a host or server certificate) stops counting,
	// so the hosts and clients of `vdc up`, all on 127.0.0.1, are not held
	// to it; a flood of connections that never authenticate is.
	MaxConnsPerIP int
	// HeaderTimeout bounds the TLS handshake and the reading of each
	// request's headers (default 10s).
	HeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that waits this long for
	// its next request (default 30s). It never cuts a request that runs:
	// event streams and long polls are not idle.
	IdleTimeout time.Duration
	// BodyIdleTimeout fails a request whose body sends nothing for this
	// long (default 60s). A slow upload that keeps sending is never cut.
	BodyIdleTimeout time.Duration
}

// Defaults.
const (
	DefaultMaxConnsPerIP   = 64
	DefaultHeaderTimeout   = 10 * time.Second
	DefaultIdleTimeout     = 30 * time.Second
	DefaultBodyIdleTimeout = 60 * time.Second
	// ClientIdleTimeout is how long vdc's own clients keep an idle
	// connection: less than DefaultIdleTimeout, so that a client does not
	// send a request on a connection the server is closing.
	ClientIdleTimeout = 20 * time.Second
)

// WithDefaults fills in the fields left zero.
func (l Limits) WithDefaults() Limits {
	if l.MaxConnsPerIP <= 0 {
		l.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if l.HeaderTimeout <= 0 {
		l.HeaderTimeout = DefaultHeaderTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.BodyIdleTimeout <= 0 {
		l.BodyIdleTimeout = DefaultBodyIdleTimeout
	}
	return l
}

// Listener limits the connections each remote IP holds that have not
// authenticated yet. Wrap the TCP listener with it, below TLS.
type Listener struct {
	net.Listener
	max int
	log *slog.Logger

	mu       sync.Mutex
	perIP    map[string]int
	lastWarn map[string]time.Time
}

// NewListener wraps ln; log (may be nil) hears of refused connections, at
// most once a minute per IP.
func NewListener(ln net.Listener, l Limits, log *slog.Logger) *Listener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{Listener: ln, max: l.WithDefaults().MaxConnsPerIP, log: log, perIP: map[string]int{}, lastWarn: map[string]time.Time{}}
}

// Listen opens a TCP listener with limits.
func Listen(addr string, l Limits, log *slog.Logger) (*Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return NewListener(ln, l, log), nil
}

// Accept returns the next connection within its IP's limit; those beyond
// it are closed at once.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := remoteIP(c)
		l.mu.Lock()
		n := l.perIP[ip]
		ok := n < l.max
		if ok {
			l.perIP[ip] = n + 1
		}
		warn := !ok && time.Since(l.lastWarn[ip]) > time.Minute
		if warn {
			l.lastWarn[ip] = time.Now()
		}
		l.mu.Unlock()
		if ok {
			return &Conn{Conn: c, l: l, ip: ip}, nil
		}
		if warn {
			l.log.Warn("refusing connections: too many unauthenticated ones from this address",
				"remote", ip, "open", n, "limit", l.max, "listener", l.Addr().String())
		}
		// Reset rather than close politely: the peer learns at once, and
		// the socket leaves no TIME_WAIT behind here.
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		c.Close()
	}
}

// Open reports how many connections of an IP count against the limit.
func (l *Listener) Open(ip string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.perIP[ip]
}

func (l *Listener) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.perIP[ip]--; l.perIP[ip] <= 0 {
		delete(l.perIP, ip)
		delete(l.lastWarn, ip)
	}
}

func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

// Conn is a connection accepted by a Listener.
type Conn struct {
	net.Conn
	l    *Listener
	ip   string
	once sync.Once
}

// Trust takes the connection off its IP's count: it has authenticated.
func (c *Conn) Trust() { c.once.Do(func() { c.l.release(c.ip) }) }

func (c *Conn) Close() error {
	c.Trust()
	return c.Conn.Close()
}

type connKey struct{}

// ConnContext is for http.Server.ConnContext: it lets Trust find a
// request's connection.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// Trust marks the connection of a request (its context) as authenticated,
// taking it off the per-IP limit. It does nothing for connections that did
// not come from a Listener.
func Trust(ctx context.Context) {
	c, _ := ctx.Value(connKey{}).(net.Conn)
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if gc, ok := c.(*Conn); ok {
		gc.Trust()
	}
}
