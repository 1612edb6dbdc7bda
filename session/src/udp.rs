//! Batched UDP IO: `recvmmsg`/`sendmmsg` on Linux (docs/wire-format.md#session-batch-io), with a portable fallback to one
//! `recv_from`/`send_to` per datagram (used on other systems, and on Linux if the kernel refuses the batch calls).
//!
//! On Linux the batches also use UDP segmentation offload where the kernel has it: a run of equal-size datagrams
//! queued back to back for one peer goes down as one `sendmmsg` message with a `UDP_SEGMENT` size (GSO), and a
//! listener's socket asks for `UDP_GRO`, so datagrams of one burst come up coalesced and are split here by the
//! size the kernel reports. The kernel cuts GSO sends into the very datagrams we queued (and hands them
//! one by one to a socket without GRO), so this too changes the number of system calls and wakeups, never the
//! wire. If the kernel refuses either (old kernel, a device without checksum offload: `EIO`/`EINVAL`), it is
//! switched off for that socket and the plain batches carry on.
//!
//! Batching affects performance only, never the wire.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::UdpSocket;

/// Largest datagram we read, as kcp-go's 1500-byte read buffers: anything longer is truncated, so its CRC (or
/// its KCP framing) fails and it is counted as bad input (docs/wire-format.md#session-bad-input).
pub(crate) const MAX_DATAGRAM: usize = 1500;

/// Datagrams read or written per system call.
pub(crate) const BATCH: usize = 32;

/// Receive slots of a GRO batch: each holds up to [`GRO_SLOT`] bytes of coalesced datagrams.
const GRO_SLOTS: usize = 16;

/// A coalesced GRO read is at most one maximal UDP payload.
const GRO_SLOT: usize = 65536;

/// Most datagrams in one GSO send (the kernel's `UDP_MAX_SEGMENTS` on every kernel that has GSO).
const GSO_MAX_SEGMENTS: usize = 64;

/// Most payload bytes in one GSO send: a maximal IPv4 UDP payload (65535 − 20 − 8).
const GSO_MAX_BYTES: usize = 65507;

/// Length of the run of datagrams starting at `from` that can go as one GSO send: all `seg` bytes long (the
/// first one's length), except that the last may be shorter, at most [`GSO_MAX_SEGMENTS`] and
/// [`GSO_MAX_BYTES`] in all. Returns (datagrams, bytes). Always at least one datagram when `from` is in range.
pub(crate) fn gso_run(q: &TxQueue, from: usize) -> (usize, usize) {
    let seg = q.get(from).len();
    let mut count = 1;
    let mut bytes = seg;
    while from + count < q.len() && count < GSO_MAX_SEGMENTS {
        let l = q.get(from + count).len();
        if l > seg || l == 0 || bytes + l > GSO_MAX_BYTES {
            break;
        }
        count += 1;
        bytes += l;
        if l < seg {
            break;
        }
    }
    (count, bytes)
}

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

    /// Gives the buffers back when nothing is queued and they grew past `keep` bytes: a session that went idle
    /// after a burst should not hold the burst's memory (10,000 sessions).
    pub(crate) fn trim(&mut self, keep: usize) {
        if self.ends.is_empty() && self.data.capacity() > keep {
            *self = TxQueue::default();
        }
    }
}

/// Receive buffers for one batch: slots of [`MAX_DATAGRAM`] bytes (or of [`GRO_SLOT`] bytes when the socket
/// coalesces with GRO), and where each datagram of the last read starts, how long it is and where it came from.
pub(crate) struct RecvBatch {
    bufs: Vec<u8>,
    slot: usize,
    slots: usize,
    /// Per slot of the last read: bytes and the GRO segment size (0: one datagram).
    slot_lens: Vec<(usize, usize)>,
    slot_addrs: Vec<SocketAddr>,
    /// Per datagram of the last read: start in `bufs`, length, slot.
    dgrams: Vec<(usize, usize, usize)>,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("slot", &self.slot)
            .field("n", &self.dgrams.len())
            .finish()
    }
}

