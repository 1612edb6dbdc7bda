//! Turning [`Report`]s into what people read: an aligned terminal table, GitHub markdown
//! (`benches/RESULTS.md`) and, through [`crate::plot`], PNG plots.
//!
//! Everything here is a pure function of the report, so a run saved with `--json` renders the same
//! way later (`kcpbench render`), and several runs can be merged into one page.
//!
//! # Units and definitions
//! - **MB = 10^6 bytes**, Mbit = 10^6 bits, KB = 10^3 bytes (decimal, like link rates and like the
//!   figures quoted in issue 7). Throughput is payload bytes ÷ wall time, so
//!   `Mbit/s = 8 × MB/s`.
//! - **wire/payload** (rkcp throughput rows) is the bytes the client's KCP sessions sent on the wire
//!   (UDP payloads: KCP headers, ACKs, retransmissions, FEC parity, crypto headers; SNMP `OutBytes`)
//!   ÷ the payload bytes. One-way the client is the sender, so this is the sending side's overhead.
//! - **queue delay** (rkcp and TCP throughput rows) is the client's mean smoothed RTT during the
//!   transfer (sampled every 50 ms: KCP `srtt`, TCP `tcpi_rtt`) minus the smallest RTT it saw (TCP:
//!   `tcpi_min_rtt` when smaller), in ms: how long the transfer's own data waited in the bottleneck
//!   queue, on average. One-way the client is the sender.
//! - **Percentiles are nearest-rank**: over the `n` round-trip times that came back, sorted
//!   ascending, the p-th percentile is the value at 1-based rank `⌈p/100 × n⌉` (rank 1 for p = 0).
//!   It is always one of the measured values, never an interpolation, so "p99 = 213 ms" means that
//!   at least 99 % of the messages took at most 213 ms and one of them took exactly that.
//!   Lost messages have no RTT: they are left out of avg and percentiles and counted in `lost`.
//! - **Server CPU** is the server process's user + system CPU time during the measurement window
//!   divided by the window's length, as a percentage of one core (200 % = both cores of a 2-core
//!   machine busy).
//! - **KB per session** is (server resident memory with all sessions open − before opening them)
//!   ÷ sessions. It can come out slightly negative when the allocator returned memory meanwhile.
//! - **Ratios**: "vs tcp" compares a row with the Tcp row of the same group and the same kind of
//!   measurement (the one labelled `tcp` if there is one, else the first); "vs kcp-go" compares it
//!   with the KcpGo row of the same group with the same label. Throughput ratios are MB/s ÷ the
//!   baseline's MB/s (above 1 = faster); latency ratios are average RTT ÷ the baseline's average RTT
//!   (below 1 = faster); sessions ratios are CPU % ÷ the baseline's CPU % (below 1 = cheaper),
//!   shown with the KB-per-session ratio ([`memory_ratio`]) beside it.

use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use anyhow::Context as _;

use crate::plot::{self, Plot};
use crate::results::{Implementation, Measurement, Report, Row};

/// Bytes in one MB, as used by every figure here (decimal, see the module docs).
pub const BYTES_PER_MB: f64 = 1e6;

/// Bytes in one KB (decimal).
pub const BYTES_PER_KB: f64 = 1e3;

/// The short name of an implementation, as printed in tables and plot legends.
pub fn implementation_name(implementation: Implementation) -> &'static str {
    match implementation {
        Implementation::Rkcp => "rkcp",
        Implementation::KcpGo => "kcp-go",
        Implementation::Tcp => "tcp",
    }
}

/// Bytes on the wire ÷ payload bytes of a throughput row (`None` without a wire count or payload).
pub fn wire_ratio(bytes: u64, wire_bytes: Option<u64>) -> Option<f64> {
    let w = wire_bytes?;
    (bytes > 0).then(|| w as f64 / bytes as f64)
}

/// Throughput in MB/s (10^6 bytes per second); `None` when no time elapsed, which would
/// otherwise print as infinity.
pub fn mb_per_sec(bytes: u64, secs: f64) -> Option<f64> {
    (secs > 0.0 && secs.is_finite()).then(|| bytes as f64 / BYTES_PER_MB / secs)
}

