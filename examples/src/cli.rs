//! What every program in this crate does the same way on its command line: error reports that name each cause
//! once, logging, listening on Go's `:port` (dual-stack), and resolving host names.

use std::error::Error;
use std::fmt;
use std::io::{self, IsTerminal};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::process::ExitCode;

/// Displays an error and its `source()` chain as `outer: cause: root`, leaving out every cause whose text is
/// already part of what was printed (an error type that repeats its source in its own message would otherwise
/// show the same words twice, once from its message and once from the chain).
#[derive(Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(c) = cause {
            let text = c.to_string();
            if !text.is_empty() && !out.contains(&text) {
                out.push_str(": ");
                out.push_str(&text);
            }
            cause = c.source();
        }
        f.write_str(&out)
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `err` and its causes on one line, each cause once (see [`Chain`]).
pub fn report(err: &anyhow::Error) -> String {
    Chain(err.as_ref()).to_string()
}

/// Prints `prog: <report>` to stderr once and returns the failure exit code. When the program logs to a file
/// (`logs_to_file`), the error is also logged there, so the file tells the whole story; logging to stderr it is
/// not, so the terminal shows it once.
pub fn fail(prog: &str, err: &anyhow::Error, logs_to_file: bool) -> ExitCode {
    let text = report(err);
    if logs_to_file {
        tracing::error!("{text}");
    }
    eprintln!("{prog}: {text}");
    ExitCode::FAILURE
}

/// Sets up logging: append to `path`, or stderr when `path` is empty. Colours only when that stderr is a
/// terminal (never in a file, a pipe or a journal). `RUST_LOG` refines the level (default `info`).
///
/// # Errors
/// The log file cannot be opened.
pub fn init_logging(path: &str) -> anyhow::Result<()> {
    init_logging_at(path, "info")
}

/// [`init_logging`] to stderr for the programs whose `--quiet` means "warnings and errors only": their
/// per-session and per-stream lines are `info`, what they print at startup goes to stdout.
pub fn init_stderr_logging(quiet: bool) {
    // Logging to stderr cannot fail (no file to open).
    let _ = init_logging_at("", if quiet { "warn" } else { "info" });
}

fn init_logging_at(path: &str, default_level: &str) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if path.is_empty() {
        let _ = builder
            .with_ansi(io::stderr().is_terminal())
            .with_writer(io::stderr)
            .try_init();
    } else {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| anyhow::anyhow!("opening log file {path}: {e}"))?;
        let _ = builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(f))
            .try_init();
    }
    Ok(())
}

/// The port of Go's `":port"` (every interface), or `None` for any other address.
fn any_port(addr: &str) -> Option<anyhow::Result<u16>> {
    let port = addr.strip_prefix(':')?;
    Some(
        port.parse::<u16>()
            .map_err(|_| anyhow::anyhow!("invalid port in {addr:?}")),
    )
}

/// Resolves `addr` (`host:port`, `[v6]:port`, or Go's `:port` meaning this host) for dialling. Of several
/// addresses the first IPv4 one wins, as Go's `net.ResolveUDPAddr` picks it (kcp-go `DialWithOptions`), else the
/// first one.
///
/// # Errors
/// The name does not resolve, or resolves to nothing; the message names `flag`.
pub async fn resolve(flag: &str, addr: &str) -> anyhow::Result<SocketAddr> {
    let target = if addr.starts_with(':') {
        format!("127.0.0.1{addr}")
    } else {
        addr.to_string()
    };
    let all: Vec<SocketAddr> = tokio::net::lookup_host(target.as_str())
        .await
        .map_err(|e| anyhow::anyhow!("{flag} {addr}: cannot resolve: {e}"))?
        .collect();
    pick(&all).ok_or_else(|| anyhow::anyhow!("{flag} {addr} resolved to no address"))
}

fn pick(all: &[SocketAddr]) -> Option<SocketAddr> {
    all.iter()
        .find(|a| a.is_ipv4())
        .or_else(|| all.first())
        .copied()
}

