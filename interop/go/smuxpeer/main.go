// smuxpeer is a small test peer for the Rust smux crate's interop suite (and the session crate's
// smux-over-KCP interop). It uses the real github.com/xtaci/smux and github.com/xtaci/kcp-go (Debian
// golang-github-xtaci-smux-dev, golang-github-xtaci-kcp-dev) in GOPATH mode:
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o smuxpeer interop/go/smuxpeer/main.go
//
// Server: smuxpeer -mode server -ver 2 -listen 127.0.0.1:0
//
//	prints "LISTEN <addr>", accepts one connection and serves every stream; the first byte
//	picks the service:
//	  'E' echoes the rest back until EOF;
//	  'S' sinks everything until EOF (the peer's FIN) and answers with the SHA-256 of what it
//	      read (for clients that can still read after sending FIN, as the Rust smux can);
//	  'N' reads an 8-byte big-endian length L, sinks exactly L bytes and answers with their
//	      SHA-256 (the sink for clients without half-close: Go smux's Close also stops reading).
//	Every service closes the stream (FIN) when done.
//
// Client: smuxpeer -mode client -ver 2 -connect ADDR -streams 32 -size 1000000 [-mix half] [-progress]
//
//	opens the streams concurrently; stream i sends `size` pseudo-random bytes seeded by i.
//	-mix echo: every stream is an 'E' echo, checked byte for byte;
//	-mix sink: every stream is an 'N' sink, checked against its SHA-256;
//	-mix half: even-numbered streams echo, odd-numbered streams sink.
//	With -progress, prints "DONE <i>" as each stream succeeds. Prints "OK <streams> <bytes>"
//	and exits 0 on success; on the first failure prints it to stderr and exits 1.
//
// Transport: -transport tcp (default) or -transport kcp, the latter set up as kcptun does:
// -crypt NAME -key K (PBKDF2-SHA1 of K, salt "kcp-go", 4096 iterations, 32 bytes; then kcptun's
// key prefix per cipher), -fec 10/3, -kcpmode fast3 (nodelay 1, interval 10, resend 2, nc 1),
// -sndwnd/-rcvwnd 1024, -mtu 1350, stream mode, write delay off, -acknodelay false (kcptun's
// default) and 4 MB socket buffers (-sockbuf).
package main

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"

	kcp "github.com/xtaci/kcp-go"
	"github.com/xtaci/smux"
	"golang.org/x/crypto/pbkdf2"
)

var (
	mode      = flag.String("mode", "server", "server or client")
	ver       = flag.Int("ver", 1, "smux version (1 or 2)")
	listen    = flag.String("listen", "127.0.0.1:0", "server: listen address")
	connect   = flag.String("connect", "", "client: server address")
	streams   = flag.Int("streams", 8, "client: concurrent streams")
	size      = flag.Int("size", 100000, "client: bytes per stream")
	mix       = flag.String("mix", "echo", "client: echo, sink or half (even streams echo, odd streams sink)")
	progress  = flag.Bool("progress", false, "client: print DONE <i> as each stream succeeds")
	transport = flag.String("transport", "tcp", "tcp or kcp")
	crypt     = flag.String("crypt", "aes", "kcp: kcptun cipher name, or plain for no crypt layer")
	key       = flag.String("key", "it's a secrect", "kcp: passphrase")
	fec       = flag.String("fec", "10/3", "kcp: FEC data/parity shards (0/0 is off)")
	kcpmode   = flag.String("kcpmode", "fast3", "kcp: kcptun profile normal, fast, fast2 or fast3")
	mtu       = flag.Int("mtu", 1350, "kcp: MTU")
	sndwnd    = flag.Int("sndwnd", 1024, "kcp: send window")
	rcvwnd    = flag.Int("rcvwnd", 1024, "kcp: receive window")
	ackNodly  = flag.Bool("acknodelay", false, "kcp: flush ACKs immediately")
	sockbuf   = flag.Int("sockbuf", 4194304, "kcp: UDP socket buffer bytes")
)

var stdoutMu sync.Mutex

func say(format string, args ...interface{}) {
	stdoutMu.Lock()
	defer stdoutMu.Unlock()
	fmt.Printf(format, args...)
	os.Stdout.Sync()
}

func pattern(seed uint64, n int) []byte {
	x := seed*0x9E3779B97F4A7C15 | 1
	out := make([]byte, n)
	for i := range out {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		out[i] = byte(x)
	}
	return out
}

