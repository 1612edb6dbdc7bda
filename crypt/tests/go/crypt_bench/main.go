// crypt_bench: kcp-go's own benchCrypt loop (crypt_test.go: Encrypt then Decrypt of 1500 bytes,
// counted as 3000 bytes) for every kcptun cipher, best of 15 rounds of 40 ms, in bytes per second
// of this thread's CPU time (/proc/thread-self/schedstat), so that time spent descheduled on a
// loaded machine does not count. Pairs with
// `cargo run --release -p rkcp-crypt --example best_of`, which runs the identical loop in Rust.
// Build: GOPATH=/usr/share/gocode GO111MODULE=off go build -o crypt_bench ./main.go
package main

import (
	"crypto/sha1"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	kcp "github.com/xtaci/kcp-go"
	"golang.org/x/crypto/pbkdf2"
)

func threadCPU() int64 {
	b, err := os.ReadFile("/proc/thread-self/schedstat")
	if err != nil {
		return -1
	}
	v, err := strconv.ParseInt(strings.Fields(string(b))[0], 10, 64)
	if err != nil {
		return -1
	}
	return v
}

func main() {
	runtime.LockOSThread()
	pass := pbkdf2.Key([]byte("it's a secrect"), []byte("kcp-go"), 4096, 32, sha1.New)
	type entry struct {
		name string
		bc   kcp.BlockCrypt
	}
	mk := func(b kcp.BlockCrypt, _ error) kcp.BlockCrypt { return b }
	all := []entry{
		{"aes", mk(kcp.NewAESBlockCrypt(pass))},
		{"aes-128", mk(kcp.NewAESBlockCrypt(pass[:16]))},
		{"aes-192", mk(kcp.NewAESBlockCrypt(pass[:24]))},
		{"salsa20", mk(kcp.NewSalsa20BlockCrypt(pass))},
		{"blowfish", mk(kcp.NewBlowfishBlockCrypt(pass))},
		{"twofish", mk(kcp.NewTwofishBlockCrypt(pass))},
		{"cast5", mk(kcp.NewCast5BlockCrypt(pass[:16]))},
		{"3des", mk(kcp.NewTripleDESBlockCrypt(pass[:24]))},
		{"tea", mk(kcp.NewTEABlockCrypt(pass[:16]))},
		{"xtea", mk(kcp.NewXTEABlockCrypt(pass[:16]))},
		{"sm4", mk(kcp.NewSM4BlockCrypt(pass[:16]))},
		{"xor", mk(kcp.NewSimpleXORBlockCrypt(pass))},
		{"none", mk(kcp.NewNoneBlockCrypt(pass))},
	}
	data := make([]byte, 1500)
	for i := range data {
		data[i] = byte(i*131 + 7)
	}
	enc := make([]byte, 1500)
	dec := make([]byte, 1500)
	for _, e := range all {
		best := 0.0
		for round := 0; round < 15; round++ {
			n := 0
			start := time.Now()
			cpu0 := threadCPU()
			for time.Since(start) < 40*time.Millisecond {
				for i := 0; i < 16; i++ {
					e.bc.Encrypt(enc, data)
					e.bc.Decrypt(dec, enc)
				}
				n += 16
			}
			secs := time.Since(start).Seconds()
			if cpu1 := threadCPU(); cpu0 >= 0 && cpu1 > cpu0 {
				secs = float64(cpu1-cpu0) / 1e9
			}
			mbs := float64(n*3000) / secs / 1e6
			if mbs > best {
				best = mbs
			}
		}
		fmt.Printf("%-10s %10.1f MB/s\n", e.name, best)
	}
}
