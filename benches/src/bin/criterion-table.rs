//! Prints a markdown table of a saved criterion baseline (`benches/baselines/<NAME>`, written by
//! `benches/criterion.sh save`): one row per bench with the mean time per iteration, its 95 %
//! confidence interval and, for benches that declare `Throughput::Bytes`, the rate in MB/s.
//!
//! `cargo run -p kcpbench --bin criterion-table -- benches/baselines/main`

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

#[derive(Deserialize)]
struct Benchmark {
    full_id: String,
    throughput: Option<Throughput>,
}

#[derive(Deserialize)]
enum Throughput {
    Bytes(u64),
    BytesDecimal(u64),
    Elements(u64),
}

#[derive(Deserialize)]
struct Estimates {
    mean: Estimate,
}

#[derive(Deserialize)]
struct Estimate {
    point_estimate: f64,
    confidence_interval: Interval,
}

#[derive(Deserialize)]
struct Interval {
    lower_bound: f64,
    upper_bound: f64,
}

fn find(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            find(&path, out)?;
        } else if path.file_name().is_some_and(|n| n == "benchmark.json") {
            out.push(path);
        }
    }
    Ok(())
}

fn time(ns: f64) -> String {
    match ns {
        n if n < 1e3 => format!("{n:.1} ns"),
        n if n < 1e6 => format!("{:.2} µs", n / 1e3),
        n if n < 1e9 => format!("{:.2} ms", n / 1e6),
        n => format!("{:.2} s", n / 1e9),
    }
}

fn main() -> Result<()> {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        bail!("usage: criterion-table <baseline dir, e.g. benches/baselines/main>");
    };
    let mut files = Vec::new();
    find(&dir, &mut files)?;
    if files.is_empty() {
        bail!(
            "no benchmark.json under {}: run benches/criterion.sh save first",
            dir.display()
        );
    }
    let mut rows = Vec::new();
    for f in files {
        let read = |p: &Path| {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
        };
        let b: Benchmark = serde_json::from_str(&read(&f)?)?;
        let e: Estimates = serde_json::from_str(&read(&f.with_file_name("estimates.json"))?)?;
        let ns = e.mean.point_estimate;
        let rate = match b.throughput {
            Some(Throughput::Bytes(n) | Throughput::BytesDecimal(n)) => {
                format!("{:.1} MB/s", n as f64 / ns * 1e3)
            }
            Some(Throughput::Elements(n)) => format!("{:.3} M elem/s", n as f64 / ns * 1e3),
            None => String::new(),
        };
        let ci = format!(
            "{} – {}",
            time(e.mean.confidence_interval.lower_bound),
            time(e.mean.confidence_interval.upper_bound)
        );
        rows.push((b.full_id, time(ns), ci, rate));
    }
    rows.sort();
    println!("| bench | mean per iteration | 95 % CI | throughput |");
    println!("|---|---:|---:|---:|");
    for (id, t, ci, rate) in rows {
        println!("| `{id}` | {t} | {ci} | {rate} |");
    }
    Ok(())
}