impl RecvBatch {
    /// A batch sized for `io`: [`BATCH`] datagram slots, or [`GRO_SLOTS`] coalescing slots with GRO.
    pub(crate) fn for_io(io: &UdpIo) -> RecvBatch {
        if io.gro.load(Ordering::Relaxed) {
            Self::with_slots(GRO_SLOTS, GRO_SLOT)
        } else {
            Self::with_slots(BATCH, MAX_DATAGRAM)
        }
    }

    fn with_slots(slots: usize, slot: usize) -> RecvBatch {
        RecvBatch {
            bufs: vec![0; slots * slot],
            slot,
            slots,
            slot_lens: vec![(0, 0); slots],
            slot_addrs: vec![SocketAddr::from(([0, 0, 0, 0], 0)); slots],
            dgrams: Vec::with_capacity(if slot > MAX_DATAGRAM {
                BATCH * 4
            } else {
                BATCH
            }),
        }
    }

    /// Cuts the `filled` slots of the last read into datagrams (by GRO segment size where one was reported).
    /// Each datagram is cut to [`MAX_DATAGRAM`] bytes, as a single read of it would be.
    fn split(&mut self, filled: usize) {
        self.dgrams.clear();
        for s in 0..filled.min(self.slots) {
            let (len, seg) = self.slot_lens[s];
            let len = len.min(self.slot);
            let base = s * self.slot;
            if seg == 0 || seg >= len {
                self.dgrams.push((base, len.min(MAX_DATAGRAM), s));
                continue;
            }
            let mut off = 0;
            while off < len {
                let l = seg.min(len - off);
                self.dgrams.push((base + off, l.min(MAX_DATAGRAM), s));
                off += l;
            }
        }
    }

    /// Datagrams in the last read.
    pub(crate) fn len(&self) -> usize {
        self.dgrams.len()
    }

    /// Datagram `i` of the last read (mutable: decryption works in place) and its source.
    pub(crate) fn get_mut(&mut self, i: usize) -> (&mut [u8], SocketAddr) {
        let (start, len, s) = self.dgrams[i];
        (&mut self.bufs[start..start + len], self.slot_addrs[s])
    }
}

/// A UDP socket with batch send and receive.
#[derive(Debug)]
pub(crate) struct UdpIo {
    sock: UdpSocket,
    /// Cleared for good the first time the kernel refuses `recvmmsg`/`sendmmsg` (as kcp-go does).
    batch_ok: AtomicBool,
    /// Sends use `UDP_SEGMENT`; cleared for good the first time the kernel refuses it.
    gso: AtomicBool,
    /// The socket has `UDP_GRO` on: reads may return coalesced datagrams with their segment size.
    gro: AtomicBool,
}

impl UdpIo {
    /// Wraps `sock` with GSO sends (where the kernel has them) and, if `gro`, asks the kernel to coalesce
    /// received bursts (a listener's shared socket; it costs [`GRO_SLOTS`] × 64 KiB of receive buffer).
    pub(crate) fn new(sock: UdpSocket, gro: bool) -> Self {
        #[cfg(target_os = "linux")]
        let gro = gro && linux::set_gro(&sock, true).is_ok();
        #[cfg(not(target_os = "linux"))]
        let gro = {
            let _ = gro;
            false
        };
        UdpIo {
            sock,
            batch_ok: AtomicBool::new(cfg!(target_os = "linux")),
            gso: AtomicBool::new(cfg!(target_os = "linux")),
            gro: AtomicBool::new(gro),
        }
    }

    pub(crate) fn socket(&self) -> &UdpSocket {
        &self.sock
    }

