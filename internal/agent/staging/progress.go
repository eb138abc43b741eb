package staging

import (
	"errors"
	"io"
	"time"
)

// NewProgressReader reads r, calling fn with the bytes read so far and the
// total (total, or more once more came) at most every 200ms and at the end.
func NewProgressReader(r io.Reader, total int64, fn func(done, total int64)) io.Reader {
	return &progressReader{r: r, total: total, fn: fn}
}

type progressReader struct {
	r     io.Reader
	done  int64
	total int64
	fn    func(done, total int64)
	last  time.Time
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if p.fn != nil && (time.Since(p.last) > 200*time.Millisecond || errors.Is(err, io.EOF)) {
		p.last = time.Now()
		p.fn(p.done, max(p.total, p.done))
	}
	return n, err
}