/// The nearest-rank percentile `p` (0 ..= 100) of values sorted ascending: the value at 1-based
/// rank `⌈p/100 × n⌉`, or the smallest value for `p = 0`. `None` for an empty slice.
///
/// `p` is taken to two decimals (99.99 is distinct from 100, 99.999 is not); outside 0 ..= 100
/// it is clamped. The slice must be sorted; [`summary`] sorts for you.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let p = if p.is_nan() { 0.0 } else { p.clamp(0.0, 100.0) };
    // Computed in integer hundredths of a percent so that e.g. p = 99 with n = 100 gives rank 99
    // exactly, not 99.00000000000001 rounded up to 100 by floating point.
    let hundredths = (p * 100.0).round() as u128;
    let rank = (hundredths * n as u128).div_ceil(10_000).max(1);
    // rank <= n because hundredths <= 10_000.
    sorted.get(rank as usize - 1).copied()
}

/// Round-trip time statistics of one latency row, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LatencySummary {
    /// Messages that came back (the sample size of every figure below).
    pub count: usize,
    /// Smallest RTT.
    pub min_us: u64,
    /// Arithmetic mean RTT.
    pub avg_us: f64,
    /// Nearest-rank median.
    pub p50_us: u64,
    /// Nearest-rank 99th percentile.
    pub p99_us: u64,
    /// Largest RTT.
    pub max_us: u64,
}

/// Summarises round-trip times (any order); `None` when there are none (every message lost).
pub fn summary(rtt_us: &[u64]) -> Option<LatencySummary> {
    let mut sorted = rtt_us.to_vec();
    sorted.sort_unstable();
    let count = sorted.len();
    let sum: u128 = sorted.iter().map(|&v| u128::from(v)).sum();
    Some(LatencySummary {
        count,
        min_us: *sorted.first()?,
        avg_us: sum as f64 / count as f64,
        p50_us: percentile(&sorted, 50.0)?,
        p99_us: percentile(&sorted, 99.0)?,
        max_us: *sorted.last()?,
    })
}

/// The empirical CDF of round-trip times, as (RTT in ms, fraction of returned messages with an
/// RTT at most that) points, one per distinct value, ascending; the last fraction is 1.
pub fn cdf(rtt_us: &[u64]) -> Vec<(f64, f64)> {
    let mut sorted = rtt_us.to_vec();
    sorted.sort_unstable();
    let n = sorted.len() as f64;
    let mut points: Vec<(f64, f64)> = Vec::new();
    for (i, &v) in sorted.iter().enumerate() {
        let point = (v as f64 / 1000.0, (i + 1) as f64 / n);
        match points.last_mut() {
            Some(last) if sorted.get(i.wrapping_sub(1)) == Some(&v) => *last = point,
            _ => points.push(point),
        }
    }
    points
}

/// What a sessions row costs the server, per the definitions in the module docs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SessionsSummary {
    /// Sessions open during the window.
    pub sessions: u64,
    /// Server CPU during the window, % of one core; `None` for an empty window.
    pub cpu_percent: Option<f64>,
    /// Server resident memory added per session, KB (10^3 bytes); `None` for zero sessions.
    pub kb_per_session: Option<f64>,
    /// Echo replies received during the window.
    pub echoed: u64,
    /// Echo replies expected during the window.
    pub expected: u64,
}

/// Summarises a [`Measurement::Sessions`]; `None` for any other kind of measurement.
pub fn sessions_summary(m: &Measurement) -> Option<SessionsSummary> {
    let Measurement::Sessions {
        sessions,
        secs,
        server_cpu_secs,
        server_rss_before,
        server_rss_after,
        echoed,
        expected,
    } = *m
    else {
        return None;
    };
    let rss_delta = server_rss_after as f64 - server_rss_before as f64;
    Some(SessionsSummary {
        sessions,
        cpu_percent: (secs > 0.0 && secs.is_finite()).then(|| server_cpu_secs / secs * 100.0),
        kb_per_session: (sessions > 0).then(|| rss_delta / sessions as f64 / BYTES_PER_KB),
        echoed,
        expected,
    })
}