/// Binds a UDP socket for a listener. Go's `:port` listens on every interface, IPv4 and IPv6 alike (one
/// `[::]` socket with `IPV6_V6ONLY` off, as Go's `net.ListenUDP` does), falling back to `0.0.0.0` on a host
/// without IPv6. Any other address is resolved and bound as given.
///
/// # Errors
/// An invalid address or the bind error, naming the address.
pub fn bind_udp(addr: &str) -> anyhow::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    if let Some(port) = any_port(addr) {
        let port = port?;
        let dual = (|| {
            let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
            s.set_only_v6(false)?;
            s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
            io::Result::Ok(std::net::UdpSocket::from(s))
        })();
        return match dual {
            Ok(s) => Ok(s),
            Err(_) => std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))
                .map_err(|e| anyhow::anyhow!("listening on {addr} (UDP): {e}")),
        };
    }
    let addrs = to_addrs(addr)?;
    std::net::UdpSocket::bind(&addrs[..])
        .map_err(|e| anyhow::anyhow!("listening on {addr} (UDP): {e}"))
}

/// Binds a TCP listener the way [`bind_udp`] binds UDP (`:port` is dual-stack). Must be called inside a tokio
/// runtime.
///
/// # Errors
/// An invalid address or the bind/listen error, naming the address.
pub fn bind_tcp(addr: &str) -> anyhow::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let listen =
        |domain: Domain, at: SocketAddr, dual: bool| -> io::Result<std::net::TcpListener> {
            let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
            if dual {
                s.set_only_v6(false)?;
            }
            s.set_reuse_address(true)?;
            s.bind(&at.into())?;
            s.listen(1024)?;
            s.set_nonblocking(true)?;
            Ok(s.into())
        };
    let std_listener = if let Some(port) = any_port(addr) {
        let port = port?;
        listen(
            Domain::IPV6,
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
            true,
        )
        .or_else(|_| {
            listen(
                Domain::IPV4,
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
                false,
            )
        })
    } else {
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address");
        let mut bound = None;
        for a in to_addrs(addr)? {
            match listen(Domain::for_address(a), a, false) {
                Ok(l) => {
                    bound = Some(l);
                    break;
                }
                Err(e) => last = e,
            }
        }
        bound.ok_or(last)
    }
    .map_err(|e| anyhow::anyhow!("listening on {addr} (TCP): {e}"))?;
    tokio::net::TcpListener::from_std(std_listener)
        .map_err(|e| anyhow::anyhow!("listening on {addr} (TCP): {e}"))
}

fn to_addrs(addr: &str) -> anyhow::Result<Vec<SocketAddr>> {
    let all: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("listen address {addr}: {e}"))?
        .collect();
    if all.is_empty() {
        anyhow::bail!("listen address {addr} resolved to no address");
    }
    Ok(all)
}

/// How to print a bound address for a person to copy: `[::]:p` and `0.0.0.0:p` become
/// `[::]:p (every interface, e.g. 127.0.0.1:p)`, since nobody can dial the unspecified address.
pub fn describe_bound(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        format!(
            "{addr} (every interface, e.g. {})",
            SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
        )
    } else {
        addr.to_string()
    }
}

