//! What one live session costs the server (issue 11: ≤ 8 KB per session, bare KCP and smux over KCP),
//! counted exactly rather than read off RSS.
//!
//! The server runs on a current-thread runtime of its own thread, the clients on another; a global
//! allocator counts the bytes allocated and not yet freed per thread, so the server thread's count is what
//! its sessions hold (they share nothing with the clients but UDP). Each session is shaped like
//! `kcpbench sessions`: the client sends 16 bytes, the server echoes them (a task per stream with a small
//! read buffer, as kcpbench's server), the client reads the echo; then both sit idle. The first sessions
//! pay for first-use allocations and are left out.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use rkcp_session::{KcpConfig, KcpListener, KcpStream, ListenerConfig};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

#[path = "common/counting.rs"]
mod counting;

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

fn smux_config() -> rkcp_smux::Config {
    rkcp_smux::Config::default()
}

/// Echoes a stream with a 256-byte buffer (kcpbench serve's first read buffer) until it ends.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    let mut b = vec![0u8; 256];
    while let Ok(n) = s.read(&mut b).await {
        if n == 0 || s.write_all(&b[..n]).await.is_err() {
            return;
        }
    }
}

/// Server thread: accepts sessions and echoes them; answers each `mark` request with its thread's live bytes.
fn server(
    smux: bool,
    addr_tx: mpsc::Sender<SocketAddr>,
    mut mark: tokio::sync::mpsc::UnboundedReceiver<oneshot::Sender<isize>>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let cfg = KcpConfig {
            listener: ListenerConfig {
                accept_backlog: 4096,
                ..ListenerConfig::default()
            },
            ..KcpConfig::fast3()
        };
        let listener = KcpListener::bind("127.0.0.1:0", cfg).await.unwrap();
        addr_tx.send(listener.local_addr().unwrap()).unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                if smux {
                    tokio::spawn(async move {
                        let Ok(mux) = rkcp_smux::Session::server(s, smux_config()) else {
                            return;
                        };
                        while let Ok(st) = mux.accept_stream().await {
                            tokio::spawn(echo(st));
                        }
                    });
                } else {
                    tokio::spawn(echo(s));
                }
            }
        });
        while let Some(reply) = mark.recv().await {
            // Let the last ACKs arrive and the timers settle before reading the count.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = reply.send(counting::live());
        }
    });
}

async fn open(addr: SocketAddr, smux: bool, count: usize, keep: &mut Vec<Box<dyn std::any::Any>>) {
    for _ in 0..count {
        let c = KcpStream::connect(addr, KcpConfig::fast3()).await.unwrap();
        let mut b = [0u8; 16];
        if smux {
            let mux = rkcp_smux::Session::client(c, smux_config()).unwrap();
            let mut st = mux.open_stream().await.unwrap();
            st.write_all(&[1u8; 16]).await.unwrap();
            st.read_exact(&mut b).await.unwrap();
            keep.push(Box::new((mux, st)));
        } else {
            let mut c = c;
            c.write_all(&[1u8; 16]).await.unwrap();
            c.read_exact(&mut b).await.unwrap();
            keep.push(Box::new(c));
        }
    }
}

/// Bytes the server holds per session, over `n` sessions opened after `warm` first ones.
fn per_session(smux: bool, warm: usize, n: usize) -> isize {
    let (addr_tx, addr_rx) = mpsc::channel();
    let (mark_tx, mark_rx) = tokio::sync::mpsc::unbounded_channel::<oneshot::Sender<isize>>();
    let srv = std::thread::spawn(move || server(smux, addr_tx, mark_rx));
    let addr = addr_rx.recv().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let per = rt.block_on(async {
        let mark = async || {
            let (tx, rx) = oneshot::channel();
            mark_tx.send(tx).unwrap();
            rx.await.unwrap()
        };
        let mut keep = Vec::new();
        open(addr, smux, warm, &mut keep).await;
        let before = mark().await;
        open(addr, smux, n, &mut keep).await;
        let after = mark().await;
        drop(keep);
        (after - before) / n as isize
    });
    drop(mark_tx);
    let _ = srv.join();
    per
}

#[test]
fn a_kcp_session_costs_the_server_at_most_8_kb() {
    let per = per_session(false, 32, 300);
    println!("kcp: {per} bytes per session on the server");
    assert!(per <= 8 * 1024, "{per}");
}

#[test]
fn an_smux_over_kcp_session_costs_the_server_at_most_8_kb() {
    let per = per_session(true, 32, 300);
    println!("smux/kcp: {per} bytes per session on the server");
    assert!(per <= 8 * 1024, "{per}");
}