/// The kind of a measured row; rows of different kinds never share a table or a ratio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// [`Measurement::Throughput`].
    Throughput,
    /// [`Measurement::Latency`].
    Latency,
    /// [`Measurement::Sessions`].
    Sessions,
}

/// The kind of a measurement, `None` for Skipped and Failed (they have no figures).
pub fn kind(m: &Measurement) -> Option<Kind> {
    match m {
        Measurement::Throughput { .. } => Some(Kind::Throughput),
        Measurement::Latency { .. } => Some(Kind::Latency),
        Measurement::Sessions { .. } => Some(Kind::Sessions),
        Measurement::Skipped { .. } | Measurement::Failed { .. } => None,
    }
}

/// The figure that ratios compare (see the module docs): MB/s, average RTT in µs, or CPU %.
fn headline(m: &Measurement) -> Option<f64> {
    match m {
        Measurement::Throughput { bytes, secs, .. } => mb_per_sec(*bytes, *secs),
        Measurement::Latency { rtt_us, .. } => summary(rtt_us).map(|s| s.avg_us),
        Measurement::Sessions { .. } => sessions_summary(m)?.cpu_percent,
        Measurement::Skipped { .. } | Measurement::Failed { .. } => None,
    }
}

/// `row`'s headline figure ÷ `baseline`'s: MB/s for throughput, average RTT for latency, CPU % for
/// sessions. `None` when the kinds differ, either has no figure, or the baseline's is zero.
pub fn ratio(row: &Measurement, baseline: &Measurement) -> Option<f64> {
    if kind(row)? != kind(baseline)? {
        return None;
    }
    let (a, b) = (headline(row)?, headline(baseline)?);
    (b > 0.0 && a.is_finite()).then(|| a / b)
}

/// KB per session of `row` ÷ `baseline`'s, both sessions measurements; `None` otherwise, or when
/// either is negative or the baseline's is zero (memory noise, not a cost to compare). Shown next
/// to the CPU ratio in the sessions tables.
pub fn memory_ratio(row: &Measurement, baseline: &Measurement) -> Option<f64> {
    let a = sessions_summary(row)?.kb_per_session?;
    let b = sessions_summary(baseline)?.kb_per_session?;
    (a >= 0.0 && b > 0.0).then(|| a / b)
}

/// The Tcp row that `row` is compared with in the "vs tcp" column: among the rows of the same
/// group and the same kind run by [`Implementation::Tcp`], the one labelled `tcp` if any, else the
/// first. `None` for Skipped/Failed rows, when there is no such row, or when `row` is that row.
pub fn tcp_baseline<'a>(rows: &'a [Row], row: &Row) -> Option<&'a Row> {
    let k = kind(&row.result)?;
    let mut candidates = rows.iter().filter(|r| {
        r.group == row.group
            && r.implementation == Implementation::Tcp
            && kind(&r.result) == Some(k)
    });
    let first = candidates.clone().next()?;
    let chosen = candidates
        .find(|r| r.label.trim().eq_ignore_ascii_case("tcp"))
        .unwrap_or(first);
    (!std::ptr::eq(chosen, row)).then_some(chosen)
}

/// The KcpGo row that `row` is compared with in the "vs kcp-go" column: the first row of the same
/// group, same label and same kind run by [`Implementation::KcpGo`]. `None` for KcpGo rows
/// themselves, Skipped/Failed rows, or when there is none.
pub fn kcp_go_baseline<'a>(rows: &'a [Row], row: &Row) -> Option<&'a Row> {
    let k = kind(&row.result)?;
    if row.implementation == Implementation::KcpGo {
        return None;
    }
    rows.iter().find(|r| {
        r.group == row.group
            && r.label == row.label
            && r.implementation == Implementation::KcpGo
            && kind(&r.result) == Some(k)
    })
}

