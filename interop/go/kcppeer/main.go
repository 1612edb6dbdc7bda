// kcppeer: a kcp-go 5.6.1 peer for the session crate's interop tests and benchmarks.
//
// Build in GOPATH mode against the Debian packages:
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o kcppeer ./interop/go/kcppeer/main.go
//
// Roles:
//
//	-role echo   server: echo every byte (stream mode) or message (message mode) back
//	-role sink   server: read -bytes bytes, reply with 8 bytes (the count), print the rate
//	-role client client: send -bytes bytes of a fixed pattern, read the echo, verify it, exit 0/1
//	-role source client: send -bytes bytes, wait for the sink's 8-byte reply, print the rate
//
// Servers print "READY <addr>" on stdout once listening. The cipher is built exactly as kcptun does
// (PBKDF2-SHA1 of -key, salt "kcp-go", 4096 iterations, 32 bytes; then kcptun's key prefix per cipher).
package main

import (
	"crypto/sha1"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	kcp "github.com/xtaci/kcp-go"
	"golang.org/x/crypto/pbkdf2"
)

func blockCrypt(name, key string) kcp.BlockCrypt {
	pass := pbkdf2.Key([]byte(key), []byte("kcp-go"), 4096, 32, sha1.New)
	var block kcp.BlockCrypt
	switch name {
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

var (
	role   = flag.String("role", "echo", "echo | sink | client | source")
	addr   = flag.String("addr", "127.0.0.1:0", "listen (servers) or dial (clients) address")
	crypt  = flag.String("crypt", "aes", "kcptun cipher name, or plain for no crypt layer")
	key    = flag.String("key", "it's a secrect", "passphrase")
	ds     = flag.Int("ds", 10, "FEC data shards")
	ps     = flag.Int("ps", 3, "FEC parity shards")
	stream = flag.Bool("stream", true, "stream mode (false: message mode)")
	nbytes = flag.Int64("bytes", 1<<20, "bytes to send (client, source) or expect (sink)")
	wnd    = flag.Int("wnd", 1024, "send and receive window")
	mtu    = flag.Int("mtu", 1400, "MTU")
)

func tune(s *kcp.UDPSession) {
	s.SetStreamMode(*stream)
	s.SetWriteDelay(false)
	s.SetNoDelay(1, 10, 2, 1)
	s.SetWindowSize(*wnd, *wnd)
	s.SetMtu(*mtu)
	s.SetACKNoDelay(false)
}

func pattern(n int64) []byte {
	b := make([]byte, n)
	x := uint64(0x9e3779b97f4a7c15)
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

func main() {
	flag.Parse()
	block := blockCrypt(*crypt, *key)
	switch *role {
	case "echo", "sink":
		l, err := kcp.ListenWithOptions(*addr, block, *ds, *ps)
		if err != nil {
			log.Fatal(err)
		}
		l.SetReadBuffer(4 << 20)
		l.SetWriteBuffer(4 << 20)
		fmt.Printf("READY %s\n", l.Addr())
		os.Stdout.Sync()
		for {
			s, err := l.AcceptKCP()
			if err != nil {
				log.Fatal(err)
			}
			tune(s)
			if *role == "echo" {
				go echo(s)
			} else {
				go sink(s)
			}
		}
	case "client", "source":
		s, err := kcp.DialWithOptions(*addr, block, *ds, *ps)
		if err != nil {
			log.Fatal(err)
		}
		s.SetReadBuffer(4 << 20)
		s.SetWriteBuffer(4 << 20)
		tune(s)
		if *role == "client" {
			os.Exit(client(s))
		}
		os.Exit(source(s))
	default:
		log.Fatalf("unknown role %q", *role)
	}
}

func echo(s *kcp.UDPSession) {
	defer s.Close()
	buf := make([]byte, 1<<20)
	for {
		n, err := s.Read(buf)
		if err != nil {
			return
		}
		if _, err := s.Write(buf[:n]); err != nil {
			return
		}
	}
}

func sink(s *kcp.UDPSession) {
	defer s.Close()
	start := time.Now()
	got, err := io.CopyN(io.Discard, s, *nbytes)
	if err != nil {
		log.Printf("sink: %v after %d bytes", err, got)
		return
	}
	secs := time.Since(start).Seconds()
	var reply [8]byte
	binary.LittleEndian.PutUint64(reply[:], uint64(got))
	s.Write(reply[:])
	fmt.Printf("SINK %d bytes in %.3f s = %.1f MB/s\n", got, secs, float64(got)/secs/1e6)
	os.Stdout.Sync()
	time.Sleep(200 * time.Millisecond)
}

func client(s *kcp.UDPSession) int {
	data := pattern(*nbytes)
	done := make(chan error, 1)
	go func() {
		_, err := s.Write(data)
		done <- err
	}()
	s.SetReadDeadline(time.Now().Add(60 * time.Second))
	got := make([]byte, len(data))
	if _, err := io.ReadFull(s, got); err != nil {
		log.Printf("client: %v", err)
		return 1
	}
	if err := <-done; err != nil {
		log.Printf("client write: %v", err)
		return 1
	}
	for i := range got {
		if got[i] != data[i] {
			log.Printf("client: mismatch at byte %d", i)
			return 1
		}
	}
	fmt.Printf("OK %d\n", len(got))
	return 0
}

func source(s *kcp.UDPSession) int {
	data := pattern(1 << 20)
	start := time.Now()
	var sent int64
	for sent < *nbytes {
		n := int64(len(data))
		if *nbytes-sent < n {
			n = *nbytes - sent
		}
		if _, err := s.Write(data[:n]); err != nil {
			log.Printf("source: %v", err)
			return 1
		}
		sent += n
	}
	var reply [8]byte
	s.SetReadDeadline(time.Now().Add(120 * time.Second))
	if _, err := io.ReadFull(s, reply[:]); err != nil {
		log.Printf("source: %v", err)
		return 1
	}
	secs := time.Since(start).Seconds()
	fmt.Printf("SOURCE %d bytes in %.3f s = %.1f MB/s\n", sent, secs, float64(sent)/secs/1e6)
	return 0
}