/// What SIGUSR1 does, for the `--help` of the programs that run [`crate::tunnel::shutdown_signal`].
pub const SIGNALS_HELP: &str = "Signals:\n  SIGINT, SIGTERM  stop cleanly (sessions are closed, pending data flushed)\n  \
     SIGUSR1          log the process-wide KCP counters (kcp-go's SNMP set: BytesSent, \
     RetransSegs, …) at info level, e.g. `kill -USR1 $(pidof PROGRAM)`";

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that repeats its source in its own message, as `#[error("x: {0}")] X(#[from] E)` does.
    #[derive(Debug)]
    struct Repeats(io::Error);
    impl fmt::Display for Repeats {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "UDP socket error: {}", self.0)
        }
    }
    impl Error for Repeats {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn each_cause_is_printed_once() {
        let root =
            io::Error::other("failed to lookup address information: Name or service not known");
        let e = anyhow::Error::new(Repeats(root)).context("dialing vps:29900");
        // What `{:#}` prints today: the root cause twice.
        assert_eq!(format!("{e:#}").matches("failed to lookup").count(), 2);
        let r = report(&e);
        assert_eq!(
            r,
            "dialing vps:29900: UDP socket error: failed to lookup address information: Name or service not known"
        );
        // A chain whose members say different things keeps all of them.
        let e = anyhow::anyhow!("root").context("middle").context("outer");
        assert_eq!(report(&e), "outer: middle: root");
    }

    #[test]
    fn ipv4_first_as_go_resolves() {
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        let v4: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(pick(&[v6, v4]), Some(v4));
        assert_eq!(pick(&[v6]), Some(v6));
        assert_eq!(pick(&[]), None);
    }

    #[tokio::test]
    async fn host_names_resolve() {
        let a = resolve("--target", "localhost:80").await.unwrap();
        assert!(a.ip().is_loopback() && a.port() == 80, "{a}");
        assert_eq!(
            resolve("-r", ":29900").await.unwrap(),
            "127.0.0.1:29900".parse().unwrap()
        );
        let e = resolve("--relay", "no-such-host.invalid:1")
            .await
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("--relay no-such-host.invalid:1"), "{e}");
    }

    #[test]
    fn colon_port_listens_on_ipv4_and_ipv6() {
        let sock = bind_udp(":0").unwrap();
        let local = sock.local_addr().unwrap();
        if !local.is_ipv6() {
            eprintln!("no IPv6 on this host: only the IPv4 fallback was checked");
            return;
        }
        assert!(local.ip().is_unspecified(), "{local}");
        sock.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let port = local.port();
        let v4 = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        v4.send_to(b"four", ("127.0.0.1", port)).unwrap();
        let v6 = std::net::UdpSocket::bind("[::1]:0").unwrap();
        v6.send_to(b"six", ("::1", port)).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        for _ in 0..2 {
            let (n, from) = sock.recv_from(&mut buf).unwrap();
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            // Go prints IPv4 peers of a dual-stack socket as IPv4-mapped IPv6, and so do we.
            assert!(from.is_ipv6(), "{from}");
        }
        got.sort();
        assert_eq!(got, ["four", "six"]);
    }

    #[tokio::test]
    async fn colon_port_tcp_accepts_ipv4_and_ipv6() {
        let l = bind_tcp(":0").unwrap();
        let port = l.local_addr().unwrap().port();
        if l.local_addr().unwrap().is_ipv4() {
            eprintln!("no IPv6 on this host: only the IPv4 fallback was checked");
            return;
        }
        for dial in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
            let c = tokio::net::TcpStream::connect(dial.as_str()).await;
            assert!(c.is_ok(), "connect {dial}: {c:?}");
            l.accept().await.unwrap();
        }
        // Explicit addresses are bound as given.
        let l = bind_tcp("127.0.0.1:0").unwrap();
        assert!(l.local_addr().unwrap().is_ipv4());
        assert!(bind_udp("no-such-host.invalid:1").is_err());
    }

    #[test]
    fn unspecified_addresses_are_described_with_a_dialable_one() {
        assert_eq!(
            describe_bound("0.0.0.0:29950".parse().unwrap()),
            "0.0.0.0:29950 (every interface, e.g. 127.0.0.1:29950)"
        );
        assert_eq!(
            describe_bound("[::]:1".parse().unwrap()),
            "[::]:1 (every interface, e.g. 127.0.0.1:1)"
        );
        assert_eq!(describe_bound("10.0.0.1:5".parse().unwrap()), "10.0.0.1:5");
    }
}