/// Merges several reports into one: rows concatenated in order. `command` and `started` become
/// one line per source report (line i of both belongs to report i, so the page can list every
/// exact command with its start time); `machine` lists each distinct machine once, one per line.
pub fn merge(reports: Vec<Report>) -> Report {
    if reports.len() == 1 {
        return reports.into_iter().next().unwrap_or_default();
    }
    let mut merged = Report::default();
    let mut commands = Vec::new();
    let mut started = Vec::new();
    let mut machines: Vec<String> = Vec::new();
    for r in reports {
        commands.push(one_line(&r.command));
        started.push(one_line(&r.started));
        let machine = one_line(&r.machine);
        if !machines.contains(&machine) {
            machines.push(machine);
        }
        merged.rows.extend(r.rows);
    }
    merged.command = commands.join("\n");
    merged.started = started.join("\n");
    merged.machine = machines.join("\n");
    merged
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One table: its column headers, whether each column is numeric (right-aligned), and rows of
/// cells. A row with a single cell after label and implementation is a note (Skipped/Failed).
struct Grid {
    headers: Vec<&'static str>,
    numeric: Vec<bool>,
    rows: Vec<GridRow>,
}

enum GridRow {
    Cells(Vec<String>),
    Note {
        label: String,
        implementation: String,
        text: String,
    },
}

/// The tables of one group: one per kind of measurement, the first kind seen (with every
/// Skipped/Failed row of the group, in order) first.
fn group_grids(report: &Report, group: &str) -> Vec<Grid> {
    let rows: Vec<&Row> = report.rows.iter().filter(|r| r.group == group).collect();
    let primary = rows.iter().find_map(|r| kind(&r.result));
    let mut kinds: Vec<Option<Kind>> = vec![primary];
    for r in &rows {
        if let Some(k) = kind(&r.result)
            && !kinds.contains(&Some(k))
        {
            kinds.push(Some(k));
        }
    }
    kinds
        .into_iter()
        .map(|k| {
            // Skipped/Failed rows have no kind and go with the group's first kind.
            let members = rows.iter().filter(|r| {
                let rk = kind(&r.result);
                rk == k || (rk.is_none() && k == primary)
            });
            let mut grid = Grid::new(k);
            for r in members {
                grid.rows.push(grid_row(&report.rows, r));
            }
            grid
        })
        .collect()
}

impl Grid {
    fn new(kind: Option<Kind>) -> Self {
        let (figures, numeric): (Vec<&'static str>, Vec<bool>) = match kind {
            Some(Kind::Throughput) => (
                vec![
                    "streams",
                    "secs",
                    "MB/s",
                    "Mbit/s",
                    "wire/payload",
                    "queue delay ms",
                    "vs tcp",
                    "vs kcp-go",
                ],
                vec![true; 8],
            ),
            Some(Kind::Latency) => (
                vec![
                    "msgs",
                    "avg ms",
                    "p50 ms",
                    "p99 ms",
                    "max ms",
                    "lost",
                    "vs tcp",
                    "vs kcp-go",
                ],
                vec![true; 8],
            ),
            Some(Kind::Sessions) => (
                vec![
                    "sessions",
                    "cpu %",
                    "KB/session",
                    "echoed/expected",
                    "vs tcp",
                    "vs kcp-go",
                ],
                vec![true; 6],
            ),
            None => (vec!["result"], vec![false]),
        };
        let mut headers = vec!["label", "impl"];
        headers.extend(figures);
        let mut num = vec![false, false];
        num.extend(numeric);
        Grid {
            headers,
            numeric: num,
            rows: Vec::new(),
        }
    }
}

fn fmt_opt(v: Option<f64>, decimals: usize) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "-".to_string(),
    }
}

fn fmt_ms(us: f64) -> String {
    format!("{:.2}", us / 1000.0)
}

fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        Some(r) => format!("{r:.2}×"),
        None => String::new(),
    }
}

fn fmt_ratio_or_dash(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_string(), |r| format!("{r:.2}×"))
}

