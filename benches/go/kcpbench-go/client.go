package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	kcp "github.com/xtaci/kcp-go"
	"github.com/xtaci/smux"
)

// Job is one client run of the contract.
type Job struct {
	Addr     string          `json:"addr"`
	Config   json.RawMessage `json:"config"`
	Test     string          `json:"test"`
	Bytes    uint64          `json:"bytes"`
	Streams  uint32          `json:"streams"`
	Size     uint32          `json:"size"`
	PeriodMs uint32          `json:"period_ms"`
	Count    uint32          `json:"count"`
	Sessions uint32          `json:"sessions"`
	Secs     float64         `json:"secs"`
	RateHz   float64         `json:"rate_hz"`
}

// Result is the one JSON line printed by `run`.
type Result struct {
	OK       bool      `json:"ok"`
	Error    string    `json:"error,omitempty"`
	Bytes    *uint64   `json:"bytes,omitempty"`
	Secs     *float64  `json:"secs,omitempty"`
	RttUs    *[]uint64 `json:"rtt_us,omitempty"` // a pointer: present (maybe empty) in latency results
	Lost     *uint64   `json:"lost,omitempty"`
	Echoed   *uint64   `json:"echoed,omitempty"`
	Expected *uint64   `json:"expected,omitempty"`
	OpenSecs *float64  `json:"open_secs,omitempty"`
	// Bulk over KCP: the smallest smoothed RTT sampled every 50 ms during the transfer, and the
	// mean of the samples above it (queue delay), ms.
	RttMinMs     *float64 `json:"rtt_min_ms,omitempty"`
	QueueDelayMs *float64 `json:"queue_delay_ms,omitempty"`
}

// rttSampler reads the KCP sessions' smoothed RTT (GetSRTT, ms) every 50 ms until finish.
type rttSampler struct {
	sess []*kcp.UDPSession
	mu   sync.Mutex
	sum  float64
	n    int
	min  float64
	stop chan struct{}
	done chan struct{}
}

func startRTT(set *openSet) *rttSampler {
	r := &rttSampler{min: -1, stop: make(chan struct{}), done: make(chan struct{})}
	set.mu.Lock()
	for _, c := range set.closers {
		if s, ok := c.(*kcp.UDPSession); ok {
			r.sess = append(r.sess, s)
		}
	}
	set.mu.Unlock()
	go func() {
		defer close(r.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			r.take()
			select {
			case <-t.C:
			case <-r.stop:
				return
			}
		}
	}()
	return r
}

func (r *rttSampler) take() {
	sum, n := 0.0, 0
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.sess {
		if v := float64(s.GetSRTT()); v > 0 {
			sum += v
			n++
			if r.min < 0 || v < r.min {
				r.min = v
			}
		}
	}
	if n > 0 {
		r.sum += sum / float64(n)
		r.n++
	}
}

// finish stops sampling and returns (min, mean - min) in ms, or nils without a sample.
func (r *rttSampler) finish() (*float64, *float64) {
	close(r.stop)
	<-r.done
	r.take()
	if r.n == 0 || r.min < 0 {
		return nil, nil
	}
	min, q := r.min, r.sum/float64(r.n)-r.min
	if q < 0 {
		q = 0
	}
	return &min, &q
}

func fail(format string, a ...interface{}) Result {
	return Result{OK: false, Error: fmt.Sprintf(format, a...)}
}

func runJob(raw []byte) Result {
	job := Job{Streams: 1, Size: 64, PeriodMs: 20, Count: 500, RateHz: 1.0}
	if err := json.Unmarshal(raw, &job); err != nil {
		return fail("bad job: %v", err)
	}
	cfg, err := parseConfig(job.Config)
	if err != nil {
		return fail("%v", err)
	}
	if job.Addr == "" {
		return fail("job has no addr")
	}
	d := &dialer{cfg: cfg, addr: job.Addr}
	switch job.Test {
	case "sink", "echo":
		if job.Streams == 0 {
			return fail("streams must be at least 1")
		}
		return bulk(d, &job)
	case "latency":
		if job.Size == 0 || job.Count == 0 {
			return fail("latency needs size and count > 0")
		}
		return latency(d, &job)
	case "sessions":
		if job.Size == 0 || job.Sessions == 0 || job.RateHz <= 0 || job.Secs <= 0 {
			return fail("sessions needs size, sessions, rate_hz and secs > 0")
		}
		return sessions(d, &job)
	default:
		return fail("unknown test %q", job.Test)
	}
}