func config() *smux.Config {
	c := smux.DefaultConfig()
	c.Version = *ver
	return c
}

// blockCrypt builds the cipher exactly as kcptun's server/main.go does.
func blockCrypt() kcp.BlockCrypt {
	pass := pbkdf2.Key([]byte(*key), []byte("kcp-go"), 4096, 32, sha1.New)
	var block kcp.BlockCrypt
	switch *crypt {
	case "sm4":
		block, _ = kcp.NewSM4BlockCrypt(pass[:16])
	case "tea":
		block, _ = kcp.NewTEABlockCrypt(pass[:16])
	case "xor":
		block, _ = kcp.NewSimpleXORBlockCrypt(pass)
	case "none":
		block, _ = kcp.NewNoneBlockCrypt(pass)
	case "aes-128":
		block, _ = kcp.NewAESBlockCrypt(pass[:16])
	case "aes-192":
		block, _ = kcp.NewAESBlockCrypt(pass[:24])
	case "blowfish":
		block, _ = kcp.NewBlowfishBlockCrypt(pass)
	case "twofish":
		block, _ = kcp.NewTwofishBlockCrypt(pass)
	case "cast5":
		block, _ = kcp.NewCast5BlockCrypt(pass[:16])
	case "3des":
		block, _ = kcp.NewTripleDESBlockCrypt(pass[:24])
	case "xtea":
		block, _ = kcp.NewXTEABlockCrypt(pass[:16])
	case "salsa20":
		block, _ = kcp.NewSalsa20BlockCrypt(pass)
	case "plain":
		return nil // no crypt header at all (kcp-go with a nil BlockCrypt)
	default:
		block, _ = kcp.NewAESBlockCrypt(pass)
	}
	return block
}

func fecShards() (int, int, error) {
	parts := strings.SplitN(*fec, "/", 2)
	if len(parts) != 2 {
		return 0, 0, fmt.Errorf("-fec wants DATA/PARITY, got %q", *fec)
	}
	ds, err1 := strconv.Atoi(parts[0])
	ps, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("-fec wants DATA/PARITY, got %q", *fec)
	}
	return ds, ps, nil
}

// tune applies kcptun's per-session settings (server/main.go and client/main.go).
func tune(s *kcp.UDPSession) error {
	var nodelay, interval, resend, nc int
	switch *kcpmode {
	case "normal":
		nodelay, interval, resend, nc = 0, 40, 2, 1
	case "fast":
		nodelay, interval, resend, nc = 0, 30, 2, 1
	case "fast2":
		nodelay, interval, resend, nc = 1, 20, 2, 1
	case "fast3":
		nodelay, interval, resend, nc = 1, 10, 2, 1
	default:
		return fmt.Errorf("unknown -kcpmode %q", *kcpmode)
	}
	s.SetStreamMode(true)
	s.SetWriteDelay(false)
	s.SetNoDelay(nodelay, interval, resend, nc)
	s.SetMtu(*mtu)
	s.SetWindowSize(*sndwnd, *rcvwnd)
	s.SetACKNoDelay(*ackNodly)
	return nil
}

// accept listens on -listen, prints "LISTEN <addr>" and returns the first connection.
func accept() (net.Conn, error) {
	switch *transport {
	case "tcp":
		l, err := net.Listen("tcp", *listen)
		if err != nil {
			return nil, err
		}
		say("LISTEN %s\n", l.Addr())
		return l.Accept()
	case "kcp":
		ds, ps, err := fecShards()
		if err != nil {
			return nil, err
		}
		l, err := kcp.ListenWithOptions(*listen, blockCrypt(), ds, ps)
		if err != nil {
			return nil, err
		}
		l.SetReadBuffer(*sockbuf)
		l.SetWriteBuffer(*sockbuf)
		say("LISTEN %s\n", l.Addr())
		s, err := l.AcceptKCP()
		if err != nil {
			return nil, err
		}
		return s, tune(s)
	}
	return nil, fmt.Errorf("unknown -transport %q", *transport)
}

func dial() (net.Conn, error) {
	switch *transport {
	case "tcp":
		return net.Dial("tcp", *connect)
	case "kcp":
		ds, ps, err := fecShards()
		if err != nil {
			return nil, err
		}
		s, err := kcp.DialWithOptions(*connect, blockCrypt(), ds, ps)
		if err != nil {
			return nil, err
		}
		s.SetReadBuffer(*sockbuf)
		s.SetWriteBuffer(*sockbuf)
		return s, tune(s)
	}
	return nil, fmt.Errorf("unknown -transport %q", *transport)
}

