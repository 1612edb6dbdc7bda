//! `tunnel-server --metrics ADDR`: the process-wide KCP counters (kcp-go's SNMP set, the columns of
//! `--snmplog`) in the Prometheus text exposition format, on `GET /metrics`.
//!
//! A hand-written HTTP/1.x responder: one request per connection, `Connection: close`, request heads capped at
//! 8 KiB and 5 s, so a scraper (or anything else that connects) cannot pin memory or a task.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use rkcp_session::SnmpSnapshot;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest request head read before answering.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// The metric name of an SNMP column: `kcp_` + snake case, `_total` for counters (`BytesSent` →
/// `kcp_bytes_sent_total`); `CurrEstab` and `MaxConn` are gauges.
pub fn metric_name(column: &str) -> (String, &'static str) {
    let mut snake = String::from("kcp_");
    let chars: Vec<char> = column.chars().collect();
    for (i, &ch) in chars.iter().enumerate() {
        if ch.is_ascii_uppercase() {
            // A new word starts at an upper-case letter after a lower-case one, or at the last capital of a run
            // followed by lower case ("KCPInErrors" → kcp_in_errors, "InCsumErrors" → in_csum_errors).
            let prev_lower = i > 0 && chars[i - 1].is_ascii_lowercase();
            let run_end = i > 0
                && chars[i - 1].is_ascii_uppercase()
                && chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
            if (prev_lower || run_end) && !snake.ends_with('_') {
                snake.push('_');
            }
            snake.push(ch.to_ascii_lowercase());
        } else {
            snake.push(ch);
        }
    }
    if matches!(column, "CurrEstab" | "MaxConn") {
        (snake, "gauge")
    } else {
        snake.push_str("_total");
        (snake, "counter")
    }
}

/// The exposition text of one snapshot.
pub fn render(snap: &SnmpSnapshot) -> String {
    let mut out = String::new();
    for (column, value) in SnmpSnapshot::HEADER.iter().zip(snap.to_array()) {
        let (name, kind) = metric_name(column);
        let _ = writeln!(out, "# HELP {name} kcp-go SNMP counter {column}.");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

/// Binds the metrics listener (TCP).
///
/// # Errors
/// The address does not parse or resolve, or the bind fails.
pub async fn bind(addr: &str) -> anyhow::Result<TcpListener> {
    crate::cli::bind_tcp(addr).map_err(|e| e.context("--metrics"))
}

/// Answers scrapes on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    loop {
        let Ok((conn, _)) = listener.accept().await else {
            // Out of file descriptors and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        tokio::spawn(async move {
            let _ = tokio::time::timeout(HEAD_TIMEOUT, answer(conn)).await;
        });
    }
}

async fn answer(mut conn: TcpStream) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await?;
        if n == 0 || head.len() + n > MAX_HEAD {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let (status, ctype, body) = match (method, path) {
        (b"GET", b"/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            render(&rkcp_session::global_snmp()),
        ),
        (b"GET", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "try /metrics\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "GET only\n".to_string(),
        ),
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(resp.as_bytes()).await?;
    conn.shutdown().await
}

/// The address a listener serves metrics on, for the startup log line.
pub fn url(addr: SocketAddr) -> String {
    format!("http://{}/metrics", crate::cli::describe_bound(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        assert_eq!(
            metric_name("BytesSent"),
            ("kcp_bytes_sent_total".into(), "counter")
        );
        assert_eq!(
            metric_name("KCPInErrors"),
            ("kcp_kcp_in_errors_total".into(), "counter")
        );
        assert_eq!(
            metric_name("InCsumErrors"),
            ("kcp_in_csum_errors_total".into(), "counter")
        );
        assert_eq!(
            metric_name("FECRecovered"),
            ("kcp_fec_recovered_total".into(), "counter")
        );
        assert_eq!(metric_name("CurrEstab"), ("kcp_curr_estab".into(), "gauge"));
        let text = render(&SnmpSnapshot::default());
        assert_eq!(text.lines().count(), 24 * 3);
        let names: std::collections::HashSet<_> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        assert_eq!(names.len(), 24, "two columns map to one metric name");
        assert!(names.iter().all(|n| {
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
        }));
    }
}