// dialer opens data connections and streams for one job.
type dialer struct {
	cfg  *Config
	addr string
}

// conn opens one data connection (a KCP session or a TCP connection), tuned as kcptun's client.
func (d *dialer) conn() (io.ReadWriteCloser, error) {
	c := d.cfg
	switch c.Transport {
	case "kcp", "smux-kcp":
		s, err := kcp.DialWithOptions(d.addr, c.block, c.DataShard, c.ParityShard)
		if err != nil {
			return nil, err
		}
		c.tuneKCP(s)
		s.SetReadBuffer(c.SockBuf)
		s.SetWriteBuffer(c.SockBuf)
		return s, nil
	default:
		// Kernel TCP keeps its buffer autotuning; Go sets TCP_NODELAY by default.
		nd := net.Dialer{Timeout: 10 * time.Second}
		return nd.Dial("tcp", d.addr)
	}
}

// mux wraps a data connection in an smux client session.
func (d *dialer) mux(conn io.ReadWriteCloser) (*smux.Session, error) {
	sc, err := d.cfg.smuxConfig()
	if err != nil {
		return nil, err
	}
	return smux.Client(conn, sc)
}

func (d *dialer) isMux() bool {
	return d.cfg.Transport == "smux-kcp" || d.cfg.Transport == "smux-tcp"
}

// openSet is what one job opened; close releases all of it.
type openSet struct {
	mu      sync.Mutex
	closers []io.Closer
}

func (o *openSet) add(c io.Closer) {
	o.mu.Lock()
	o.closers = append(o.closers, c)
	o.mu.Unlock()
}

func (o *openSet) close() {
	o.mu.Lock()
	cs := o.closers
	o.closers = nil
	o.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i].Close()
	}
}

// streams opens n streams: n connections for raw transports, n smux streams on one connection
// for smux transports.
func (d *dialer) streams(n int, set *openSet) ([]io.ReadWriter, error) {
	out := make([]io.ReadWriter, 0, n)
	if d.isMux() {
		conn, err := d.conn()
		if err != nil {
			return nil, err
		}
		set.add(conn)
		m, err := d.mux(conn)
		if err != nil {
			return nil, err
		}
		set.add(m)
		for i := 0; i < n; i++ {
			st, err := m.OpenStream()
			if err != nil {
				return nil, err
			}
			set.add(st)
			out = append(out, st)
		}
		return out, nil
	}
	for i := 0; i < n; i++ {
		conn, err := d.conn()
		if err != nil {
			return nil, err
		}
		set.add(conn)
		out = append(out, conn)
	}
	return out, nil
}

// patternLen is the period of the payload pattern; echo clients check byte i against pattern[i % patternLen].
const patternLen = 1 << 20

var pattern = func() []byte {
	b := make([]byte, 2*patternLen)
	x := uint64(0x9e3779b97f4a7c15)
	for i := 0; i < patternLen; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	copy(b[patternLen:], b[:patternLen])
	return b
}()

// chunk is the size of each payload write: large, so the harness adds no per-write overhead.
const chunk = 256 << 10

func header(op byte, n uint64) []byte {
	h := make([]byte, 9)
	h[0] = op
	binary.LittleEndian.PutUint64(h[1:], n)
	return h
}

// writePayload writes n pattern bytes.
func writePayload(w io.Writer, n uint64) error {
	var off uint64
	for off < n {
		m := n - off
		if m > chunk {
			m = chunk
		}
		p := off % patternLen
		if _, err := w.Write(pattern[p : p+m]); err != nil {
			return err
		}
		off += m
	}
	return nil
}

