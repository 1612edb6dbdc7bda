//! The report layer: percentile math, ratios, the terminal table, markdown and PNG plots, all on
//! synthetic reports (no network, no timing).

use std::path::{Path, PathBuf};

use kcpbench::plot::{self, PlotKind, PlotOptions};
use kcpbench::report::{
    self, LatencySummary, cdf, mb_per_sec, merge, percentile, ratio, sessions_summary, summary,
};
use kcpbench::results::{Implementation, Measurement, Report, Row};

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

fn row(group: &str, label: &str, implementation: Implementation, result: Measurement) -> Row {
    Row {
        group: group.into(),
        label: label.into(),
        implementation,
        result,
    }
}

fn tput(mb: u64, secs: f64) -> Measurement {
    Measurement::Throughput {
        bytes: mb * 1_000_000,
        secs,
        streams: 1,
        wire_bytes: None,
        rtt_min_ms: None,
        queue_delay_ms: None,
    }
}

/// Deterministic RTTs: `n` values spread between `lo_ms` and `hi_ms`, shuffled by a fixed stride.
fn rtts(n: u64, lo_ms: u64, hi_ms: u64) -> Vec<u64> {
    (0..n)
        .map(|i| (i * 37) % n)
        .map(|k| lo_ms * 1000 + k * (hi_ms - lo_ms) * 1000 / n.max(1))
        .collect()
}

const T: &str = "one-way 256 MiB, 1 stream";
const L: &str = "echo 64 B every 20 ms × 500";
const S: &str = "16 B × 1/s per session, 10 s";

/// Every kind of measurement, including Skipped and Failed, in three groups.
fn synthetic() -> Report {
    use Implementation::*;
    Report {
        command: "kcpbench throughput --bytes 256MiB --json t.json".into(),
        machine: "AMD EPYC test CPU, 2 cores, Linux 6.1".into(),
        started: "2026-11-21T22:00:00Z".into(),
        rows: vec![
            row(T, "smux/kcp fast3", Rkcp, tput(400, 1.0)),
            row(T, "smux/kcp fast3", KcpGo, tput(160, 1.0)),
            row(T, "smux/kcp fast3 aes fec 10/3", Rkcp, tput(250, 1.0)),
            row(
                T,
                "smux/kcp fast3 aes fec 10/3",
                KcpGo,
                Measurement::Skipped {
                    why: "install golang-go to get the kcp-go column".into(),
                },
            ),
            row(T, "smux v2/tcp", Tcp, tput(170, 1.0)),
            row(T, "tcp", Tcp, tput(200, 1.0)),
            row(
                T,
                "kcp fast3 | odd label",
                Rkcp,
                Measurement::Failed {
                    error: "connection refused\n(server gone)".into(),
                },
            ),
            row(
                L,
                "kcp fast3",
                Rkcp,
                Measurement::Latency {
                    rtt_us: rtts(500, 60, 120),
                    lost: 0,
                    wire_bytes: None,
                },
            ),
            row(
                L,
                "kcp fast3",
                KcpGo,
                Measurement::Latency {
                    rtt_us: rtts(500, 70, 230),
                    lost: 2,
                    wire_bytes: None,
                },
            ),
            row(
                L,
                "tcp",
                Tcp,
                Measurement::Latency {
                    rtt_us: rtts(500, 60, 1100),
                    lost: 0,
                    wire_bytes: None,
                },
            ),
            row(
                S,
                "smux/kcp fast3",
                Rkcp,
                Measurement::Sessions {
                    sessions: 1000,
                    secs: 10.0,
                    server_cpu_secs: 1.5,
                    server_rss_before: 10_000_000,
                    server_rss_after: 18_000_000,
                    echoed: 10_000,
                    expected: 10_000,
                },
            ),
            row(
                S,
                "smux/kcp fast3",
                KcpGo,
                Measurement::Sessions {
                    sessions: 1000,
                    secs: 10.0,
                    server_cpu_secs: 6.0,
                    server_rss_before: 10_000_000,
                    server_rss_after: 54_000_000,
                    echoed: 9_990,
                    expected: 10_000,
                },
            ),
        ],
    }
}

