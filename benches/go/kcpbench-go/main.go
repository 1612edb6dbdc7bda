// kcpbench-go: the kcp-go column of kcpbench. It speaks kcpbench's control and data protocols
// (see /tmp/team/CONTRACT-kcpbench.md, mirrored in benches/src/gopeer.rs) with xtaci/kcp-go and
// xtaci/smux configured the way kcptun configures them, so kcp-go rows are Go↔Go measurements of
// what a kcptun user gets.
//
// Build in GOPATH mode against the Debian packages (golang-github-xtaci-kcp-dev,
// golang-github-xtaci-smux-dev):
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o kcpbench-go ./benches/go/kcpbench-go
//
// Usage:
//
//	kcpbench-go serve --listen ADDR [--stdin-lifetime]
//	kcpbench-go run '<JSON job>'
//
// serve runs the control server and prints "READY <addr>" once listening; run executes one client
// job and prints exactly one JSON result line on stdout.
package main

import (
	"crypto/sha1"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	kcp "github.com/xtaci/kcp-go"
	"github.com/xtaci/smux"
	"golang.org/x/crypto/pbkdf2"
)

// Config is the data-connection configuration of the contract; field names follow kcptun's flags.
type Config struct {
	Transport   string `json:"transport"`
	Mode        string `json:"mode"`
	NoDelay     int    `json:"nodelay"`
	Interval    int    `json:"interval"`
	Resend      int    `json:"resend"`
	NC          int    `json:"nc"`
	SndWnd      int    `json:"sndwnd"`
	RcvWnd      int    `json:"rcvwnd"`
	MTU         int    `json:"mtu"`
	AckNoDelay  bool   `json:"acknodelay"`
	Crypt       string `json:"crypt"`
	Key         string `json:"key"`
	DataShard   int    `json:"datashard"`
	ParityShard int    `json:"parityshard"`
	SmuxVer     int    `json:"smuxver"`
	SmuxBuf     int    `json:"smuxbuf"`
	StreamBuf   int    `json:"streambuf"`
	FrameSize   int    `json:"framesize"`
	KeepAlive   int    `json:"keepalive"`
	SockBuf     int    `json:"sockbuf"` // UDP socket buffers only
	NoComp      bool   `json:"nocomp"`

	block kcp.BlockCrypt
}

