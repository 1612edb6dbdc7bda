//! Batched UDP IO: `recvmmsg`/`sendmmsg` on Linux (PROTOCOL.md B.9), with a portable fallback to one
//! `recv_from`/`send_to` per datagram (used on other systems, and on Linux if the kernel refuses the batch calls).
//!
//! Batching affects performance only, never the wire.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::UdpSocket;

/// Largest datagram we read, as kcp-go's 1500-byte read buffers: anything longer is truncated, so its CRC (or
/// its KCP framing) fails and it is counted as bad input (PROTOCOL.md B.11).
pub(crate) const MAX_DATAGRAM: usize = 1500;

/// Datagrams read or written per system call.
pub(crate) const BATCH: usize = 32;

/// Datagrams queued for one destination, stored back to back in one reusable buffer (no allocation per packet
/// once the buffer has grown to the session's usual burst).
#[derive(Debug, Default)]
pub(crate) struct TxQueue {
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl TxQueue {
    /// Appends a zeroed datagram of `len` bytes and returns it for filling.
    pub(crate) fn push(&mut self, len: usize) -> &mut [u8] {
        let start = self.data.len();
        self.data.resize(start + len, 0);
        self.ends.push(start + len);
        &mut self.data[start..]
    }

    /// Number of queued datagrams.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Datagram `i`.
    pub(crate) fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }

    /// Datagram `i`, mutable (sealing works in place).
    pub(crate) fn get_mut(&mut self, i: usize) -> &mut [u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &mut self.data[start..self.ends[i]]
    }

    /// Forgets the first `n` datagrams (those already sent).
    pub(crate) fn consume(&mut self, n: usize) {
        if n >= self.ends.len() {
            self.data.clear();
            self.ends.clear();
            return;
        }
        if n == 0 {
            return;
        }
        let cut = self.ends[n - 1];
        self.data.drain(..cut);
        self.ends.drain(..n);
        for e in &mut self.ends {
            *e -= cut;
        }
    }

    /// Drops everything queued.
    pub(crate) fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
    }
}

/// Receive buffers for one batch: `BATCH` slots of [`MAX_DATAGRAM`] bytes plus their lengths and sources.
pub(crate) struct RecvBatch {
    bufs: Vec<u8>,
    lens: [usize; BATCH],
    addrs: [SocketAddr; BATCH],
    n: usize,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch").field("n", &self.n).finish()
    }
}

impl Default for RecvBatch {
    fn default() -> Self {
        RecvBatch {
            bufs: vec![0; BATCH * MAX_DATAGRAM],
            lens: [0; BATCH],
            addrs: [SocketAddr::from(([0, 0, 0, 0], 0)); BATCH],
            n: 0,
        }
    }
}

impl RecvBatch {
    /// Datagram `i` (mutable: decryption works in place) and its source.
    pub(crate) fn get_mut(&mut self, i: usize) -> (&mut [u8], SocketAddr) {
        let start = i * MAX_DATAGRAM;
        let len = self.lens[i].min(MAX_DATAGRAM);
        (&mut self.bufs[start..start + len], self.addrs[i])
    }
}

/// A UDP socket with batch send and receive.
#[derive(Debug)]
pub(crate) struct UdpIo {
    sock: UdpSocket,
    /// Cleared for good the first time the kernel refuses `recvmmsg`/`sendmmsg` (as kcp-go does).
    batch_ok: AtomicBool,
}

impl UdpIo {
    pub(crate) fn new(sock: UdpSocket) -> Self {
        UdpIo {
            sock,
            batch_ok: AtomicBool::new(cfg!(target_os = "linux")),
        }
    }

    pub(crate) fn socket(&self) -> &UdpSocket {
        &self.sock
    }