#[test]
fn nearest_rank_percentiles_on_known_vectors() {
    let one_to_hundred: Vec<u64> = (1..=100).collect();
    assert_eq!(percentile(&one_to_hundred, 50.0), Some(50));
    assert_eq!(percentile(&one_to_hundred, 99.0), Some(99));
    assert_eq!(percentile(&one_to_hundred, 99.5), Some(100));
    assert_eq!(percentile(&one_to_hundred, 100.0), Some(100));
    assert_eq!(percentile(&one_to_hundred, 0.0), Some(1));
    // With ten samples p99 is the maximum (rank ⌈9.9⌉ = 10), p50 the fifth.
    let ten: Vec<u64> = (1..=10).map(|v| v * 10).collect();
    assert_eq!(percentile(&ten, 99.0), Some(100));
    assert_eq!(percentile(&ten, 50.0), Some(50));
    assert_eq!(percentile(&ten, 51.0), Some(60));
    assert_eq!(percentile(&[7], 99.0), Some(7));
    assert_eq!(percentile(&[], 50.0), None);
    // Out-of-range p is clamped.
    assert_eq!(percentile(&ten, 150.0), Some(100));
    assert_eq!(percentile(&ten, -3.0), Some(10));
}

#[test]
fn summary_sorts_and_averages() {
    let s = summary(&[400, 100, 300, 200]).unwrap();
    assert_eq!(
        s,
        LatencySummary {
            count: 4,
            min_us: 100,
            avg_us: 250.0,
            p50_us: 200,
            p99_us: 400,
            max_us: 400,
        }
    );
    assert_eq!(summary(&[]), None);
    // No overflow on huge values.
    let big = summary(&[u64::MAX, u64::MAX]).unwrap();
    assert_eq!(big.max_us, u64::MAX);
    assert!(big.avg_us > 1e19);
}

#[test]
fn cdf_is_monotone_and_ends_at_one() {
    let v = rtts(500, 60, 1100);
    let c = cdf(&v);
    assert_eq!(c.len(), 500, "all values distinct");
    assert!(c.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1));
    assert_eq!(c.last().unwrap().1, 1.0);
    assert_eq!(c[0], (60.0, 1.0 / 500.0));
}

#[test]
fn units_and_ratios() {
    assert_eq!(mb_per_sec(250_000_000, 2.0), Some(125.0));
    assert_eq!(mb_per_sec(1, 0.0), None);
    assert_eq!(ratio(&tput(400, 1.0), &tput(200, 1.0)), Some(2.0));
    assert_eq!(ratio(&tput(400, 2.0), &tput(100, 1.0)), Some(2.0));
    let lat = |v: Vec<u64>| Measurement::Latency {
        rtt_us: v,
        lost: 0,
        wire_bytes: None,
    };
    assert_eq!(ratio(&lat(vec![50, 150]), &lat(vec![200])), Some(0.5));
    // Different kinds, or a baseline without figures, have no ratio.
    assert_eq!(ratio(&tput(1, 1.0), &lat(vec![1])), None);
    let skipped = Measurement::Skipped { why: "x".into() };
    assert_eq!(ratio(&tput(1, 1.0), &skipped), None);
    assert_eq!(ratio(&tput(1, 1.0), &tput(0, 1.0)), None);

    let r = synthetic();
    let s = sessions_summary(&r.rows[10].result).unwrap();
    assert_eq!(s.cpu_percent, Some(15.0));
    assert_eq!(s.kb_per_session, Some(8.0));
    let go = sessions_summary(&r.rows[11].result).unwrap();
    assert_eq!(go.kb_per_session, Some(44.0));
    assert_eq!(ratio(&r.rows[10].result, &r.rows[11].result), Some(0.25));
    let mem = report::memory_ratio(&r.rows[10].result, &r.rows[11].result).unwrap();
    assert!((mem - 8.0 / 44.0).abs() < 1e-12);
    assert_eq!(
        report::memory_ratio(&tput(1, 1.0), &r.rows[11].result),
        None
    );
    // Memory that shrank is noise: shown as such, never as a negative ratio.
    let shrank = Measurement::Sessions {
        sessions: 10,
        secs: 1.0,
        server_cpu_secs: 0.0,
        server_rss_before: 2_000_000,
        server_rss_after: 1_990_000,
        echoed: 10,
        expected: 10,
    };
    assert_eq!(
        sessions_summary(&shrank).unwrap().kb_per_session,
        Some(-1.0)
    );
    assert_eq!(report::memory_ratio(&shrank, &r.rows[11].result), None);
    assert_eq!(report::memory_ratio(&r.rows[11].result, &shrank), None);
}