// readVerify reads n bytes and checks them against the pattern.
func readVerify(r io.Reader, n uint64) error {
	buf := make([]byte, 64<<10)
	var off uint64
	for off < n {
		m := n - off
		if m > uint64(len(buf)) {
			m = uint64(len(buf))
		}
		k, err := r.Read(buf[:m])
		if k > 0 {
			p := off % patternLen
			if !bytes.Equal(buf[:k], pattern[p:p+uint64(k)]) {
				return fmt.Errorf("echo mismatch near byte %d", off)
			}
			off += uint64(k)
		}
		if err != nil && off < n {
			return fmt.Errorf("after %d of %d bytes: %v", off, n, err)
		}
	}
	return nil
}

func bulk(d *dialer, job *Job) Result {
	set := &openSet{}
	defer set.close()
	sts, err := d.streams(int(job.Streams), set)
	if err != nil {
		return fail("open: %v", err)
	}
	errs := make(chan error, len(sts))
	rtt := startRTT(set)
	start := time.Now()
	for _, st := range sts {
		st := st
		if job.Test == "sink" {
			go func() { errs <- sinkStream(st, job.Bytes) }()
		} else {
			go func() { errs <- echoStream(st, job.Bytes) }()
		}
	}
	var first error
	for range sts {
		if err := <-errs; err != nil && first == nil {
			first = err
			set.close() // unblock the other streams
		}
	}
	secs := time.Since(start).Seconds()
	rttMin, queue := rtt.finish()
	if first != nil {
		return fail("%s: %v", job.Test, first)
	}
	total := job.Bytes * uint64(len(sts))
	return Result{OK: true, Bytes: &total, Secs: &secs, RttMinMs: rttMin, QueueDelayMs: queue}
}

func sinkStream(st io.ReadWriter, n uint64) error {
	if _, err := st.Write(header('S', n)); err != nil {
		return err
	}
	if err := writePayload(st, n); err != nil {
		return err
	}
	var ack [8]byte
	if _, err := io.ReadFull(st, ack[:]); err != nil {
		return fmt.Errorf("reading the sink's ack: %v", err)
	}
	if got := binary.LittleEndian.Uint64(ack[:]); got != n {
		return fmt.Errorf("sink acked %d bytes, sent %d", got, n)
	}
	return nil
}

func echoStream(st io.ReadWriter, n uint64) error {
	if _, err := st.Write(header('E', 0)); err != nil {
		return err
	}
	werr := make(chan error, 1)
	go func() { werr <- writePayload(st, n) }()
	if err := readVerify(st, n); err != nil {
		return err
	}
	return <-werr
}

// message builds latency/sessions message i: the pattern with i (u32 LE) in its first bytes.
func message(i uint32, size uint32) []byte {
	m := make([]byte, size)
	copy(m, pattern[int(i%1024):])
	var idx [4]byte
	binary.LittleEndian.PutUint32(idx[:], i)
	copy(m, idx[:])
	return m
}

// deadliner is implemented by every stream type we use (KCP session, TCP conn, smux stream).
type deadliner interface {
	SetReadDeadline(time.Time) error
}

// latencyGrace is how long after the last send the client waits for the remaining replies.
const latencyGrace = 10 * time.Second

func latency(d *dialer, job *Job) Result {
	set := &openSet{}
	defer set.close()
	sts, err := d.streams(1, set)
	if err != nil {
		return fail("open: %v", err)
	}
	st := sts[0]
	if _, err := st.Write(header('E', 0)); err != nil {
		return fail("write: %v", err)
	}
	period := time.Duration(job.PeriodMs) * time.Millisecond
	sent := make([]int64, job.Count) // send time, ns since start (atomic)
	start := time.Now()
	if dl, ok := st.(deadliner); ok {
		dl.SetReadDeadline(start.Add(time.Duration(job.Count)*period + latencyGrace))
	}
	werr := make(chan error, 1)
	go func() {
		for i := uint32(0); i < job.Count; i++ {
			at := start.Add(time.Duration(i) * period)
			if w := time.Until(at); w > 0 {
				time.Sleep(w)
			}
			m := message(i, job.Size)
			atomic.StoreInt64(&sent[i], int64(time.Since(start)))
			if _, err := st.Write(m); err != nil {
				werr <- err
				return
			}
		}
		werr <- nil
	}()
	rtts := make([]uint64, 0, job.Count)
	buf := make([]byte, job.Size)
	for i := uint32(0); i < job.Count; i++ {
		if _, err := io.ReadFull(st, buf); err != nil {
			break // the rest count as lost
		}
		now := int64(time.Since(start))
		if !bytes.Equal(buf, message(i, job.Size)) {
			return fail("latency: message %d came back altered", i)
		}
		rtts = append(rtts, uint64((now-atomic.LoadInt64(&sent[i]))/1000))
	}
	set.close()
	<-werr
	lost := uint64(job.Count) - uint64(len(rtts))
	return Result{OK: true, RttUs: &rtts, Lost: &lost}
}

