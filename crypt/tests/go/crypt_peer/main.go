// crypt_peer: the Go side of crypt's interop test. It builds kcp-go's BlockCrypt exactly as
// kcptun's main.go does and applies kcp-go's per-datagram header (sess.go: 16-byte nonce,
// little-endian CRC32-IEEE of the rest, whole datagram encrypted).
//
// Usage: crypt_peer <passphrase>, then lines on stdin:
//   seal <cipher> <hex payload>   -> prints the hex datagram
//   open <cipher> <hex datagram>  -> prints the hex payload, or "ERR short" / "ERR csum"
// Build: GOPATH=/usr/share/gocode GO111MODULE=off go build -o crypt_peer ./main.go
package main

import (
	"bufio"
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/crc32"
	"os"
	"strings"

	kcp "github.com/xtaci/kcp-go"
	"golang.org/x/crypto/pbkdf2"
)

func blockCrypt(name string, pass []byte) kcp.BlockCrypt {
	var b kcp.BlockCrypt
	switch name {
	case "sm4":
		b, _ = kcp.NewSM4BlockCrypt(pass[:16])
	case "tea":
		b, _ = kcp.NewTEABlockCrypt(pass[:16])
	case "xor":
		b, _ = kcp.NewSimpleXORBlockCrypt(pass)
	case "none":
		b, _ = kcp.NewNoneBlockCrypt(pass)
	case "aes-128":
		b, _ = kcp.NewAESBlockCrypt(pass[:16])
	case "aes-192":
		b, _ = kcp.NewAESBlockCrypt(pass[:24])
	case "blowfish":
		b, _ = kcp.NewBlowfishBlockCrypt(pass)
	case "twofish":
		b, _ = kcp.NewTwofishBlockCrypt(pass)
	case "cast5":
		b, _ = kcp.NewCast5BlockCrypt(pass[:16])
	case "3des":
		b, _ = kcp.NewTripleDESBlockCrypt(pass[:24])
	case "xtea":
		b, _ = kcp.NewXTEABlockCrypt(pass[:16])
	case "salsa20":
		b, _ = kcp.NewSalsa20BlockCrypt(pass)
	default:
		b, _ = kcp.NewAESBlockCrypt(pass)
	}
	return b
}

func main() {
	pass := pbkdf2.Key([]byte(os.Args[1]), []byte("kcp-go"), 4096, 32, sha1.New)
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) < 2 {
			continue
		}
		data := []byte{}
		if len(f) > 2 {
			var err error
			if data, err = hex.DecodeString(f[2]); err != nil {
				fmt.Fprintln(out, "ERR hex")
				continue
			}
		}
		bc := blockCrypt(f[1], pass)
		switch f[0] {
		case "seal":
			buf := make([]byte, 20+len(data))
			copy(buf[20:], data)
			rand.Read(buf[:16])
			binary.LittleEndian.PutUint32(buf[16:], crc32.ChecksumIEEE(buf[20:]))
			bc.Encrypt(buf, buf)
			fmt.Fprintln(out, hex.EncodeToString(buf))
		case "open":
			if len(data) < 20 {
				fmt.Fprintln(out, "ERR short")
				continue
			}
			bc.Decrypt(data, data)
			if crc32.ChecksumIEEE(data[20:]) != binary.LittleEndian.Uint32(data[16:]) {
				fmt.Fprintln(out, "ERR csum")
				continue
			}
			fmt.Fprintln(out, hex.EncodeToString(data[20:]))
		}
		out.Flush()
	}
}