#[test]
fn baselines_pick_the_plain_tcp_row_and_the_same_label() {
    let r = synthetic();
    let rows = &r.rows;
    // The plain "tcp" row, not the smux one that appears first.
    let tcp = report::tcp_baseline(rows, &rows[0]).unwrap();
    assert_eq!(tcp.label, "tcp");
    // smux over TCP is compared with raw TCP; raw TCP with nothing.
    assert_eq!(report::tcp_baseline(rows, &rows[4]).unwrap().label, "tcp");
    assert!(report::tcp_baseline(rows, &rows[5]).is_none());
    let go = report::kcp_go_baseline(rows, &rows[0]).unwrap();
    assert_eq!(go.implementation, Implementation::KcpGo);
    assert_eq!(go.label, "smux/kcp fast3");
    // The kcp-go row for the aes/fec label was skipped: no ratio, but a baseline row exists.
    let skipped = report::kcp_go_baseline(rows, &rows[2]);
    assert!(skipped.is_none(), "a Skipped row is not a baseline");
    assert!(report::kcp_go_baseline(rows, &rows[1]).is_none());
}

#[test]
fn table_has_every_row_ratio_and_reason() {
    let r = synthetic();
    let t = report::table(&r);
    println!("{t}");
    for g in [T, L, S] {
        assert!(t.contains(&format!("== {g} ==")), "{g}");
    }
    // Groups in first-appearance order.
    assert!(t.find(T).unwrap() < t.find(L).unwrap() && t.find(L).unwrap() < t.find(S).unwrap());
    let body: Vec<&str> = t.lines().filter(|l| l.starts_with("  ")).collect();
    // 3 groups × (header + rule) + 12 rows.
    assert_eq!(body.len(), 3 * 2 + r.rows.len(), "{t}");
    for row in &r.rows {
        let name = report::implementation_name(row.implementation);
        assert!(
            body.iter()
                .any(|l| l.contains(row.label.as_str()) && l.contains(name)),
            "missing {} {name}",
            row.label
        );
    }
    // rkcp 400 MB/s vs tcp 200 and kcp-go 160.
    let first = body
        .iter()
        .find(|l| l.contains("smux/kcp fast3  "))
        .unwrap();
    assert!(
        first.contains("400.0") && first.contains("3200.0"),
        "{first}"
    );
    assert!(
        first.contains("2.00×") && first.contains("2.50×"),
        "{first}"
    );
    assert!(t.contains("skipped: install golang-go"));
    assert!(t.contains("FAILED: connection refused (server gone)"));
    // Sessions: 15 % of a core, 8 KB each, ratio 0.25 against kcp-go.
    let s = body.iter().find(|l| l.contains("10000/10000")).unwrap();
    assert!(
        s.contains("15.0") && s.contains("8.0") && s.contains("cpu 0.25× mem 0.18×"),
        "{s}"
    );
    assert!(t.contains("MB = 10^6 bytes"));
    // Fits a 120-column terminal, long reasons wrapped under the figures.
    for l in t.lines() {
        assert!(l.chars().count() <= 120, "too wide: {l}");
    }
    let mut long = synthetic();
    long.rows.truncate(4);
    let why = "install golang-go golang-github-xtaci-kcp-dev golang-github-xtaci-smux-dev \
               to get the kcp-go column, or pass --go ADDR of a running kcpbench-go serve";
    long.rows[3].result = Measurement::Skipped { why: why.into() };
    let t = report::table(&long);
    println!("{t}");
    let lines: Vec<&str> = t.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.contains("skipped: install"))
        .unwrap();
    let indent = lines[at].find("skipped:").unwrap();
    assert!(lines[at + 1].starts_with(&" ".repeat(indent)), "{t}");
    assert!(lines[at + 1][indent..].starts_with(|c: char| c.is_alphanumeric()));
    let rejoined: Vec<&str> = lines[at..at + 2].iter().map(|l| l.trim()).collect();
    assert!(rejoined.join(" ").contains("smux-dev to get"), "{t}");
    for l in t.lines() {
        assert!(l.chars().count() <= 120, "too wide: {l}");
    }
}

