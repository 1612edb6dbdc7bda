package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	kcp "github.com/xtaci/kcp-go"
	"github.com/xtaci/smux"
)

// serve runs the control server until the process is killed.
func serve(listen string) error {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	fmt.Printf("READY %s\n", l.Addr())
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go control(c)
	}
}

// owner holds what one control connection opened: its data listeners and the data connections
// accepted on them, all closed when the control connection closes.
type owner struct {
	mu        sync.Mutex
	closed    bool
	listeners []io.Closer
	conns     map[io.Closer]struct{}
}

func (o *owner) addListener(l io.Closer) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		l.Close()
		return false
	}
	o.listeners = append(o.listeners, l)
	return true
}

func (o *owner) addConn(c io.Closer) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		c.Close()
		return false
	}
	o.conns[c] = struct{}{}
	return true
}

// dropConn closes a data connection and forgets it.
func (o *owner) dropConn(c io.Closer) {
	c.Close()
	o.mu.Lock()
	delete(o.conns, c)
	o.mu.Unlock()
}

func (o *owner) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.conns)
}

func (o *owner) closeAll() {
	o.mu.Lock()
	o.closed = true
	ls := o.listeners
	cs := make([]io.Closer, 0, len(o.conns))
	for c := range o.conns {
		cs = append(cs, c)
	}
	o.listeners = nil
	o.conns = map[io.Closer]struct{}{}
	o.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
	for _, c := range cs {
		c.Close()
	}
}

// maxLine is the longest control line accepted.
const maxLine = 64 << 10

type request struct {
	Cmd    string          `json:"cmd"`
	Config json.RawMessage `json:"config"`
}

func control(c net.Conn) {
	o := &owner{conns: map[io.Closer]struct{}{}}
	defer o.closeAll()
	defer c.Close()
	// Lines are bounded by the reader's buffer (a CONFIG is a few hundred bytes); a longer one ends
	// the control connection.
	r := bufio.NewReaderSize(c, maxLine)
	w := bufio.NewWriter(c)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		var reply interface{}
		var req request
		if err := json.Unmarshal(line, &req); err != nil {
			reply = errReply(fmt.Sprintf("bad request: %v", err))
		} else {
			switch req.Cmd {
			case "listen":
				port, err := startListener(o, dataAddr(c), req.Config)
				if err != nil {
					reply = errReply(err.Error())
				} else {
					reply = map[string]interface{}{"ok": true, "port": port}
				}
			case "stats":
				cpu, rss := resourceUsage()
				reply = map[string]interface{}{"ok": true, "cpu_ns": cpu, "rss_bytes": rss, "conns": o.count()}
			default:
				reply = errReply(fmt.Sprintf("unknown command %q", req.Cmd))
			}
		}
		out, _ := json.Marshal(reply)
		w.Write(append(out, '\n'))
		if err := w.Flush(); err != nil {
			return
		}
	}
}

func errReply(msg string) map[string]interface{} {
	return map[string]interface{}{"ok": false, "error": msg}
}

// resourceUsage returns the process's user+system CPU time in ns and its resident set in bytes.
func resourceUsage() (uint64, uint64) {
	var ru syscall.Rusage
	var cpu uint64
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		cpu = uint64(ru.Utime.Nano() + ru.Stime.Nano())
	}
	var rss uint64
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 2 {
			if pages, err := strconv.ParseUint(f[1], 10, 64); err == nil {
				rss = pages * uint64(os.Getpagesize())
			}
		}
	}
	return cpu, rss
}