fn grid_row(all: &[Row], row: &Row) -> GridRow {
    let label = row.label.clone();
    let implementation = implementation_name(row.implementation).to_string();
    let vs = |base: Option<&Row>| match (base, &row.result) {
        (Some(b), Measurement::Sessions { .. }) => {
            let cpu = ratio(&row.result, &b.result);
            let mem = memory_ratio(&row.result, &b.result);
            match (cpu, mem) {
                (None, None) => String::new(),
                _ => format!(
                    "cpu {} mem {}",
                    fmt_ratio_or_dash(cpu),
                    fmt_ratio_or_dash(mem)
                ),
            }
        }
        (Some(b), _) => fmt_ratio(ratio(&row.result, &b.result)),
        (None, _) => String::new(),
    };
    let vs_tcp = vs(tcp_baseline(all, row));
    let vs_go = vs(kcp_go_baseline(all, row));
    let mut cells = vec![label.clone(), implementation.clone()];
    match &row.result {
        Measurement::Throughput {
            bytes,
            secs,
            streams,
            wire_bytes,
            queue_delay_ms,
            ..
        } => {
            let mbs = mb_per_sec(*bytes, *secs);
            cells.extend([
                streams.to_string(),
                format!("{secs:.2}"),
                fmt_opt(mbs, 1),
                fmt_opt(mbs.map(|v| v * 8.0), 1),
                fmt_opt(wire_ratio(*bytes, *wire_bytes), 3),
                fmt_opt(*queue_delay_ms, 1),
            ]);
        }
        Measurement::Latency { rtt_us, lost, .. } => match summary(rtt_us) {
            Some(s) => cells.extend([
                s.count.to_string(),
                fmt_ms(s.avg_us),
                fmt_ms(s.p50_us as f64),
                fmt_ms(s.p99_us as f64),
                fmt_ms(s.max_us as f64),
                lost.to_string(),
            ]),
            None => cells.extend([
                "0".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                lost.to_string(),
            ]),
        },
        Measurement::Sessions { .. } => {
            let s = sessions_summary(&row.result);
            cells.extend([
                s.map_or_else(String::new, |s| s.sessions.to_string()),
                fmt_opt(s.and_then(|s| s.cpu_percent), 1),
                fmt_opt(s.and_then(|s| s.kb_per_session), 1),
                s.map_or_else(String::new, |s| format!("{}/{}", s.echoed, s.expected)),
            ]);
        }
        Measurement::Skipped { why } => {
            return GridRow::Note {
                label,
                implementation,
                text: format!("skipped: {}", one_line(why)),
            };
        }
        Measurement::Failed { error } => {
            return GridRow::Note {
                label,
                implementation,
                text: format!("FAILED: {}", one_line(error)),
            };
        }
    }
    cells.extend([vs_tcp, vs_go]);
    GridRow::Cells(cells)
}

/// Groups in the order they first appear.
fn groups(report: &Report) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for r in &report.rows {
        if !out.contains(&r.group.as_str()) {
            out.push(&r.group);
        }
    }
    out
}

fn width(s: &str) -> usize {
    s.chars().count()
}

fn pad(out: &mut String, cell: &str, w: usize, right: bool) {
    let fill = w.saturating_sub(width(cell));
    if right {
        out.extend(std::iter::repeat_n(' ', fill));
        out.push_str(cell);
    } else {
        out.push_str(cell);
        out.extend(std::iter::repeat_n(' ', fill));
    }
}

fn render_grid_text(grid: &Grid, out: &mut String) {
    let mut widths: Vec<usize> = grid.headers.iter().map(|h| width(h)).collect();
    for row in &grid.rows {
        match row {
            GridRow::Cells(cells) => {
                for (w, c) in widths.iter_mut().zip(cells) {
                    *w = (*w).max(width(c));
                }
            }
            GridRow::Note {
                label,
                implementation,
                ..
            } => {
                widths[0] = widths[0].max(width(label));
                widths[1] = widths[1].max(width(implementation));
            }
        }
    }
    let line = |out: &mut String, cells: &[&str]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let w = if i + 1 == cells.len() && !grid.numeric[i] {
                0 // no trailing padding on a left-aligned last column
            } else {
                widths[i]
            };
            pad(&mut s, c, w, grid.numeric[i]);
        }
        out.push_str("  ");
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(out, &grid.headers);
    let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
    out.push_str("  ");
    out.extend(std::iter::repeat_n('-', total));
    out.push('\n');
    for row in &grid.rows {
        match row {
            GridRow::Cells(cells) => {
                let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
                line(out, &cells);
            }
            GridRow::Note {
                label,
                implementation,
                text,
            } => {
                let mut s = String::from("  ");
                pad(&mut s, label, widths[0], false);
                s.push_str("  ");
                pad(&mut s, implementation, widths[1], false);
                s.push_str("  ");
                // Long reasons wrap within the table's width (at least 100 columns), indented
                // under the figures, so they stay readable in a 100-120 column terminal.
                let indent = width(&s);
                let room = (total + 2).max(100).saturating_sub(indent).max(30);
                let wrapped = wrap(text, room);
                for (i, part) in wrapped.lines().enumerate() {
                    if i > 0 {
                        s.extend(std::iter::repeat_n(' ', indent));
                    }
                    s.push_str(part);
                    s.push('\n');
                }
                out.push_str(&s);
            }
        }
    }
}