/// A markdown table is a header row, a delimiter row, and body rows, all with the same number of
/// unescaped `|` separated cells.
fn check_markdown_tables(md: &str) -> usize {
    let cells = |l: &str| {
        assert!(
            l.starts_with('|') && l.ends_with('|'),
            "not a table row: {l}"
        );
        let mut n = 0;
        let mut prev = ' ';
        for c in l.chars() {
            if c == '|' && prev != '\\' {
                n += 1;
            }
            prev = c;
        }
        n - 1
    };
    let lines: Vec<&str> = md.lines().collect();
    let mut tables = 0;
    let mut i = 0;
    while i < lines.len() {
        if lines[i].starts_with('|') {
            let width = cells(lines[i]);
            let delim = lines[i + 1];
            assert!(
                delim
                    .trim_matches('|')
                    .split('|')
                    .all(|c| c == "---" || c == "---:" || c == ":---"),
                "bad delimiter row {delim}"
            );
            assert_eq!(cells(delim), width);
            i += 2;
            while i < lines.len() && lines[i].starts_with('|') {
                assert_eq!(cells(lines[i]), width, "{}", lines[i]);
                i += 1;
            }
            assert!(
                i == lines.len() || lines[i].is_empty(),
                "table not ended by a blank line"
            );
            tables += 1;
        }
        i += 1;
    }
    tables
}

#[test]
fn markdown_is_valid_table_syntax_with_the_header() {
    let r = synthetic();
    let md = report::markdown(&r);
    assert_eq!(check_markdown_tables(&md), 3);
    assert!(md.contains(&r.command));
    assert!(md.contains(&r.machine));
    assert!(md.contains(&r.started));
    assert!(md.contains(r"kcp fast3 \| odd label"));
    for g in [T, L, S] {
        assert!(md.contains(&format!("## {g}")));
    }
}