func serve(s *smux.Stream) {
	defer s.Close()
	var kind [1]byte
	if _, err := io.ReadFull(s, kind[:]); err != nil {
		return
	}
	switch kind[0] {
	case 'E':
		io.Copy(s, s)
	case 'S':
		h := sha256.New()
		io.Copy(h, s)
		s.Write(h.Sum(nil))
	case 'N':
		var l [8]byte
		if _, err := io.ReadFull(s, l[:]); err != nil {
			return
		}
		h := sha256.New()
		if _, err := io.CopyN(h, s, int64(binary.BigEndian.Uint64(l[:]))); err != nil {
			return
		}
		s.Write(h.Sum(nil))
	}
}

func server() error {
	conn, err := accept()
	if err != nil {
		return err
	}
	sess, err := smux.Server(conn, config())
	if err != nil {
		return err
	}
	for {
		s, err := sess.AcceptStream()
		if err != nil {
			return nil // peer closed the session
		}
		go serve(s)
	}
}

func echoStream(s *smux.Stream, idx int, data []byte) error {
	errc := make(chan error, 1)
	go func() {
		if _, err := s.Write([]byte{'E'}); err != nil {
			errc <- err
			return
		}
		_, err := s.Write(data)
		errc <- err
	}()
	// smux has no half-close: read the whole echo before closing (FIN).
	got := make([]byte, len(data))
	if _, err := io.ReadFull(s, got); err != nil {
		return fmt.Errorf("stream %d (echo): read echo: %v", idx, err)
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("stream %d (echo): write: %v", idx, err)
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("stream %d (echo): echo differs", idx)
	}
	return nil
}

// sinkStream uses 'N' (length-prefixed): Go smux's Close would also stop our reading, so we
// cannot FIN and then read the digest as the 'S' service expects.
func sinkStream(s *smux.Stream, idx int, data []byte) error {
	hdr := make([]byte, 9)
	hdr[0] = 'N'
	binary.BigEndian.PutUint64(hdr[1:], uint64(len(data)))
	errc := make(chan error, 1)
	go func() {
		if _, err := s.Write(hdr); err != nil {
			errc <- err
			return
		}
		_, err := s.Write(data)
		errc <- err
	}()
	var digest [32]byte
	if _, err := io.ReadFull(s, digest[:]); err != nil {
		return fmt.Errorf("stream %d (sink): read digest: %v", idx, err)
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("stream %d (sink): write: %v", idx, err)
	}
	if want := sha256.Sum256(data); digest != want {
		return fmt.Errorf("stream %d (sink): digest %x, want %x", idx, digest, want)
	}
	return nil
}

func runStream(sess *smux.Session, idx int) error {
	s, err := sess.OpenStream()
	if err != nil {
		return fmt.Errorf("stream %d: open: %v", idx, err)
	}
	defer s.Close()
	data := pattern(uint64(idx), *size)
	sink := *mix == "sink" || (*mix == "half" && idx%2 == 1)
	if sink {
		err = sinkStream(s, idx, data)
	} else {
		err = echoStream(s, idx, data)
	}
	if err == nil && *progress {
		say("DONE %d\n", idx)
	}
	return err
}

func client() error {
	if *mix != "echo" && *mix != "sink" && *mix != "half" {
		return fmt.Errorf("unknown -mix %q", *mix)
	}
	conn, err := dial()
	if err != nil {
		return err
	}
	sess, err := smux.Client(conn, config())
	if err != nil {
		return err
	}
	defer sess.Close()
	var wg sync.WaitGroup
	errs := make(chan error, *streams)
	for i := 0; i < *streams; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := runStream(sess, i); err != nil {
				errs <- err
			}
		}(i)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	// Fail on the first error rather than waiting for streams that may never finish.
	select {
	case err := <-errs:
		return err
	case <-done:
		select {
		case err := <-errs:
			return err
		default:
		}
	}
	say("OK %d %d\n", *streams, *streams**size)
	return nil
}

func main() {
	flag.Parse()
	var err error
	if *mode == "server" {
		err = server()
	} else {
		err = client()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "smuxpeer:", err)
		os.Exit(1)
	}
}