const LEGEND: &str = "Units: MB = 10^6 bytes, KB = 10^3 bytes; RTT percentiles are nearest-rank over the \
messages that came back; cpu % = server CPU time ÷ window, % of one core; wire/payload = bytes \
the client's KCP sessions sent ÷ payload bytes; queue delay = the client's mean RTT during the \
transfer above the smallest it saw (ms); vs tcp / vs kcp-go = \
MB/s ratio (>1 faster), average-RTT ratio (<1 faster), or cpu % and KB/session ratios (<1 \
cheaper) against the tcp row of the group / the kcp-go row with the same label.";

/// The whole report as aligned plain text for a terminal: one block per group (in order of first
/// appearance), one line per row, Skipped/Failed rows showing their reason, and a legend of units.
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    for group in groups(report) {
        let _ = writeln!(out, "== {group} ==");
        for grid in group_grids(report, group) {
            render_grid_text(&grid, &mut out);
        }
        out.push('\n');
    }
    if report.rows.is_empty() {
        out.push_str("(no measurements)\n\n");
    }
    out.push_str(&wrap(LEGEND, 100));
    out
}

fn wrap(text: &str, cols: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && width(&line) + 1 + width(word) > cols {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Escapes a cell for a GitHub markdown table: `|` would end the cell, and a newline the row.
fn md_cell(s: &str) -> String {
    one_line(s).replace('\\', "\\\\").replace('|', "\\|")
}

fn render_grid_md(grid: &Grid, out: &mut String) {
    let n = grid.headers.len();
    let _ = writeln!(out, "| {} |", grid.headers.join(" | "));
    let seps: Vec<&str> = grid
        .numeric
        .iter()
        .map(|&num| if num { "---:" } else { "---" })
        .collect();
    let _ = writeln!(out, "|{}|", seps.join("|"));
    for row in &grid.rows {
        let cells: Vec<String> = match row {
            GridRow::Cells(cells) => cells.iter().map(|c| md_cell(c)).collect(),
            GridRow::Note {
                label,
                implementation,
                text,
            } => {
                let mut c = vec![md_cell(label), md_cell(implementation), md_cell(text)];
                c.resize(n, String::new());
                c
            }
        };
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
}

/// A plot to link from the markdown: the group it shows and its path relative to the markdown
/// file.
#[derive(Clone, Debug)]
pub struct PlotLink {
    /// The group the plot belongs to (it is placed under that group's tables).
    pub group: String,
    /// Path relative to the markdown file, with `/` separators.
    pub href: String,
}

/// The report as GitHub markdown: a header with the machine and the exact commands (with their
/// start times), then one section per group with its tables, then the units legend.
pub fn markdown(report: &Report) -> String {
    markdown_with_plots(report, &[])
}

/// [`markdown`], with each plot's image placed under the tables of its group.
pub fn markdown_with_plots(report: &Report, plots: &[PlotLink]) -> String {
    let mut out = String::from("# kcpbench results\n\n");
    let machines: Vec<&str> = report.machine.lines().filter(|l| !l.is_empty()).collect();
    match machines.as_slice() {
        [] => {}
        [one] => {
            let _ = writeln!(out, "Machine: {}\n", md_cell(one));
        }
        many => {
            out.push_str("Machines:\n\n");
            for m in many {
                let _ = writeln!(out, "- {}", md_cell(m));
            }
            out.push('\n');
        }
    }
    let commands: Vec<&str> = report.command.lines().collect();
    let started: Vec<&str> = report.started.lines().collect();
    if commands.iter().any(|c| !c.trim().is_empty()) {
        out.push_str("Commands (UTC start time in the comment above each):\n\n```sh\n");
        for (i, c) in commands.iter().enumerate() {
            if let Some(s) = started.get(i).filter(|s| !s.is_empty()) {
                let _ = writeln!(out, "# started {s}");
            }
            let _ = writeln!(out, "{}", crate::client::portable_command(c));
        }
        out.push_str("```\n\n");
    }
    for group in groups(report) {
        let _ = writeln!(out, "## {}\n", md_cell(group));
        for grid in group_grids(report, group) {
            render_grid_md(&grid, &mut out);
            out.push('\n');
        }
        for p in plots.iter().filter(|p| p.group == group) {
            let _ = writeln!(out, "![{}]({})\n", md_cell(group), p.href);
        }
    }
    if report.rows.is_empty() {
        out.push_str("(no measurements)\n\n");
    }
    out.push_str(LEGEND);
    out.push('\n');
    out
}

/// Reads a report saved with `--json`.
pub fn read_report(path: &Path) -> anyhow::Result<Report> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a kcpbench JSON report", path.display()))
}

/// `kcpbench render`: merges the JSON reports (in the order given), writes the PNG plots into
/// `plots_dir` and the markdown page to `markdown_out` (linking the plots relative to the page), and
/// returns the terminal table for the caller to print.
pub fn render(
    json_files: &[PathBuf],
    markdown_out: Option<&Path>,
    plots_dir: Option<&Path>,
) -> anyhow::Result<String> {
    render_with(
        json_files,
        markdown_out,
        plots_dir,
        &plot::PlotOptions::default(),
    )
}

/// [`render`] with explicit plot options (e.g. a font file).
pub fn render_with(
    json_files: &[PathBuf],
    markdown_out: Option<&Path>,
    plots_dir: Option<&Path>,
    options: &plot::PlotOptions,
) -> anyhow::Result<String> {
    anyhow::ensure!(!json_files.is_empty(), "no JSON report given to render");
    let reports = json_files
        .iter()
        .map(|p| read_report(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let report = merge(reports);
    let plots: Vec<Plot> = match plots_dir {
        Some(dir) => plot::write_plots_with(&report, dir, options)?,
        None => Vec::new(),
    };
    if let Some(md_path) = markdown_out {
        let base = md_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(base).with_context(|| format!("creating {}", base.display()))?;
        let links = plots
            .iter()
            .map(|p| {
                Ok(PlotLink {
                    group: p.group.clone(),
                    href: relative_href(base, &p.path)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        std::fs::write(md_path, markdown_with_plots(&report, &links))
            .with_context(|| format!("writing {}", md_path.display()))?;
    }
    Ok(table(&report))
}

/// `target` relative to directory `base`, `/`-separated, for a markdown link. Both must exist.
pub fn relative_href(base: &Path, target: &Path) -> anyhow::Result<String> {
    let base = std::fs::canonicalize(base).with_context(|| format!("{}", base.display()))?;
    let target = std::fs::canonicalize(target).with_context(|| format!("{}", target.display()))?;
    let b: Vec<Component<'_>> = base.components().collect();
    let t: Vec<Component<'_>> = target.components().collect();
    let common = b.iter().zip(&t).take_while(|(x, y)| x == y).count();
    let mut parts: Vec<String> = vec!["..".to_string(); b.len() - common];
    parts.extend(
        t[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_small_vectors() {
        let v = [15, 20, 35, 40, 50];
        assert_eq!(percentile(&v, 0.0), Some(15));
        assert_eq!(percentile(&v, 5.0), Some(15));
        assert_eq!(percentile(&v, 30.0), Some(20));
        assert_eq!(percentile(&v, 40.0), Some(20));
        assert_eq!(percentile(&v, 50.0), Some(35));
        assert_eq!(percentile(&v, 100.0), Some(50));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn cdf_merges_equal_values() {
        let c = cdf(&[2000, 1000, 1000, 3000]);
        assert_eq!(c, vec![(1.0, 0.5), (2.0, 0.75), (3.0, 1.0)]);
        assert!(cdf(&[]).is_empty());
    }
}