    /// Waits for at least one datagram and reads as many as are ready (up to [`BATCH`]).
    ///
    /// Cancel safe: datagrams are only consumed inside the final non-blocking read.
    pub(crate) async fn recv_batch(&self, b: &mut RecvBatch) -> io::Result<usize> {
        loop {
            b.n = 0;
            #[cfg(target_os = "linux")]
            if self.batch_ok.load(Ordering::Relaxed) {
                let r = self
                    .sock
                    .async_io(tokio::io::Interest::READABLE, || {
                        linux::recvmmsg(&self.sock, b)
                    })
                    .await;
                match r {
                    Ok(n) => {
                        b.n = n;
                        return Ok(n);
                    }
                    Err(e) if linux::unsupported(&e) => {
                        self.batch_ok.store(false, Ordering::Relaxed);
                    }
                    Err(e) => return Err(e),
                }
                continue;
            }
            // Portable path: wait for one datagram, then drain whatever else is ready without blocking.
            let (len, addr) = self.sock.recv_from(&mut b.bufs[..MAX_DATAGRAM]).await?;
            b.lens[0] = len;
            b.addrs[0] = addr;
            b.n = 1;
            while b.n < BATCH {
                let start = b.n * MAX_DATAGRAM;
                match self
                    .sock
                    .try_recv_from(&mut b.bufs[start..start + MAX_DATAGRAM])
                {
                    Ok((len, addr)) => {
                        b.lens[b.n] = len;
                        b.addrs[b.n] = addr;
                        b.n += 1;
                    }
                    Err(_) => break,
                }
            }
            return Ok(b.n);
        }
    }

