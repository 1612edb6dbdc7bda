//! Kernel TCP socket options the benchmark needs: the congestion control algorithm of one socket
//! (`TCP_CONGESTION`, so one run can compare CUBIC and BBR rows without touching the namespace's
//! `net.ipv4.tcp_congestion_control`), and the kernel's RTT figures (`TCP_INFO`: `tcpi_rtt`,
//! `tcpi_min_rtt`) for the queue-delay column. Linux only; elsewhere every call fails with
//! `Unsupported`.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};

/// Where the kernel lists the algorithms a socket may ask for.
pub const AVAILABLE_PATH: &str = "/proc/sys/net/ipv4/tcp_available_congestion_control";

/// The algorithms this kernel offers (loaded or built in), e.g. `["reno", "cubic", "bbr"]`; empty
/// when the list cannot be read.
pub fn available() -> Vec<String> {
    std::fs::read_to_string(AVAILABLE_PATH)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Sets the socket's congestion control algorithm (`setsockopt(IPPROTO_TCP, TCP_CONGESTION)`).
///
/// # Errors
/// The kernel refused: an unknown or unloaded algorithm (the message lists the available ones), or one
/// outside `net.ipv4.tcp_allowed_congestion_control` for a process without `CAP_NET_ADMIN`.
pub fn set_congestion(fd: BorrowedFd<'_>, name: &str) -> anyhow::Result<()> {
    set_congestion_raw(fd, name).map_err(|e| {
        let avail = available();
        let avail = if avail.is_empty() {
            "unknown".to_string()
        } else {
            avail.join(", ")
        };
        let hint = match e.raw_os_error() {
            Some(libc::EPERM) => {
                " (not in net.ipv4.tcp_allowed_congestion_control and no CAP_NET_ADMIN)"
            }
            _ => "",
        };
        anyhow::anyhow!(
            "TCP congestion control {name:?} refused by the kernel: {e}{hint}; available here: {avail}"
        )
    })
}

#[cfg(target_os = "linux")]
fn set_congestion_raw(fd: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    if name.is_empty() || name.len() >= 16 || name.contains('\0') {
        return Err(io::Error::from_raw_os_error(libc::ENOENT));
    }
    // SAFETY: the pointer and length describe `name`'s bytes, alive for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn set_congestion_raw(_fd: BorrowedFd<'_>, _name: &str) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// The socket's congestion control algorithm (`getsockopt(IPPROTO_TCP, TCP_CONGESTION)`).
///
/// # Errors
/// The getsockopt failed (not a TCP socket).
#[cfg(target_os = "linux")]
pub fn congestion(fd: BorrowedFd<'_>) -> io::Result<String> {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 16];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `buf` and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_CONGESTION,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let b = &buf[..(len as usize).min(buf.len())];
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    Ok(String::from_utf8_lossy(&b[..end]).into_owned())
}

/// See the Linux version.
///
/// # Errors
/// Always `Unsupported`.
#[cfg(not(target_os = "linux"))]
pub fn congestion(_fd: BorrowedFd<'_>) -> io::Result<String> {
    Err(io::ErrorKind::Unsupported.into())
}

/// The start of the kernel's `struct tcp_info` (include/uapi/linux/tcp.h) up to `tcpi_min_rtt`; the
/// layout has only ever grown at the end, so older kernels fill less of it (the length says how much).
#[cfg(target_os = "linux")]
#[repr(C)]
#[derive(Default)]
struct TcpInfoPrefix {
    /// state, ca_state, retransmits, probes, backoff, options, wscales, app-limited bit.
    bytes: [u8; 8],
    /// rto, ato, snd_mss, rcv_mss, unacked, sacked, lost, retrans, fackets, last_data_sent,
    /// last_ack_sent, last_data_recv, last_ack_recv, pmtu, rcv_ssthresh.
    before_rtt: [u32; 15],
    rtt: u32,
    rttvar: u32,
    /// snd_ssthresh, snd_cwnd, advmss, reordering, rcv_rtt, rcv_space, total_retrans.
    after_rtt: [u32; 7],
    /// pacing_rate, max_pacing_rate, bytes_acked, bytes_received.
    rates: [u64; 4],
    segs_out: u32,
    segs_in: u32,
    notsent_bytes: u32,
    min_rtt: u32,
}

/// The kernel's view of a TCP connection's round-trip time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpRtt {
    /// Smoothed RTT (`tcpi_rtt`), µs.
    pub srtt_us: u32,
    /// Smallest RTT seen over the kernel's window (`tcpi_min_rtt`, 5 minutes by default), µs; `None`
    /// on kernels before 4.6.
    pub min_rtt_us: Option<u32>,
}

/// Reads `TCP_INFO`'s RTT fields.
///
/// # Errors
/// The getsockopt failed (not a TCP socket).
#[cfg(target_os = "linux")]
pub fn rtt(fd: BorrowedFd<'_>) -> io::Result<TcpRtt> {
    use std::os::fd::AsRawFd;
    let mut info = TcpInfoPrefix::default();
    let mut len = std::mem::size_of::<TcpInfoPrefix>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `info` (plain integers) and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let full = len as usize >= std::mem::size_of::<TcpInfoPrefix>();
    Ok(TcpRtt {
        srtt_us: info.rtt,
        min_rtt_us: (full && info.min_rtt != u32::MAX && info.min_rtt > 0).then_some(info.min_rtt),
    })
}

/// See the Linux version.
///
/// # Errors
/// Always `Unsupported`.
#[cfg(not(target_os = "linux"))]
pub fn rtt(_fd: BorrowedFd<'_>) -> io::Result<TcpRtt> {
    Err(io::ErrorKind::Unsupported.into())
}

/// Checks that `name` can be set on a TCP socket here (a throwaway one), for an early, clear error
/// before any row runs.
///
/// # Errors
/// As [`set_congestion`], or the socket could not be created.
pub fn check(name: &str) -> anyhow::Result<()> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0")
        .or_else(|_| std::net::TcpListener::bind("[::1]:0"))
        .map_err(|e| anyhow::anyhow!("creating a TCP socket to check --tcp-cc {name}: {e}"))?;
    set_congestion(probe.as_fd(), name)
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    #[test]
    fn the_algorithm_reaches_both_sockets() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (a, _) = l.accept().unwrap();
        // reno is always built in and always allowed.
        for s in [c.as_fd(), a.as_fd()] {
            set_congestion(s, "reno").unwrap();
            assert_eq!(congestion(s).unwrap(), "reno");
        }
        if available().iter().any(|n| n == "cubic") {
            set_congestion(c.as_fd(), "cubic").unwrap();
            assert_eq!(congestion(c.as_fd()).unwrap(), "cubic");
        }
        let r = rtt(c.as_fd()).unwrap();
        assert!(r.srtt_us < 1_000_000, "{r:?}");
    }

    #[test]
    fn an_unknown_algorithm_is_a_clear_error() {
        let e = check("nosuchcc").unwrap_err().to_string();
        assert!(
            e.contains("\"nosuchcc\"") && e.contains("available here"),
            "{e}"
        );
        assert!(check("").is_err());
        assert!(check("reno").is_ok());
    }
}
