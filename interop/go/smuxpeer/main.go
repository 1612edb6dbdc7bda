// smuxpeer is a small test peer for the Rust smux crate's interop suite. It uses the
// real github.com/xtaci/smux (Debian golang-github-xtaci-smux-dev) in GOPATH mode:
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o smuxpeer interop/go/smuxpeer/main.go
//
// Server: smuxpeer -mode server -ver 2 -listen 127.0.0.1:0
//
//	prints "LISTEN <addr>", accepts one TCP connection and serves every stream:
//	the first byte picks the service: 'E' echoes the rest back until EOF, 'S' sinks
//	everything until EOF and answers with the SHA-256 of what it read.
//
// Client: smuxpeer -mode client -ver 2 -connect ADDR -streams 32 -size 1000000
//
//	opens the streams concurrently; each sends 'E' and `size` pseudo-random bytes
//	(seeded by the stream's index), checks the echo byte for byte, then closes.
//	Prints "OK <streams> <bytes>" and exits 0 on success.
package main

import (
	"bytes"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/xtaci/smux"
)

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

func config(ver int) *smux.Config {
	c := smux.DefaultConfig()
	c.Version = ver
	return c
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
	}
}

func server(ver int, listen string) error {
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	fmt.Printf("LISTEN %s\n", l.Addr())
	os.Stdout.Sync()
	conn, err := l.Accept()
	if err != nil {
		return err
	}
	sess, err := smux.Server(conn, config(ver))
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

func runStream(sess *smux.Session, idx int, size int) error {
	s, err := sess.OpenStream()
	if err != nil {
		return err
	}
	defer s.Close()
	data := pattern(uint64(idx), size)
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
	got := make([]byte, size)
	if _, err := io.ReadFull(s, got); err != nil {
		return fmt.Errorf("stream %d: read echo: %v", idx, err)
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("stream %d: write: %v", idx, err)
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("stream %d: echo differs", idx)
	}
	return nil
}

func client(ver int, connect string, streams int, size int) error {
	conn, err := net.Dial("tcp", connect)
	if err != nil {
		return err
	}
	sess, err := smux.Client(conn, config(ver))
	if err != nil {
		return err
	}
	defer sess.Close()
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i := 0; i < streams; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := runStream(sess, i, size); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		return err
	}
	fmt.Printf("OK %d %d\n", streams, streams*size)
	return nil
}

func main() {
	mode := flag.String("mode", "server", "server or client")
	ver := flag.Int("ver", 1, "smux version (1 or 2)")
	listen := flag.String("listen", "127.0.0.1:0", "server: listen address")
	connect := flag.String("connect", "", "client: server address")
	streams := flag.Int("streams", 8, "client: concurrent streams")
	size := flag.Int("size", 100000, "client: bytes per stream")
	flag.Parse()
	var err error
	if *mode == "server" {
		err = server(*ver, *listen)
	} else {
		err = client(*ver, *connect, *streams, *size)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "smuxpeer:", err)
		os.Exit(1)
	}
}