// parseConfig applies the contract's defaults, then the given fields, then kcptun's mode presets.
func parseConfig(raw json.RawMessage) (*Config, error) {
	c := &Config{
		Mode:      "fast3",
		Interval:  50, // kcptun's defaults for the manual mode's hidden flags
		SndWnd:    1024,
		RcvWnd:    1024,
		MTU:       1350,
		Crypt:     "none",
		Key:       "it's a secrect",
		SmuxVer:   2,
		SmuxBuf:   4194304,
		StreamBuf: 2097152,
		FrameSize: 32768,
		KeepAlive: 10,
		SockBuf:   4194304,
		NoComp:    true,
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("missing config")
	}
	if err := json.Unmarshal(raw, c); err != nil {
		return nil, fmt.Errorf("bad config: %v", err)
	}
	switch c.Transport {
	case "kcp", "smux-kcp", "tcp", "smux-tcp":
	default:
		return nil, fmt.Errorf("unknown transport %q (kcp, smux-kcp, tcp, smux-tcp)", c.Transport)
	}
	// kcptun server/client main.go: the mode presets override nodelay/interval/resend/nc.
	switch c.Mode {
	case "normal":
		c.NoDelay, c.Interval, c.Resend, c.NC = 0, 40, 2, 1
	case "fast":
		c.NoDelay, c.Interval, c.Resend, c.NC = 0, 30, 2, 1
	case "fast2":
		c.NoDelay, c.Interval, c.Resend, c.NC = 1, 20, 2, 1
	case "fast3":
		c.NoDelay, c.Interval, c.Resend, c.NC = 1, 10, 2, 1
	case "manual":
	default:
		return nil, fmt.Errorf("unknown mode %q", c.Mode)
	}
	if !c.NoComp {
		return nil, fmt.Errorf("compression is not supported by the benchmark (nocomp must be true)")
	}
	if c.SmuxVer != 1 && c.SmuxVer != 2 {
		return nil, fmt.Errorf("unsupported smux version %d", c.SmuxVer)
	}
	if c.DataShard < 0 || c.ParityShard < 0 {
		return nil, fmt.Errorf("negative FEC shard count")
	}
	if c.Transport == "kcp" || c.Transport == "smux-kcp" {
		block, err := blockCrypt(c.Crypt, c.Key)
		if err != nil {
			return nil, err
		}
		c.block = block
	}
	if c.Transport == "smux-kcp" || c.Transport == "smux-tcp" {
		if _, err := c.smuxConfig(); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// blockCrypt builds the cipher exactly as kcptun does: PBKDF2-SHA1 of the key with salt "kcp-go",
// 4096 iterations, 32 bytes, then the per-cipher key prefix. "none" is kcp-go's NoneBlockCrypt,
// which (as in kcptun) still puts the 16-byte nonce+CRC32 header on every packet. Unlike kcptun,
// an unknown name is an error instead of silently meaning aes.
func blockCrypt(name, key string) (kcp.BlockCrypt, error) {
	pass := pbkdf2.Key([]byte(key), []byte("kcp-go"), 4096, 32, sha1.New)
	var block kcp.BlockCrypt
	var err error
	switch name {
	case "sm4":
		block, err = kcp.NewSM4BlockCrypt(pass[:16])
	case "tea":
		block, err = kcp.NewTEABlockCrypt(pass[:16])
	case "xor":
		block, err = kcp.NewSimpleXORBlockCrypt(pass)
	case "none":
		block, err = kcp.NewNoneBlockCrypt(pass)
	case "plain":
		// No packet layer at all (a nil BlockCrypt): not a kcptun name, the rkcp default.
		return nil, nil
	case "aes-128":
		block, err = kcp.NewAESBlockCrypt(pass[:16])
	case "aes-192":
		block, err = kcp.NewAESBlockCrypt(pass[:24])
	case "blowfish":
		block, err = kcp.NewBlowfishBlockCrypt(pass)
	case "twofish":
		block, err = kcp.NewTwofishBlockCrypt(pass)
	case "cast5":
		block, err = kcp.NewCast5BlockCrypt(pass[:16])
	case "3des":
		block, err = kcp.NewTripleDESBlockCrypt(pass[:24])
	case "xtea":
		block, err = kcp.NewXTEABlockCrypt(pass[:16])
	case "salsa20":
		block, err = kcp.NewSalsa20BlockCrypt(pass)
	case "aes":
		block, err = kcp.NewAESBlockCrypt(pass)
	default:
		return nil, fmt.Errorf("unknown crypt %q", name)
	}
	if err != nil {
		return nil, fmt.Errorf("crypt %s: %v", name, err)
	}
	return block, nil
}

// smuxConfig is kcptun's smux configuration plus the frame size.
func (c *Config) smuxConfig() (*smux.Config, error) {
	sc := smux.DefaultConfig()
	sc.Version = c.SmuxVer
	sc.MaxReceiveBuffer = c.SmuxBuf
	sc.MaxStreamBuffer = c.StreamBuf
	sc.MaxFrameSize = c.FrameSize
	if c.KeepAlive > 0 {
		sc.KeepAliveInterval = time.Duration(c.KeepAlive) * time.Second
		if sc.KeepAliveTimeout < sc.KeepAliveInterval {
			sc.KeepAliveTimeout = 3 * sc.KeepAliveInterval
		}
	} else {
		sc.KeepAliveDisabled = true
	}
	if err := smux.VerifyConfig(sc); err != nil {
		return nil, fmt.Errorf("smux config: %v", err)
	}
	return sc, nil
}

// tuneKCP sets a session up as kcptun's server and client do.
func (c *Config) tuneKCP(s *kcp.UDPSession) {
	s.SetStreamMode(true)
	s.SetWriteDelay(false)
	s.SetNoDelay(c.NoDelay, c.Interval, c.Resend, c.NC)
	s.SetMtu(c.MTU)
	s.SetWindowSize(c.SndWnd, c.RcvWnd)
	s.SetACKNoDelay(c.AckNoDelay)
}

// idleConn gives a raw KCP session (which has no close handshake) an idle timeout, so the server
// notices clients that went away. The deadline is pushed forward at most once a second: setting it
// on every read (one KCP segment each) would add a lock and a wake-up per segment.
type idleConn struct {
	*kcp.UDPSession
	idle    time.Duration
	renewed time.Time
}

func (c *idleConn) Read(b []byte) (int, error) {
	if now := time.Now(); now.Sub(c.renewed) > time.Second {
		c.renewed = now
		c.UDPSession.SetReadDeadline(now.Add(c.idle))
	}
	return c.UDPSession.Read(b)
}

// rawKCPIdle is how long a raw KCP data session may stay silent before the server drops it
// (smux's default keep-alive timeout).
const rawKCPIdle = 30 * time.Second

func usage() {
	fmt.Fprintf(os.Stderr, "usage:\n  %s serve --listen ADDR [--stdin-lifetime]\n  %s run '<JSON job>'\n", os.Args[0], os.Args[0])
	os.Exit(2)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ExitOnError)
		listen := fs.String("listen", "127.0.0.1:0", "control address (TCP)")
		stdinLifetime := fs.Bool("stdin-lifetime", false, "exit when stdin is closed")
		fs.Parse(os.Args[2:])
		if *stdinLifetime {
			go func() {
				io.Copy(io.Discard, os.Stdin)
				os.Exit(0)
			}()
		}
		if err := serve(*listen); err != nil {
			fmt.Fprintf(os.Stderr, "kcpbench-go serve: %v\n", err)
			os.Exit(1)
		}
	case "run":
		if len(os.Args) != 3 {
			usage()
		}
		res := runJob([]byte(os.Args[2]))
		out, err := json.Marshal(res)
		if err != nil {
			out = []byte(fmt.Sprintf(`{"ok":false,"error":%q}`, err.Error()))
		}
		os.Stdout.Write(append(out, '\n'))
		os.Exit(0)
	default:
		usage()
	}
}

// dataAddr is an ephemeral port on the IP the control connection arrived on.
func dataAddr(ctrl net.Conn) string {
	if a, ok := ctrl.LocalAddr().(*net.TCPAddr); ok {
		return net.JoinHostPort(a.IP.String(), "0")
	}
	return "127.0.0.1:0"
}
