//! Many sessions on one listener, their timers run by the read loops; counters as kcptun's CSV.

use std::time::Duration;

use rkcp_session::{KcpConfig, KcpListener, KcpStream, SnmpSnapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn open_sessions(n: usize) -> (Vec<KcpStream>, Vec<KcpStream>) {
    // Opening 10,000 sessions one after the other takes longer than the default idle timeout, during
    // which the first ones hear nothing: give them longer (the timer is still armed, so its cost counts).
    let mut cfg = KcpConfig::fast().with_idle_timeout(Some(Duration::from_secs(600)));
    cfg.listener.accept_backlog = n;
    let listener = KcpListener::bind("127.0.0.1:0", cfg.clone()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut clients = Vec::with_capacity(n);
    let mut servers = Vec::with_capacity(n);
    for i in 0..n {
        let mut c = KcpStream::connect(addr, cfg.clone()).await.unwrap();
        c.write_all(&(i as u64).to_le_bytes()).await.unwrap();
        clients.push(c);
    }
    // Accepted in the order the sessions became ready, which is not the order they were opened in (past
    // the per-IP cap of unverified connections a client passes the address check first): each server
    // side goes next to its client by the index the client sent.
    let mut slots: Vec<Option<KcpStream>> = (0..n).map(|_| None).collect();
    for _ in 0..n {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut b = [0u8; 8];
        s.read_exact(&mut b).await.unwrap();
        s.write_all(&b).await.unwrap();
        let i = u64::from_le_bytes(b) as usize;
        assert!(slots[i].replace(s).is_none(), "two sessions sent index {i}");
    }
    servers.extend(
        slots
            .into_iter()
            .map(|s| s.expect("every index accepted once")),
    );
    for (i, c) in clients.iter_mut().enumerate() {
        let mut b = [0u8; 8];
        c.read_exact(&mut b).await.unwrap();
        assert_eq!(u64::from_le_bytes(b), i as u64);
    }
    std::mem::forget(listener); // keep serving; the test process ends soon
    (clients, servers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_sessions_echo_and_count() {
    let before = rkcp_session::global_snmp();
    let (clients, servers) = open_sessions(1000).await;
    // Every session saw its own traffic.
    for s in &servers {
        let m = s.snmp();
        assert_eq!(m.bytes_received, 8);
        assert_eq!(m.bytes_sent, 8);
    }
    let after = rkcp_session::global_snmp();
    assert!(after.passive_opens >= before.passive_opens + 1000);
    assert!(after.active_opens >= before.active_opens + 1000);
    assert!(after.curr_estab >= 2000);
    assert!(after.max_conn >= 2000);
    assert!(after.bytes_sent >= before.bytes_sent + 16_000);
    let header = SnmpSnapshot::csv_header();
    let row = after.csv_row(1_700_000_000);
    assert_eq!(header.split(',').count(), row.split(',').count());
    drop(clients);
    drop(servers);
    let closed = rkcp_session::global_snmp();
    assert!(closed.curr_estab + 2000 <= after.curr_estab);
    // Retired sessions keep counting in the process totals.
    assert!(closed.bytes_sent >= after.bytes_sent);
}

/// 10,000 sessions, each echoing 16 bytes once a second; prints the process CPU time used per second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stress: 20,000 sockets and a minute of wall time"]
async fn stress_ten_thousand_mostly_idle_sessions() {
    let rss_before = rss_bytes();
    let (mut clients, mut servers) = open_sessions(10_000).await;
    let rss_after = rss_bytes();
    println!(
        "RSS grew {:.1} MB for 10,000 client + 10,000 server sessions: {:.1} KB per session",
        (rss_after - rss_before) as f64 / 1e6,
        (rss_after - rss_before) as f64 / 20_000.0 / 1e3
    );
    let cpu = || {
        // SAFETY: getrusage fills the struct we pass; all-zero is a valid initial value.
        let mut u: libc_rusage::Rusage = unsafe { std::mem::zeroed() };
        libc_rusage::get(&mut u);
        u.secs()
    };
    let t0 = cpu();
    let wall = std::time::Instant::now();
    for _round in 0..10 {
        for (c, s) in clients.iter_mut().zip(servers.iter_mut()) {
            c.write_all(&[7u8; 16]).await.unwrap();
            let mut b = [0u8; 16];
            s.read_exact(&mut b).await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let used = cpu() - t0;
    let secs = wall.elapsed().as_secs_f64();
    println!(
        "10,000 sessions: {:.1}% of one core ({used:.2}s CPU over {secs:.1}s)",
        100.0 * used / secs
    );
}

/// Resident set size from /proc/self/statm (Linux).
fn rss_bytes() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

mod libc_rusage {
    #[repr(C)]
    pub(crate) struct Rusage {
        utime: [i64; 2],
        stime: [i64; 2],
        rest: [i64; 14],
    }
    impl Rusage {
        pub(crate) fn secs(&self) -> f64 {
            let t = |v: [i64; 2]| v[0] as f64 + v[1] as f64 / 1e6;
            t(self.utime) + t(self.stime)
        }
    }
    unsafe extern "C" {
        fn getrusage(who: i32, usage: *mut Rusage) -> i32;
    }
    pub(crate) fn get(u: &mut Rusage) {
        // SAFETY: `u` points to a writable struct laid out like Linux's struct rusage on 64-bit targets.
        unsafe { getrusage(0, u) };
    }
}