    /// Waits for at least one datagram and reads as many as are ready (up to [`BATCH`] datagrams, or up to
    /// [`GRO_SLOTS`] coalesced bursts); returns how many datagrams [`RecvBatch::get_mut`] now holds.
    ///
    /// Cancel safe: datagrams are only consumed inside the final non-blocking read.
    pub(crate) async fn recv_batch(&self, b: &mut RecvBatch) -> io::Result<usize> {
        loop {
            b.dgrams.clear();
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
                        b.split(n);
                        return Ok(b.len());
                    }
                    Err(e) if linux::unsupported(&e) => {
                        self.batch_ok.store(false, Ordering::Relaxed);
                        // The portable path cannot see segment sizes: stop coalescing. Bursts the kernel
                        // already coalesced are cut to one datagram below (lost; KCP retransmits).
                        if self.gro.swap(false, Ordering::Relaxed) {
                            let _ = linux::set_gro(&self.sock, false);
                        }
                    }
                    Err(e) => return Err(e),
                }
                continue;
            }
            // Portable path: wait for one datagram, then drain whatever else is ready without blocking.
            let slot = b.slot;
            let (len, addr) = self.sock.recv_from(&mut b.bufs[..slot]).await?;
            b.slot_lens[0] = (len, 0);
            b.slot_addrs[0] = addr;
            let mut n = 1;
            while n < b.slots {
                let start = n * slot;
                match self.sock.try_recv_from(&mut b.bufs[start..start + slot]) {
                    Ok((len, addr)) => {
                        b.slot_lens[n] = (len, 0);
                        b.slot_addrs[n] = addr;
                        n += 1;
                    }
                    Err(_) => break,
                }
            }
            b.split(n);
            return Ok(b.len());
        }
    }

    /// Sends queued datagrams to `to` without blocking. Returns how many left; fewer than queued means the
    /// socket buffer is full right now (wait for [`UdpSocket::writable`], which this then makes wait).
    pub(crate) fn send_batch(&self, to: SocketAddr, q: &TxQueue) -> io::Result<usize> {
        let mut sent = 0;
        #[cfg(test)]
        if self
            .sock
            .local_addr()
            .is_ok_and(|a| a.port() == tests::FAIL_SENDS_FROM.load(Ordering::Relaxed))
        {
            // A socket whose local address went away (the interface changed address).
            return Err(io::Error::from_raw_os_error(99 /* EADDRNOTAVAIL */));
        }
        #[cfg(test)]
        if to.port() == tests::SHORT_SEND_TO.load(Ordering::Relaxed) && !q.is_empty() {
            // A socket buffer that is full after one datagram (loopback never fills one).
            return match self.sock.try_send_to(q.get(0), to) {
                Ok(_) => Ok(1),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                Err(e) => Err(e),
            };
        }
        #[cfg(target_os = "linux")]
        if self.batch_ok.load(Ordering::Relaxed) {
            while sent < q.len() {
                let gso = self.gso.load(Ordering::Relaxed);
                let send = || linux::sendmmsg(&self.sock, to, q, sent, gso);
                match self.direct_first(send) {
                    Ok(0) => return Ok(sent),
                    Ok(n) => sent += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(sent),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if gso && linux::gso_refused(&e) => {
                        tracing::debug!(error = %e, "kernel refused UDP GSO; sending datagrams one by one");
                        self.gso.store(false, Ordering::Relaxed);
                    }
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
        let sock = socket2::SockRef::from(&self.sock);
        while sent < q.len() {
            let to = socket2::SockAddr::from(to);
            match self.direct_first(|| sock.send_to(q.get(sent), &to)) {
                Ok(_) => sent += 1,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(sent),
                Err(e) => return if sent > 0 { Ok(sent) } else { Err(e) },
            }
        }
        Ok(sent)
    }

    /// Runs a non-blocking send straight away (a fresh socket's write readiness is only known once the
    /// reactor has seen its first event: waiting for it would hold every first datagram back); only when the
    /// kernel says the buffer is full does it go again through tokio's readiness, so that the `WouldBlock`
    /// clears the write readiness in order and [`UdpSocket::writable`] then waits for room.
    fn direct_first<R>(&self, mut send: impl FnMut() -> io::Result<R>) -> io::Result<R> {
        match send() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                self.sock.try_io(tokio::io::Interest::WRITABLE, send)
            }
            r => r,
        }
    }

    /// Whether sends still use GSO (for tests).
    #[cfg(test)]
    fn gso_on(&self) -> bool {
        self.gso.load(Ordering::Relaxed)
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::mem::{size_of, zeroed};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::AsRawFd;

    use tokio::net::UdpSocket;

    use super::{BATCH, RecvBatch, TxQueue};

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

    /// Control-message space for one `UDP_SEGMENT` (u16) or `UDP_GRO` (int) value, aligned for `cmsghdr`.
    #[repr(C, align(8))]
    #[derive(Clone, Copy)]
    struct CmsgBuf([u8; 32]);

    /// Turns `UDP_GRO` on or off on `sock`.
    pub(super) fn set_gro(sock: &UdpSocket, on: bool) -> io::Result<()> {
        let v: libc::c_int = on.into();
        // SAFETY: a plain setsockopt with a pointer to a live c_int and its size.
        let r = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_UDP,
                libc::UDP_GRO,
                (&v as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The kernel refuses a GSO send (no `UDP_SEGMENT`, a device without checksum offload, a segment larger
    /// than the path MTU): stop using GSO on this socket.
    pub(super) fn gso_refused(e: &io::Error) -> bool {
        matches!(
            e.raw_os_error(),
            Some(libc::EIO) | Some(libc::EINVAL) | Some(libc::ENOPROTOOPT) | Some(libc::EOPNOTSUPP)
        )
    }

    /// Reads up to `b.slots` messages; fills `b.slot_lens`/`b.slot_addrs` and returns the messages read.
    pub(super) fn recvmmsg(sock: &UdpSocket, b: &mut RecvBatch) -> io::Result<usize> {
        // SAFETY: these are plain C structs for which all-zero is valid; every pointer is set below.
        let mut names: [libc::sockaddr_storage; BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let mut cmsgs = [CmsgBuf([0; 32]); BATCH];
        let slots = b.slots.min(BATCH);
        let base = b.bufs.as_mut_ptr();
        for i in 0..slots {
            // SAFETY: bufs holds slots * slot bytes, so slot i is in bounds.
            iovs[i].iov_base = unsafe { base.add(i * b.slot) }.cast();
            iovs[i].iov_len = b.slot;
            msgs[i].msg_hdr.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            msgs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_control = cmsgs[i].0.as_mut_ptr().cast();
            msgs[i].msg_hdr.msg_controllen = cmsgs[i].0.len() as _;
        }
        // SAFETY: msgs/iovs/names/cmsgs live on this stack frame for the whole call and point into b.bufs, which
        // is borrowed mutably; the kernel writes at most iov_len bytes per slot, msg_namelen per name and
        // msg_controllen per control buffer.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                slots as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = n as usize;
        for i in 0..n {
            let seg = gro_segment(&msgs[i].msg_hdr);
            b.slot_lens[i] = (msgs[i].msg_len as usize, seg);
            b.slot_addrs[i] = sockaddr_to(&names[i]);
        }
        Ok(n)
    }

    /// The `UDP_GRO` segment size the kernel attached to a received message, or 0.
    fn gro_segment(hdr: &libc::msghdr) -> usize {
        // SAFETY: hdr was filled by recvmmsg: msg_control points at our live buffer and msg_controllen is the
        // length the kernel wrote, so the CMSG_* walk stays inside it.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(hdr);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                    let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                    return v.max(0) as usize;
                }
                c = libc::CMSG_NXTHDR(hdr, c);
            }
        }
        0
    }

    /// Sends datagrams `from..` of `q` (at most [`BATCH`] messages); with `gso`, each run of equal-size
    /// datagrams ([`super::gso_run`]) is one message with a `UDP_SEGMENT` size. Returns the datagrams sent.
    pub(super) fn sendmmsg(
        sock: &UdpSocket,
        to: SocketAddr,
        q: &TxQueue,
        from: usize,
        gso: bool,
    ) -> io::Result<usize> {
        let (mut name, namelen) = sockaddr_from(to);
        // SAFETY: plain C structs, all-zero is valid; pointers are set below.
        let mut iovs: [libc::iovec; BATCH] = unsafe { zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
        let mut cmsgs = [CmsgBuf([0; 32]); BATCH];
        let mut runs = [0usize; BATCH];
        let mut count = 0;
        let mut at = from;
        while count < BATCH && at < q.len() {
            let (k, bytes) = if gso {
                super::gso_run(q, at)
            } else {
                (1, q.get(at).len())
            };
            let first = q.get(at);
            // Datagrams of a run are back to back in the queue's buffer, so one iovec covers them.
            iovs[count].iov_base = first.as_ptr() as *mut libc::c_void;
            iovs[count].iov_len = bytes;
            let m = &mut msgs[count].msg_hdr;
            m.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
            m.msg_namelen = namelen;
            m.msg_iov = &mut iovs[count];
            m.msg_iovlen = 1;
            if k > 1 {
                let space = cmsgs[count].0.as_mut_ptr();
                m.msg_control = space.cast();
                // SAFETY: CMSG_SPACE of a u16 (24 bytes) fits the 32-byte, 8-aligned buffer; CMSG_FIRSTHDR of a
                // msghdr whose control buffer is that large is non-null and points into it.
                unsafe {
                    m.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as _;
                    let c = libc::CMSG_FIRSTHDR(m);
                    (*c).cmsg_level = libc::SOL_UDP;
                    (*c).cmsg_type = libc::UDP_SEGMENT;
                    (*c).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                    std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), first.len() as u16);
                }
            }
            runs[count] = k;
            at += k;
            count += 1;
        }
        // SAFETY: every pointer refers to this frame's arrays or to q's buffer, which outlive the call; the
        // kernel only reads the datagrams, the address and the control messages.
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
        Ok(runs[..(n as usize).min(count)].iter().sum())
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
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::AtomicU16;

    /// Sends to this port take one datagram per call, as if the socket buffer were then full (tests of the
    /// full-buffer path; 0: off).
    pub(crate) static SHORT_SEND_TO: AtomicU16 = AtomicU16::new(0);

    /// Sends from a socket bound to this port fail with EADDRNOTAVAIL (0: off).
    pub(crate) static FAIL_SENDS_FROM: AtomicU16 = AtomicU16::new(0);

    #[test]
    fn txqueue_trim_releases_a_burst_once_empty() {
        let mut q = TxQueue::default();
        for _ in 0..100 {
            q.push(1400);
        }
        q.trim(16 << 10);
        assert_eq!(q.len(), 100, "never drops queued datagrams");
        q.consume(100);
        q.trim(16 << 10);
        assert_eq!(q.data.capacity(), 0);
        q.push(100);
        q.consume(1);
        let cap = q.data.capacity();
        q.trim(16 << 10);
        assert_eq!(q.data.capacity(), cap, "small buffers are kept for reuse");
    }

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

    /// Sends `sizes` (datagram i filled with byte i) from a socket with or without GSO to one with or without
    /// GRO and checks every datagram arrives whole, in order.
    async fn roundtrip(sizes: &[usize], gso: bool, gro: bool) {
        let a = UdpIo::new(UdpSocket::bind("127.0.0.1:0").await.unwrap(), false);
        if !gso {
            a.gso.store(false, Ordering::Relaxed);
        }
        let b = UdpIo::new(UdpSocket::bind("127.0.0.1:0").await.unwrap(), gro);
        let to = b.socket().local_addr().unwrap();
        let mut rb = RecvBatch::for_io(&b);
        let mut got = 0usize;
        let mut coalesced = false;
        // In chunks, so that the receiver's default socket buffer never overflows.
        for chunk in (0..sizes.len()).collect::<Vec<_>>().chunks(40) {
            let mut q = TxQueue::default();
            for &i in chunk {
                q.push(sizes[i]).fill(i as u8);
            }
            while !q.is_empty() {
                let sent = a.send_batch(to, &q).unwrap();
                q.consume(sent);
                if !q.is_empty() {
                    a.socket().writable().await.unwrap();
                }
            }
            let want = chunk[chunk.len() - 1] + 1;
            while got < want {
                let n =
                    tokio::time::timeout(std::time::Duration::from_secs(5), b.recv_batch(&mut rb))
                        .await
                        .unwrap_or_else(|_| panic!("datagram {got} lost (gso {gso}, gro {gro})"))
                        .unwrap();
                assert_eq!(n, rb.len());
                coalesced |= rb.slot_lens.iter().any(|&(_, seg)| seg > 0);
                for i in 0..n {
                    let (pkt, from) = rb.get_mut(i);
                    assert_eq!(from, a.socket().local_addr().unwrap());
                    assert_eq!(pkt.len(), sizes[got].min(MAX_DATAGRAM), "datagram {got}");
                    assert!(pkt.iter().all(|&x| x == got as u8), "datagram {got}");
                    got += 1;
                }
            }
        }
        assert_eq!(got, sizes.len());
        // On loopback a GSO send reaches a GRO socket as one coalesced read (where the kernel has both).
        if gso && a.gso_on() && b.gro.load(Ordering::Relaxed) {
            assert!(coalesced, "no coalesced read");
        }
    }

    #[tokio::test]
    async fn batch_roundtrip_over_loopback() {
        let sizes: Vec<usize> = (0..50).map(|i| 10 + i).collect();
        roundtrip(&sizes, false, false).await;
    }

    /// Runs of equal sizes with shorter tails, single odd sizes and more than one GSO send's worth, through
    /// every combination of GSO and GRO.
    #[tokio::test]
    async fn gso_gro_keep_every_datagram() {
        let mut sizes = vec![1350; 70];
        sizes.extend([1350, 1350, 200, 1350, 24, 24, 24, 1400, 1400, 1399, 1, 1500]);
        sizes.extend(std::iter::repeat_n(100, 40));
        sizes.push(1600); // longer than we read: cut to MAX_DATAGRAM, as before
        for (gso, gro) in [(true, true), (true, false), (false, true), (false, false)] {
            roundtrip(&sizes, gso, gro).await;
        }
    }

    #[test]
    fn gso_runs_follow_the_kernel_rules() {
        let q = |sizes: &[usize]| {
            let mut q = TxQueue::default();
            for &l in sizes {
                q.push(l);
            }
            q
        };
        // Equal sizes, then a shorter tail closes the run.
        let t = q(&[100, 100, 100, 50, 100]);
        assert_eq!(gso_run(&t, 0), (4, 350));
        assert_eq!(gso_run(&t, 4), (1, 100));
        // A longer datagram starts a new run.
        let t = q(&[50, 100]);
        assert_eq!(gso_run(&t, 0), (1, 50));
        // At most GSO_MAX_SEGMENTS datagrams and GSO_MAX_BYTES bytes.
        let t = q(&[10; 100]);
        assert_eq!(gso_run(&t, 0), (GSO_MAX_SEGMENTS, GSO_MAX_SEGMENTS * 10));
        let t = q(&[1500; 60]);
        assert_eq!(gso_run(&t, 0), (43, 43 * 1500));
        const { assert!(43 * 1500 <= GSO_MAX_BYTES && 44 * 1500 > GSO_MAX_BYTES) };
    }

    #[test]
    fn gro_split_cuts_by_segment_size() {
        let mut b = RecvBatch::with_slots(2, GRO_SLOT);
        let a: SocketAddr = "127.0.0.1:9".parse().unwrap();
        b.slot_lens[0] = (1350 * 3 + 7, 1350);
        b.slot_lens[1] = (2000, 0);
        b.slot_addrs = vec![a, a];
        b.split(2);
        let lens: Vec<usize> = (0..b.len()).map(|i| b.get_mut(i).0.len()).collect();
        assert_eq!(lens, [1350, 1350, 1350, 7, MAX_DATAGRAM]);
        assert_eq!(b.dgrams[3].0, 1350 * 3);
        assert_eq!(b.dgrams[4].0, GRO_SLOT);
        // A segment size at least the length (one datagram) or a bogus huge one: one datagram.
        b.slot_lens[0] = (100, 100);
        b.split(1);
        assert_eq!(b.len(), 1);
    }

    #[tokio::test]
    async fn listener_socket_gets_gro_and_big_slots() {
        let b = UdpIo::new(UdpSocket::bind("127.0.0.1:0").await.unwrap(), true);
        if b.gro.load(Ordering::Relaxed) {
            assert_eq!(RecvBatch::for_io(&b).slot, GRO_SLOT);
        }
        let c = UdpIo::new(UdpSocket::bind("127.0.0.1:0").await.unwrap(), false);
        assert_eq!(RecvBatch::for_io(&c).slot, MAX_DATAGRAM);
        assert!(!cfg!(target_os = "linux") || c.gso_on());
    }
}