    /// Sends queued datagrams to `to` without blocking. Returns how many left; `Ok(0)` with datagrams queued
    /// means the socket buffer is full right now.
    pub(crate) fn send_batch(&self, to: SocketAddr, q: &TxQueue) -> io::Result<usize> {
        let mut sent = 0;
        #[cfg(target_os = "linux")]
        if self.batch_ok.load(Ordering::Relaxed) {
            while sent < q.len() {
                match linux::sendmmsg(&self.sock, to, q, sent) {
                    Ok(0) => return Ok(sent),
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(sent),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if linux::unsupported(&e) => {
                        self.batch_ok.store(false, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => return if sent > 0 { Ok(sent) } else { Err(e) },
                }
            }
            if sent == q.len() {
                return Ok(sent);
            }
        }
        while sent < q.len() {
            match self.sock.try_send_to(q.get(sent), to) {
                Ok(_) => sent += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(sent),
                Err(e) => return if sent > 0 { Ok(sent) } else { Err(e) },
            }
        }
        Ok(sent)
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::mem::{size_of, zeroed};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::AsRawFd;

    use tokio::net::UdpSocket;

    use super::{BATCH, MAX_DATAGRAM, RecvBatch, TxQueue};

    /// The kernel or a seccomp filter refuses the batch calls: switch to the portable path for good.
    pub(super) fn unsupported(e: &io::Error) -> bool {
        matches!(
            e.raw_os_error(),
            Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) | Some(libc::EPERM)
        )
    }

    pub(super) fn sockaddr_from(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
        let mut storage: libc::sockaddr_storage = unsafe { zeroed() };
        let len = match addr {
            SocketAddr::V4(a) => {
                // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in.
                let sin = unsafe {
                    &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
                };
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr = libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                };
                size_of::<libc::sockaddr_in>()
            }
            SocketAddr::V6(a) => {
                // SAFETY: sockaddr_storage is larger than and suitably aligned for sockaddr_in6.
                let sin6 = unsafe {
                    &mut *(&mut storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
                };
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr = libc::in6_addr {
                    s6_addr: a.ip().octets(),
                };
                sin6.sin6_flowinfo = a.flowinfo();
                sin6.sin6_scope_id = a.scope_id();
                size_of::<libc::sockaddr_in6>()
            }
        };
        (storage, len as libc::socklen_t)
    }

    fn sockaddr_to(storage: &libc::sockaddr_storage) -> SocketAddr {
        match storage.ss_family as libc::c_int {
            libc::AF_INET6 => {
                // SAFETY: the kernel wrote a sockaddr_in6 (family AF_INET6) into this storage.
                let sin6 = unsafe {
                    &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
                };
                SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(sin6.sin6_addr.s6_addr),
                    u16::from_be(sin6.sin6_port),
                    sin6.sin6_flowinfo,
                    sin6.sin6_scope_id,
                ))
            }
            libc::AF_INET => {
                // SAFETY: the kernel wrote a sockaddr_in (family AF_INET) into this storage.
                let sin = unsafe {
                    &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()
                };
                SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes()),
                    u16::from_be(sin.sin_port),
                ))
            }
            _ => SocketAddr::from(([0, 0, 0, 0], 0)),
        }
    }

    pub(super) fn recvmmsg(sock: &UdpSocket, b: &mut RecvBatch) -> io::Result<usize> {
        // SAFETY: these are plain C structs for which all-zero is valid; every pointer is set below.
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let base = b.bufs.as_mut_ptr();
        for i in 0..BATCH {
            // SAFETY: bufs holds BATCH * MAX_DATAGRAM bytes, so slot i is in bounds.
            iovs[i].iov_base = unsafe { base.add(i * MAX_DATAGRAM) }.cast();
            iovs[i].iov_len = MAX_DATAGRAM;
            msgs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: msgs/iovs/names live on this stack frame for the whole call and point into b.bufs, which is
        // borrowed mutably; the kernel writes at most iov_len bytes per slot and msg_namelen per name.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for i in 0..n {
            b.lens[i] = (msgs[i].msg_len as usize).min(MAX_DATAGRAM);
            b.addrs[i] = sockaddr_to(&names[i]);
        }
        Ok(n)
    }

    pub(super) fn sendmmsg(
        sock: &UdpSocket,
        to: SocketAddr,
        q: &TxQueue,
        from: usize,
    ) -> io::Result<usize> {
        let (mut name, namelen) = sockaddr_from(to);
        // SAFETY: plain C structs, all-zero is valid; pointers are set below.
        let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let count = (q.len() - from).min(BATCH);
        for i in 0..count {
            let pkt = q.get(from + i);
            iovs[i].iov_base = pkt.as_ptr() as *mut libc::c_void;
            iovs[i].iov_len = pkt.len();
            msgs[i].msg_hdr.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
            msgs[i].msg_hdr.msg_namelen = namelen;
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: every pointer refers to this frame's arrays or to q's buffer, which outlive the call; the
        // kernel only reads the datagrams and the address.
        let n = unsafe {
            libc::sendmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn sockaddr_roundtrip() {
            for a in ["127.0.0.1:4000", "[::1]:5000", "[fe80::1%3]:9"] {
                let a: SocketAddr = a.parse().unwrap();
                let (s, _) = sockaddr_from(a);
                assert_eq!(sockaddr_to(&s), a);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txqueue_consume() {
        let mut q = TxQueue::default();
        q.push(3).copy_from_slice(b"abc");
        q.push(2).copy_from_slice(b"de");
        q.push(1).copy_from_slice(b"f");
        assert_eq!(q.len(), 3);
        q.consume(1);
        assert_eq!(q.get(0), b"de");
        assert_eq!(q.get(1), b"f");
        q.consume(5);
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn batch_roundtrip_over_loopback() {
        let a = UdpIo::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let b = UdpIo::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let mut q = TxQueue::default();
        for i in 0..50u8 {
            q.push(10 + i as usize).fill(i);
        }
        let to = b.socket().local_addr().unwrap();
        let mut sent = 0;
        while sent < q.len() {
            sent += a.send_batch(to, &q).unwrap();
            q.consume(sent);
            let left = q.len();
            if left == 0 {
                break;
            }
            sent = 0;
        }
        let mut got = 0u8;
        let mut rb = RecvBatch::default();
        while got < 50 {
            let n = b.recv_batch(&mut rb).await.unwrap();
            for i in 0..n {
                let (pkt, from) = rb.get_mut(i);
                assert_eq!(from, a.socket().local_addr().unwrap());
                assert_eq!(pkt.len(), 10 + got as usize);
                assert!(pkt.iter().all(|&x| x == got));
                got += 1;
            }
        }
    }
}
