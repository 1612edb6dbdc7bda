// The shapes of rkcp-smux's criterion bench (smux/benches/smux.rs) for Go's xtaci/smux, so the
// two can be compared number for number. run.sh copies this file into a writable copy of the
// Debian smux package (package smux) next to smux's own session_test.go and runs it with the
// upstream BenchmarkConnSmux / BenchmarkConnTCP / BenchmarkAcceptClose.
//
// As in the Rust bench: writes and reads of 256 KiB; each pair has a persistent writer and
// reader goroutine; one op = every writer sends `perRound` bytes and every reader has them.
// One stream: 4 MiB per op; 64 streams: 64 KiB per stream per op (4 MiB in all). smux config
// is DefaultConfig() with Version set (32 KiB frames, 4 MiB session buffer, 64 KiB stream
// buffer). Go's net sets TCP_NODELAY, as the Rust bench does.
package smux

import (
	"io"
	"net"
	"testing"
)

const rkcpWrite = 256 * 1024

type rkcpPump struct {
	gos  []chan struct{}
	done chan struct{}
}

func newRkcpPump(pairs [][2]io.ReadWriter, perRound int) *rkcpPump {
	p := &rkcpPump{done: make(chan struct{}, len(pairs))}
	for _, pr := range pairs {
		w, r := pr[0], pr[1]
		g := make(chan struct{}, 1)
		p.gos = append(p.gos, g)
		go func() {
			buf := make([]byte, rkcpWrite)
			for range g {
				left := perRound
				for left > 0 {
					n := left
					if n > rkcpWrite {
						n = rkcpWrite
					}
					if _, err := w.Write(buf[:n]); err != nil {
						return
					}
					left -= n
				}
			}
		}()
		go func() {
			buf := make([]byte, rkcpWrite)
			for {
				left := perRound
				for left > 0 {
					n := left
					if n > rkcpWrite {
						n = rkcpWrite
					}
					m, err := r.Read(buf[:n])
					if err != nil {
						return
					}
					left -= m
				}
				p.done <- struct{}{}
			}
		}()
	}
	return p
}

func (p *rkcpPump) round() {
	for _, g := range p.gos {
		g <- struct{}{}
	}
	for range p.gos {
		<-p.done
	}
}

func (p *rkcpPump) stop() {
	for _, g := range p.gos {
		close(g)
	}
}

func rkcpRun(b *testing.B, pairs [][2]io.ReadWriter, perRound int) {
	p := newRkcpPump(pairs, perRound)
	defer p.stop()
	p.round() // warm
	b.SetBytes(int64(perRound * len(pairs)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p.round()
	}
}

func rkcpTCPPairs(b *testing.B, n int) ([][2]io.ReadWriter, []net.Conn) {
	var pairs [][2]io.ReadWriter
	var conns []net.Conn
	for i := 0; i < n; i++ {
		a, c, err := getTCPConnectionPair()
		if err != nil {
			b.Fatal(err)
		}
		pairs = append(pairs, [2]io.ReadWriter{a, c})
		conns = append(conns, a, c)
	}
	return pairs, conns
}

func rkcpSmuxPairs(b *testing.B, version, n int) ([][2]io.ReadWriter, func()) {
	c1, c2, err := getTCPConnectionPair()
	if err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Version = version
	srv, err := Server(c2, cfg)
	if err != nil {
		b.Fatal(err)
	}
	cli, err := Client(c1, cfg)
	if err != nil {
		b.Fatal(err)
	}
	var pairs [][2]io.ReadWriter
	for i := 0; i < n; i++ {
		cs, err := cli.OpenStream()
		if err != nil {
			b.Fatal(err)
		}
		ss, err := srv.AcceptStream()
		if err != nil {
			b.Fatal(err)
		}
		pairs = append(pairs, [2]io.ReadWriter{cs, ss})
	}
	return pairs, func() { cli.Close(); srv.Close() }
}

func BenchmarkRkcpOneStreamTCP_RawTCP(b *testing.B) {
	pairs, conns := rkcpTCPPairs(b, 1)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	rkcpRun(b, pairs, 4<<20)
}

func BenchmarkRkcpOneStreamTCP_SmuxV1(b *testing.B) {
	pairs, stop := rkcpSmuxPairs(b, 1, 1)
	defer stop()
	rkcpRun(b, pairs, 4<<20)
}

func BenchmarkRkcpOneStreamTCP_SmuxV2(b *testing.B) {
	pairs, stop := rkcpSmuxPairs(b, 2, 1)
	defer stop()
	rkcpRun(b, pairs, 4<<20)
}

func BenchmarkRkcp64Streams_RawTCP64Conns(b *testing.B) {
	pairs, conns := rkcpTCPPairs(b, 64)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	rkcpRun(b, pairs, 64*1024)
}

func BenchmarkRkcp64Streams_SmuxV1(b *testing.B) {
	pairs, stop := rkcpSmuxPairs(b, 1, 64)
	defer stop()
	rkcpRun(b, pairs, 64*1024)
}

func BenchmarkRkcp64Streams_SmuxV2(b *testing.B) {
	pairs, stop := rkcpSmuxPairs(b, 2, 64)
	defer stop()
	rkcpRun(b, pairs, 64*1024)
}