#[test]
fn merge_keeps_each_command_with_its_start_time() {
    let a = synthetic();
    let mut b = synthetic();
    b.command = "kcpbench latency --json l.json".into();
    b.started = "2026-11-21T23:00:00Z".into();
    b.rows.truncate(1);
    let m = merge(vec![a.clone(), b.clone()]);
    assert_eq!(m.rows.len(), a.rows.len() + 1);
    assert_eq!(
        m.command.lines().collect::<Vec<_>>(),
        [&a.command, &b.command]
    );
    assert_eq!(
        m.started.lines().collect::<Vec<_>>(),
        [&a.started, &b.started]
    );
    assert_eq!(m.machine, a.machine, "one machine listed once");
    let md = report::markdown(&m);
    let block = md.split("```sh\n").nth(1).unwrap();
    assert!(block.starts_with(&format!("# started {}\n{}\n", a.started, a.command)));
    assert_eq!(merge(vec![a.clone()]).command, a.command);
    assert!(merge(vec![]).rows.is_empty());
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("kcpbench-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn assert_png(p: &Path) {
    let bytes = std::fs::read(p).unwrap();
    assert!(bytes.len() > 1000, "{} is tiny", p.display());
    assert!(bytes.starts_with(PNG_MAGIC), "{} is not a PNG", p.display());
}

#[test]
fn plots_are_png_files_one_per_group() {
    let dir = TempDir::new("plots");
    let r = synthetic();
    let plots = plot::write_plots_with(&r, &dir.0, &PlotOptions::default()).unwrap();
    let kinds: Vec<PlotKind> = plots.iter().map(|p| p.kind).collect();
    assert_eq!(
        kinds,
        [
            PlotKind::Throughput,
            PlotKind::LatencyCdf,
            PlotKind::Sessions
        ]
    );
    for p in &plots {
        assert!(p.path.starts_with(&dir.0));
        assert_png(&p.path);
    }
    // A group of only Skipped/Failed rows has nothing to plot.
    let only_skipped = Report {
        rows: vec![row(
            "g",
            "kcp",
            Implementation::KcpGo,
            Measurement::Skipped {
                why: "no go".into(),
            },
        )],
        ..Report::default()
    };
    assert!(
        plot::write_plots(&only_skipped, &dir.0.join("none"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_font_that_does_not_load_is_an_error() {
    let dir = TempDir::new("badfont");
    let bogus = dir.0.join("not-a-font.ttf");
    std::fs::write(&bogus, b"definitely not a font").unwrap();
    let opts = PlotOptions {
        font: Some(bogus.clone()),
    };
    let err = plot::write_plots_with(&synthetic(), &dir.0, &opts).unwrap_err();
    assert!(format!("{err:#}").contains("not-a-font.ttf"), "{err:#}");
    let missing = PlotOptions {
        font: Some(dir.0.join("missing.ttf")),
    };
    assert!(plot::write_plots_with(&synthetic(), &dir.0, &missing).is_err());
}

#[test]
fn render_merges_json_and_links_plots_relative_to_the_page() {
    let dir = TempDir::new("render");
    let a = synthetic();
    let mut b = synthetic();
    b.command = "kcpbench sessions --json s.json".into();
    b.rows.retain(|r| r.group == S);
    for r in &mut b.rows {
        r.group = "sessions again".into();
    }
    let (ja, jb) = (dir.0.join("a.json"), dir.0.join("b.json"));
    std::fs::write(&ja, serde_json::to_string(&a).unwrap()).unwrap();
    std::fs::write(&jb, serde_json::to_string(&b).unwrap()).unwrap();
    let md_path = dir.0.join("page").join("RESULTS.md");
    let plots = dir.0.join("results").join("plots");
    let table = report::render(&[ja, jb], Some(&md_path), Some(&plots)).unwrap();
    assert!(table.contains("== sessions again =="));
    let md = std::fs::read_to_string(&md_path).unwrap();
    assert_eq!(check_markdown_tables(&md), 4);
    let links: Vec<&str> = md
        .lines()
        .filter(|l| l.starts_with("!["))
        .map(|l| l.split("](").nth(1).unwrap().trim_end_matches(')'))
        .collect();
    assert_eq!(links.len(), 4, "{md}");
    for l in links {
        // The page is in a directory of its own (created by render), beside results/.
        assert!(l.starts_with("../results/plots/"), "{l}");
        assert_png(&dir.0.join("page").join(l));
    }
    // A file that is not a report names itself in the error.
    let junk = dir.0.join("junk.json");
    std::fs::write(&junk, "{}").unwrap();
    let err = report::render(&[junk], None, None).unwrap_err();
    assert!(format!("{err:#}").contains("junk.json"));
    assert!(report::render(&[], None, None).is_err());
}

/// rkcp throughput rows show bytes on the wire ÷ payload; rows without a wire count show "-".
#[test]
fn wire_payload_ratio_is_reported() {
    assert_eq!(report::wire_ratio(1_000, Some(1_050)), Some(1.05));
    assert_eq!(report::wire_ratio(1_000, None), None);
    assert_eq!(report::wire_ratio(0, Some(5)), None);
    let mut r = Report::default();
    r.rows.push(row(
        T,
        "smux/kcp fast3",
        Implementation::Rkcp,
        Measurement::Throughput {
            bytes: 100_000_000,
            secs: 1.0,
            streams: 1,
            wire_bytes: Some(104_500_000),
            rtt_min_ms: Some(40.2),
            queue_delay_ms: Some(3.12),
        },
    ));
    r.rows
        .push(row(T, "tcp", Implementation::Tcp, tput(100, 1.0)));
    let t = report::table(&r);
    println!("{t}");
    assert!(t.contains("wire/payload"), "{t}");
    let kcp = t.lines().find(|l| l.contains("smux/kcp")).unwrap();
    assert!(kcp.contains("1.045"), "{kcp}");
    assert!(t.contains("queue delay ms") && kcp.contains("3.1"), "{t}");
    let md = report::markdown(&r);
    assert!(md.contains("wire/payload") && md.contains("1.045"), "{md}");
    assert!(
        md.contains("| queue delay ms |") && md.contains("| 3.1 |"),
        "{md}"
    );
    let json = serde_json::to_string(&r.rows[0].result).unwrap();
    assert!(json.contains(r#""queue_delay_ms":3.12"#), "{json}");
    // The JSON of a row without a wire count has no such field (older reports read the same).
    let json = serde_json::to_string(&tput(1, 1.0)).unwrap();
    assert!(!json.contains("wire") && !json.contains("queue"), "{json}");
    let back: Measurement =
        serde_json::from_str(r#"{"kind":"throughput","bytes":1,"secs":1.0,"streams":1}"#).unwrap();
    assert!(matches!(
        back,
        Measurement::Throughput {
            wire_bytes: None,
            queue_delay_ms: None,
            ..
        }
    ));
}