// session is one of the many connections of a sessions job: one stream doing op E.
type session struct {
	st io.ReadWriter
}

// openConcurrency bounds how many sessions are being opened at once.
const openConcurrency = 64

// sessionsGrace is how long after the window the client waits for the last replies.
const sessionsGrace = 5 * time.Second

func sessions(d *dialer, job *Job) Result {
	set := &openSet{}
	defer set.close()
	n := int(job.Sessions)
	ss := make([]session, n)
	openStart := time.Now()
	var openErr atomic.Value
	sem := make(chan struct{}, openConcurrency)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		if openErr.Load() != nil {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			st, err := d.openSession(set)
			if err == nil {
				// One warm-up echo proves the server has the session before the window starts.
				err = echoOnce(st, 0, job.Size, time.Now().Add(30*time.Second))
			}
			if err != nil {
				openErr.Store(fmt.Errorf("session %d: %v", i, err))
				return
			}
			ss[i].st = st
		}(i)
	}
	wg.Wait()
	if e := openErr.Load(); e != nil {
		return fail("open: %v", e)
	}
	openSecs := time.Since(openStart).Seconds()
	fmt.Fprintln(os.Stderr, "OPENED")

	window := time.Duration(job.Secs * float64(time.Second))
	interval := time.Duration(float64(time.Second) / job.RateHz)
	start := time.Now()
	end := start.Add(window)
	var echoed, expected uint64
	for i := 0; i < n; i++ {
		phase := time.Duration(int64(interval) * int64(i) / int64(n))
		for t := phase; t < window; t += interval {
			expected++
		}
	}
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			st := ss[i].st
			phase := time.Duration(int64(interval) * int64(i) / int64(n))
			k := uint32(1)
			for t := phase; t < window; t += interval {
				if w := time.Until(start.Add(t)); w > 0 {
					time.Sleep(w)
				}
				if echoOnce(st, k, job.Size, end.Add(sessionsGrace)) != nil {
					return
				}
				atomic.AddUint64(&echoed, 1)
				k++
			}
		}(i)
	}
	wg.Wait()
	// The window lasts `secs` even when the last messages were echoed early, so the server's CPU
	// figure (taken at OPENED and at exit) covers the whole window.
	if w := time.Until(end); w > 0 {
		time.Sleep(w)
	}
	secs := time.Since(start).Seconds()
	return Result{OK: true, Echoed: &echoed, Expected: &expected, Secs: &secs, OpenSecs: &openSecs}
}

// openSession opens one connection with one stream and sends the echo header.
func (d *dialer) openSession(set *openSet) (io.ReadWriter, error) {
	conn, err := d.conn()
	if err != nil {
		return nil, err
	}
	set.add(conn)
	var st io.ReadWriter = conn
	if d.isMux() {
		m, err := d.mux(conn)
		if err != nil {
			return nil, err
		}
		set.add(m)
		s, err := m.OpenStream()
		if err != nil {
			return nil, err
		}
		set.add(s)
		st = s
	}
	if _, err := st.Write(header('E', 0)); err != nil {
		return nil, err
	}
	return st, nil
}

// echoOnce sends message k and waits for it to come back intact before the deadline.
func echoOnce(st io.ReadWriter, k uint32, size uint32, deadline time.Time) error {
	m := message(k, size)
	if dl, ok := st.(deadliner); ok {
		dl.SetReadDeadline(deadline)
	}
	if _, err := st.Write(m); err != nil {
		return err
	}
	buf := make([]byte, size)
	if _, err := io.ReadFull(st, buf); err != nil {
		return err
	}
	if !bytes.Equal(buf, m) {
		return fmt.Errorf("echo of message %d altered", k)
	}
	return nil
}