// startListener opens the data listener for a config and serves it in the background.
func startListener(o *owner, addr string, raw json.RawMessage) (int, error) {
	cfg, err := parseConfig(raw)
	if err != nil {
		return 0, err
	}
	switch cfg.Transport {
	case "kcp", "smux-kcp":
		l, err := kcp.ListenWithOptions(addr, cfg.block, cfg.DataShard, cfg.ParityShard)
		if err != nil {
			return 0, err
		}
		// As kcptun: socket buffers on the listener's socket (accepted sessions share it).
		l.SetReadBuffer(cfg.SockBuf)
		l.SetWriteBuffer(cfg.SockBuf)
		if !o.addListener(l) {
			return 0, fmt.Errorf("control connection closed")
		}
		go acceptKCP(o, l, cfg)
		return l.Addr().(*net.UDPAddr).Port, nil
	default:
		// Kernel TCP keeps its buffer autotuning (sockbuf is for UDP, as in kcpbench serve).
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return 0, err
		}
		if !o.addListener(l) {
			return 0, fmt.Errorf("control connection closed")
		}
		go acceptTCP(o, l, cfg)
		return l.Addr().(*net.TCPAddr).Port, nil
	}
}

func acceptKCP(o *owner, l *kcp.Listener, cfg *Config) {
	for {
		s, err := l.AcceptKCP()
		if err != nil {
			return
		}
		cfg.tuneKCP(s)
		if !o.addConn(s) {
			continue
		}
		if cfg.Transport == "kcp" {
			go func() {
				defer o.dropConn(s)
				handleStream(&idleConn{UDPSession: s, idle: rawKCPIdle})
			}()
		} else {
			go serveMux(o, s, cfg)
		}
	}
}

func acceptTCP(o *owner, l net.Listener, cfg *Config) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		if !o.addConn(c) {
			continue
		}
		if cfg.Transport == "tcp" {
			go func() {
				defer o.dropConn(c)
				handleStream(c)
			}()
		} else {
			go serveMux(o, c, cfg)
		}
	}
}

// serveMux runs an smux server session on a data connection, one goroutine per stream.
func serveMux(o *owner, conn io.ReadWriteCloser, cfg *Config) {
	defer o.dropConn(conn)
	sc, err := cfg.smuxConfig()
	if err != nil {
		return
	}
	mux, err := smux.Server(conn, sc)
	if err != nil {
		return
	}
	defer mux.Close()
	for {
		st, err := mux.AcceptStream()
		if err != nil {
			return
		}
		go func() {
			defer st.Close()
			handleStream(st)
		}()
	}
}

// handleStream serves one data stream: the 9-byte header, then sink or echo.
func handleStream(rw io.ReadWriter) {
	var hdr [9]byte
	if _, err := io.ReadFull(rw, hdr[:]); err != nil {
		return
	}
	n := binary.LittleEndian.Uint64(hdr[1:])
	switch hdr[0] {
	case 'S':
		sw := &sinkWriter{remain: n, total: n, w: rw}
		if n == 0 {
			if sw.reply() != nil {
				return
			}
		}
		copyTo(sw, rw)
	case 'E':
		copyTo(rw, rw)
	}
}

// sinkWriter discards what it is given; once `total` bytes arrived it writes the 8-byte reply.
type sinkWriter struct {
	remain, total uint64
	w             io.Writer
}

func (s *sinkWriter) reply() error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], s.total)
	_, err := s.w.Write(b[:])
	return err
}

func (s *sinkWriter) Write(p []byte) (int, error) {
	if s.remain > 0 {
		if uint64(len(p)) >= s.remain {
			s.remain = 0
			if err := s.reply(); err != nil {
				return 0, err
			}
		} else {
			s.remain -= uint64(len(p))
		}
	}
	return len(p), nil
}

// copyTo copies src to dst until EOF or an error. smux streams hand their frame buffers over
// (WriteTo, as kcptun's generic.Copy does); other sources are read with a buffer that starts small
// (many idle sessions stay cheap) and grows to 64 KiB for bulk transfers.
func copyTo(dst io.Writer, src io.Reader) {
	if wt, ok := src.(io.WriterTo); ok {
		wt.WriteTo(dst)
		return
	}
	buf := make([]byte, 4096)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
			if n == len(buf) && len(buf) < 64<<10 {
				buf = make([]byte, 64<<10)
			}
		}
		if err != nil {
			return
		}
	}
}
