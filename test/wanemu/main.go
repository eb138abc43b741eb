// Command wanemu emulates a wide-area link for vdc's end-to-end tests, on
// kernels without the netem queueing discipline: it reads IP packets from
// one TUN device, holds each for a one-way delay and for its time on a link
// of limited bandwidth, and writes it to another TUN device, where the
// kernel routes it on. The test lab's router namespace sends traffic
// between host subnets through it with policy routing.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

func main() {
	in := flag.String("in", "", "TUN device to capture packets from")
	out := flag.String("out", "", "TUN device to deliver packets to")
	delay := flag.Duration("delay", 50*time.Millisecond, "one-way delay")
	rate := flag.String("rate", "100mbit", "link bandwidth (e.g. 100mbit, 1gbit)")
	limit := flag.Duration("queue", 100*time.Millisecond, "longest a packet waits for the link before it is dropped")
	flag.Parse()
	bps, err := parseRate(*rate)
	if err != nil {
		log.Fatal(err)
	}
	rfd, err := openTUN(*in)
	if err != nil {
		log.Fatalf("open %s: %v", *in, err)
	}
	wfd, err := openTUN(*out)
	if err != nil {
		log.Fatalf("open %s: %v", *out, err)
	}
	// Each direction (by destination address) is a link of its own, full
	// duplex as a real one: a queue paced at the bandwidth, then the delay.
	links := map[[4]byte]*link{}
	buf := make([]byte, 65536)
	for {
		n, err := syscall.Read(rfd, buf)
		if err != nil {
			log.Fatalf("read: %v", err)
		}
		if n < 20 || buf[0]>>4 != 4 {
			continue // IPv4 only
		}
		dst := [4]byte(buf[16:20])
		l := links[dst]
		if l == nil {
			l = &link{queue: make(chan packet, 100000)}
			links[dst] = l
			go l.deliver(wfd)
		}
		l.send(buf[:n], bps, *delay, *limit)
	}
}

type packet struct {
	at   time.Time
	data []byte
}

type link struct {
	free  time.Time // when the link is next free to send
	queue chan packet
}

// send queues a packet for delivery when the link has sent it and it has
// crossed the delay; a packet that would wait more than limit for the link
// is dropped, as a router with a full buffer does.
func (l *link) send(data []byte, bps float64, delay, limit time.Duration) {
	now := time.Now()
	if l.free.Before(now) {
		l.free = now
	}
	if l.free.Sub(now) > limit {
		return
	}
	l.free = l.free.Add(time.Duration(float64(len(data)*8) / bps * float64(time.Second)))
	l.queue <- packet{at: l.free.Add(delay), data: append([]byte(nil), data...)}
}

func (l *link) deliver(fd int) {
	for p := range l.queue {
		if d := time.Until(p.at); d > 0 {
			time.Sleep(d)
		}
		if _, err := syscall.Write(fd, p.data); err != nil {
			log.Printf("write: %v", err)
		}
	}
}

func parseRate(s string) (float64, error) {
	units := map[string]float64{"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
	for u, m := range units {
		if strings.HasSuffix(s, u) {
			var v float64
			if _, err := fmt.Sscan(strings.TrimSuffix(s, u), &v); err != nil {
				return 0, fmt.Errorf("rate %q: %w", s, err)
			}
			return v * m, nil
		}
	}
	return 0, fmt.Errorf("rate %q: want a number with kbit, mbit or gbit", s)
}

// openTUN attaches to an existing TUN device (ip tuntap add ... mode tun),
// without packet information headers.
func openTUN(name string) (int, error) {
	fd, err := syscall.Open("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		return -1, err
	}
	var req [40]byte
	copy(req[:16], name)
	const iffTUN, iffNoPI, tunSetIff = 0x0001, 0x1000, 0x400454ca
	*(*uint16)(unsafe.Pointer(&req[16])) = iffTUN | iffNoPI
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), tunSetIff, uintptr(unsafe.Pointer(&req[0]))); e != 0 {
		syscall.Close(fd)
		return -1, e
	}
	return fd, nil
}
