//! PNG plots of a [`Report`] with `plotters`: a horizontal bar chart per throughput group, a
//! latency CDF per latency group and a CPU / memory chart per sessions group.
//!
//! # Fonts
//! `plotters` is built without its `ttf` feature (which needs fontconfig and freetype development
//! packages) and with `ab_glyph`, a pure-Rust rasteriser, so the crate builds on a machine that
//! has only the Rust toolchain. `ab_glyph` needs the font's bytes, which this module finds at run
//! time rather than shipping a font in the repository:
//! 1. the file in [`PlotOptions::font`], else the file named by the `KCPBENCH_FONT` environment
//!    variable (either must load, or plotting fails with an error naming the file);
//! 2. else well-known paths (DejaVu Sans, Liberation Sans, Noto Sans, FreeSans on Linux
//!    distributions; Arial on macOS and Windows);
//! 3. else any `*.ttf` / `*.otf` under the usual font directories, preferring a regular "Sans".
//!
//! When nothing is found, the plots are still drawn — bars, lines, grid — without any text, and a
//! warning on stderr says how to get labels (`apt-get install fonts-dejavu-core`, or
//! `KCPBENCH_FONT=/path/to/font.ttf`). The font bytes are loaded once per path and kept for the
//! life of the process (`plotters`' font table holds `'static` references).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use anyhow::{Context as _, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::{self, Kind};
use crate::results::{Implementation, Measurement, Report, Row};

/// The family name the loaded font is registered under in `plotters`.
const FAMILY: &str = "kcpbench-sans";

/// Where to find a font for the plots' text; see the module docs for the lookup order.
#[derive(Clone, Debug, Default)]
pub struct PlotOptions {
    /// A TrueType / OpenType file to use instead of looking one up.
    pub font: Option<PathBuf>,
}

/// What a plot shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlotKind {
    /// MB/s per row of a throughput group, as horizontal bars.
    Throughput,
    /// Cumulative distribution of round-trip times, one line per row of a latency group.
    LatencyCdf,
    /// Server CPU % and KB per session per row of a sessions group, as two bar panels.
    Sessions,
}

/// One PNG written by [`write_plots_with`].
#[derive(Clone, Debug)]
pub struct Plot {
    /// The group (`Row::group`) it shows.
    pub group: String,
    /// What it shows.
    pub kind: PlotKind,
    /// The file written.
    pub path: PathBuf,
}

/// Writes one PNG per plottable group of `report` into `dir` (created if needed) and returns the
/// paths, in group order. Groups whose rows are all Skipped/Failed get no plot. Looks the font up
/// as the module docs describe (`KCPBENCH_FONT` or system fonts).
pub fn write_plots(report: &Report, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    Ok(write_plots_with(report, dir, &PlotOptions::default())?
        .into_iter()
        .map(|p| p.path)
        .collect())
}

/// [`write_plots`] with options, returning which group each plot belongs to.
pub fn write_plots_with(
    report: &Report,
    dir: &Path,
    options: &PlotOptions,
) -> anyhow::Result<Vec<Plot>> {
    let text = select_font(options)?;
    draw_all(report, dir, text)
}

fn draw_all(report: &Report, dir: &Path, text: bool) -> anyhow::Result<Vec<Plot>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut plots = Vec::new();
    let mut groups: Vec<&str> = Vec::new();
    for r in &report.rows {
        if !groups.contains(&r.group.as_str()) {
            groups.push(&r.group);
        }
    }
    for group in groups {
        let rows: Vec<&Row> = report.rows.iter().filter(|r| r.group == group).collect();
        let mut kinds: Vec<Kind> = Vec::new();
        for r in &rows {
            if let Some(k) = report::kind(&r.result)
                && !kinds.contains(&k)
            {
                kinds.push(k);
            }
        }
        for (i, k) in kinds.iter().enumerate() {
            // Skipped/Failed rows are shown (as such) in the group's first kind of plot.
            let members: Vec<&Row> = rows
                .iter()
                .copied()
                .filter(|r| match report::kind(&r.result) {
                    Some(rk) => rk == *k,
                    None => i == 0,
                })
                .collect();
            let (plot_kind, prefix) = match k {
                Kind::Throughput => (PlotKind::Throughput, "throughput"),
                Kind::Latency => (PlotKind::LatencyCdf, "latency-cdf"),
                Kind::Sessions => (PlotKind::Sessions, "sessions"),
            };
            let path = dir.join(format!(
                "{:02}-{prefix}-{}.png",
                plots.len() + 1,
                slug(group)
            ));
            let ctx = Ctx { text };
            match k {
                Kind::Throughput => ctx.throughput(&path, group, &members),
                Kind::Latency => ctx.latency(&path, group, &members),
                Kind::Sessions => ctx.sessions(&path, group, &members),
            }
            .with_context(|| format!("drawing {}", path.display()))?;
            plots.push(Plot {
                group: group.to_string(),
                kind: plot_kind,
                path,
            });
        }
    }
    Ok(plots)
}

/// A file-name-safe, lower-case version of a group name (at most 60 characters).
fn slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
        if out.len() >= 60 {
            break;
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() { "group".into() } else { out }
}

// ---------------------------------------------------------------------------------------------
// Fonts

/// Font files loaded so far, by path: `plotters` keeps `'static` references, so each is leaked
/// once (a few hundred KB) and reused.
fn loaded() -> &'static Mutex<HashMap<PathBuf, &'static [u8]>> {
    static LOADED: OnceLock<Mutex<HashMap<PathBuf, &'static [u8]>>> = OnceLock::new();
    LOADED.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Loads `path` and makes it the font of every plot text.
fn use_font(path: &Path) -> anyhow::Result<()> {
    let mut map = loaded()
        .lock()
        .map_err(|_| anyhow!("font table poisoned"))?;
    let bytes: &'static [u8] = match map.get(path) {
        Some(b) => b,
        None => {
            let data = std::fs::read(path)
                .with_context(|| format!("reading font file {}", path.display()))?;
            let b: &'static [u8] = Box::leak(data.into_boxed_slice());
            map.insert(path.to_path_buf(), b);
            b
        }
    };
    for style in [FontStyle::Normal, FontStyle::Bold] {
        plotters::style::register_font(FAMILY, style, bytes).map_err(|_| {
            anyhow!(
                "{} is not a TrueType/OpenType font ab_glyph can read",
                path.display()
            )
        })?;
    }
    Ok(())
}

/// Decides the font for this call: `Ok(true)` when text can be drawn.
fn select_font(options: &PlotOptions) -> anyhow::Result<bool> {
    let explicit = options.font.clone().or_else(|| {
        std::env::var_os("KCPBENCH_FONT")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    if let Some(path) = explicit {
        use_font(&path)?;
        return Ok(true);
    }
    static AUTO: OnceLock<Option<PathBuf>> = OnceLock::new();
    let found = AUTO.get_or_init(|| {
        let found = find_system_font();
        if found.is_none() {
            eprintln!(
                "warning: kcpbench found no TrueType font, so the plots have no text (titles, \
                 axis labels, legends). Install one (Debian/Ubuntu: apt-get install \
                 fonts-dejavu-core) or set KCPBENCH_FONT=/path/to/font.ttf"
            );
        }
        found
    });
    match found {
        Some(path) => {
            use_font(path)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Well-known regular sans fonts, most common first.
const KNOWN_FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/google-noto/NotoSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
    "/usr/share/fonts/gnu-free/FreeSans.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

fn find_system_font() -> Option<PathBuf> {
    if let Some(p) = KNOWN_FONTS.iter().map(PathBuf::from).find(|p| p.is_file()) {
        return Some(p);
    }
    let mut roots = vec![
        PathBuf::from("/usr/share/fonts"),
        PathBuf::from("/usr/local/share/fonts"),
    ];
    if let Some(home) = std::env::var_os("HOME") {
        roots.push(Path::new(&home).join(".local/share/fonts"));
        roots.push(Path::new(&home).join(".fonts"));
    }
    let mut best: Option<(u32, PathBuf)> = None;
    let mut budget = 20_000usize; // bound the walk on machines with huge font trees
    for root in roots {
        scan_fonts(&root, 0, &mut budget, &mut best);
    }
    best.map(|(_, p)| p)
}

/// Depth-limited walk keeping the best-scoring font file: a regular upright sans beats
/// everything else, any readable outline font beats nothing.
fn scan_fonts(dir: &Path, depth: u32, budget: &mut usize, best: &mut Option<(u32, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        if *budget == 0 {
            return;
        }
        *budget -= 1;
        let path = e.path();
        if path.is_dir() {
            if depth < 5 {
                scan_fonts(&path, depth + 1, budget, best);
            }
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if !(name.ends_with(".ttf") || name.ends_with(".otf")) {
            continue;
        }
        let mut score = 1;
        if name.contains("sans") {
            score += 4;
        }
        if [
            "bold",
            "italic",
            "oblique",
            "mono",
            "condensed",
            "light",
            "black",
        ]
        .iter()
        .all(|w| !name.contains(w))
        {
            score += 2;
        }
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            *best = Some((score, path));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Drawing

/// Series colours (colour-blind-friendly "tableau" palette).
const PALETTE: &[RGBColor] = &[
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn impl_color(i: Implementation) -> RGBColor {
    match i {
        Implementation::Rkcp => PALETTE[0],
        Implementation::KcpGo => PALETTE[1],
        Implementation::Tcp => PALETTE[7],
    }
}

const GREY: RGBColor = RGBColor(110, 110, 110);
const WIDTH: u32 = 1100;
const ROW_PX: u32 = 34;

fn row_name(r: &Row) -> String {
    format!(
        "{} [{}]",
        r.label,
        report::implementation_name(r.implementation)
    )
}

fn font(size: u32) -> TextStyle<'static> {
    TextStyle::from((FAMILY, size).into_font())
}

/// One bar of a horizontal bar panel: its text, colour, and value or the reason it has none.
struct Bar {
    name: String,
    color: RGBColor,
    value: Result<f64, String>,
}

fn bar_of(r: &Row, value: Option<f64>) -> Bar {
    let value = match (&r.result, value) {
        (Measurement::Skipped { .. }, _) => Err("skipped".to_string()),
        (Measurement::Failed { .. }, _) => Err("FAILED".to_string()),
        (_, Some(v)) if v.is_finite() => Ok(v),
        _ => Err("no data".to_string()),
    };
    Bar {
        name: row_name(r),
        color: impl_color(r.implementation),
        value,
    }
}

/// Milliseconds from µs with the precision that matters at that size: 0.23, 12.4, 213.
fn ms_text(us: f64) -> String {
    let ms = us / 1000.0;
    if ms < 10.0 {
        format!("{ms:.2}")
    } else if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

/// An axis tick without trailing zeros: `100`, `2.5`, `0.1`.
fn tick(v: &f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

fn e<E: std::fmt::Display>(err: E) -> anyhow::Error {
    anyhow!("plotting: {err}")
}

/// Whether to draw text: false when no font could be found (see the module docs).
struct Ctx {
    text: bool,
}

impl Ctx {
    fn throughput(&self, path: &Path, group: &str, rows: &[&Row]) -> anyhow::Result<()> {
        let bars: Vec<Bar> = rows
            .iter()
            .map(|r| {
                let v = match r.result {
                    Measurement::Throughput { bytes, secs, .. } => report::mb_per_sec(bytes, secs),
                    _ => None,
                };
                bar_of(r, v)
            })
            .collect();
        let height = bars.len() as u32 * ROW_PX + 150;
        let root = BitMapBackend::new(path, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        self.bar_panel(
            &root,
            &root,
            &format!("Throughput: {group}"),
            "MB/s (1 MB = 10^6 bytes; higher is better)",
            &bars,
            |v| format!("{v:.1} MB/s ({:.0} Mbit/s)", v * 8.0),
        )?;
        root.present().map_err(e)?;
        Ok(())
    }

    fn sessions(&self, path: &Path, group: &str, rows: &[&Row]) -> anyhow::Result<()> {
        let summaries: Vec<_> = rows
            .iter()
            .map(|r| report::sessions_summary(&r.result))
            .collect();
        let cpu: Vec<Bar> = rows
            .iter()
            .zip(&summaries)
            .map(|(r, s)| bar_of(r, s.and_then(|s| s.cpu_percent)))
            .collect();
        let mem: Vec<Bar> = rows
            .iter()
            .zip(&summaries)
            .map(|(r, s)| bar_of(r, s.and_then(|s| s.kb_per_session)))
            .collect();
        let panel = rows.len() as u32 * ROW_PX + 150;
        let root = BitMapBackend::new(path, (WIDTH, 2 * panel)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let (top, bottom) = root.split_vertically(panel);
        let n = summaries
            .iter()
            .flatten()
            .map(|s| s.sessions)
            .max()
            .unwrap_or(0);
        self.bar_panel(
            &root,
            &top,
            &format!("Server CPU: {group}"),
            "server CPU, % of one core (lower is better)",
            &cpu,
            |v| format!("{v:.1} %"),
        )?;
        self.bar_panel(
            &root,
            &bottom,
            &format!("Server memory per session ({n} sessions)"),
            "KB (10^3 bytes) of server resident memory per session (lower is better)",
            &mem,
            |v| format!("{v:.1} KB"),
        )?;
        root.present().map_err(e)?;
        Ok(())
    }

    /// Horizontal bars, one per row, top to bottom in row order, labelled on the left with
    /// "label [implementation]" and on the right with the value (or "skipped" / "FAILED"). The
    /// colour is the implementation's; the labels name it, so no legend box hides a bar.
    fn bar_panel(
        &self,
        root: &DrawingArea<BitMapBackend<'_>, Shift>,
        area: &DrawingArea<BitMapBackend<'_>, Shift>,
        title: &str,
        x_desc: &str,
        bars: &[Bar],
        value_text: impl Fn(f64) -> String,
    ) -> anyhow::Result<()> {
        let n = bars.len().max(1);
        let max = bars
            .iter()
            .filter_map(|b| b.value.as_ref().ok().copied())
            .fold(0.0f64, f64::max);
        let lo = bars
            .iter()
            .filter_map(|b| b.value.as_ref().ok().copied())
            .fold(0.0f64, f64::min);
        let label_style = font(15).pos(Pos::new(HPos::Right, VPos::Center));
        let label_px = if self.text {
            let widest = bars
                .iter()
                .map(|b| root.estimate_text_size(&b.name, &label_style).map(|s| s.0))
                .collect::<Result<Vec<u32>, _>>()
                .map_err(e)?
                .into_iter()
                .max()
                .unwrap_or(0);
            (widest + 20).min(WIDTH / 2)
        } else {
            10
        };
        // Leave room right of the longest bar for its value text: the bar may take the plot
        // width less that text's width (and a little air), but at least 10 % is left.
        let value_px = if self.text && max > 0.0 {
            let style = font(14);
            bars.iter()
                .filter_map(|b| b.value.as_ref().ok())
                .map(|v| {
                    root.estimate_text_size(&value_text(*v), &style)
                        .map(|s| s.0)
                })
                .collect::<Result<Vec<u32>, _>>()
                .map_err(e)?
                .into_iter()
                .max()
                .unwrap_or(0)
                + 16
        } else {
            0
        };
        let plot_px = f64::from(area.dim_in_pixel().0.saturating_sub(label_px + 54).max(100));
        let bar_share = ((plot_px - f64::from(value_px)) / plot_px).clamp(0.3, 0.9);
        let hi = if max > 0.0 { max / bar_share } else { 1.0 };
        let mut builder = ChartBuilder::on(area);
        builder
            .margin(12)
            .margin_right(30)
            .y_label_area_size(label_px);
        if self.text {
            builder.caption(title, font(22)).x_label_area_size(50);
        } else {
            builder.x_label_area_size(10);
        }
        let mut chart = builder
            .build_cartesian_2d(lo * 1.3..hi, 0f64..n as f64)
            .map_err(e)?;
        {
            let mut mesh = chart.configure_mesh();
            mesh.disable_y_mesh().y_labels(0);
            if self.text {
                mesh.x_desc(x_desc)
                    .axis_desc_style(font(15))
                    .label_style(font(14))
                    .x_label_formatter(&tick)
                    .x_labels(10);
            } else {
                mesh.x_labels(0);
            }
            mesh.draw().map_err(e)?;
        }
        // Row i is drawn at the top: y = n - 1 - i .. n - i.
        let y_of = |i: usize| (n - 1 - i) as f64;
        for (i, b) in bars.iter().enumerate() {
            let y = y_of(i);
            if let Ok(v) = b.value {
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(0.0, y + 0.18), (v, y + 0.82)],
                        b.color.filled(),
                    )))
                    .map_err(e)?;
            }
            if self.text {
                let (lx, ly) = chart.backend_coord(&(lo * 1.3, y + 0.5));
                root.draw(&Text::new(
                    b.name.clone(),
                    (lx - 8, ly),
                    label_style.clone(),
                ))
                .map_err(e)?;
                let (text, at, color) = match &b.value {
                    Ok(v) => (value_text(*v), v.max(0.0), BLACK),
                    Err(why) => (why.clone(), 0.0, GREY),
                };
                let (vx, vy) = chart.backend_coord(&(at, y + 0.5));
                let style = font(14)
                    .color(&color)
                    .pos(Pos::new(HPos::Left, VPos::Center));
                root.draw(&Text::new(text, (vx + 6, vy), style))
                    .map_err(e)?;
            }
        }
        Ok(())
    }

    fn latency(&self, path: &Path, group: &str, rows: &[&Row]) -> anyhow::Result<()> {
        let root = BitMapBackend::new(path, (WIDTH, 700)).into_drawing_area();
        root.fill(&WHITE).map_err(e)?;
        let max_ms = rows
            .iter()
            .filter_map(|r| match &r.result {
                Measurement::Latency { rtt_us, .. } => rtt_us.iter().max().copied(),
                _ => None,
            })
            .max()
            .map_or(1.0, |us| (us as f64 / 1000.0 * 1.05).max(0.001));
        let mut builder = ChartBuilder::on(&root);
        builder.margin(15).margin_right(30);
        if self.text {
            builder
                .caption(format!("Latency CDF: {group}"), font(22))
                .x_label_area_size(50)
                .y_label_area_size(70);
        } else {
            builder.x_label_area_size(10).y_label_area_size(10);
        }
        let mut chart = builder
            .build_cartesian_2d(0f64..max_ms, 0f64..1.0)
            .map_err(e)?;
        {
            let mut mesh = chart.configure_mesh();
            if self.text {
                mesh.x_desc("round-trip time, ms")
                    .y_desc("fraction of messages with RTT at most x")
                    .axis_desc_style(font(15))
                    .label_style(font(14))
                    .x_label_formatter(&tick)
                    .y_label_formatter(&tick)
                    .x_labels(12)
                    .y_labels(11);
            } else {
                mesh.x_labels(0).y_labels(0);
            }
            mesh.draw().map_err(e)?;
        }
        // The implementation's colour (as in the bar charts) when each implementation has one
        // line; distinct colours when several configurations of one implementation are shown.
        let mut impls: Vec<Implementation> = rows.iter().map(|r| r.implementation).collect();
        impls.sort_by_key(|i| report::implementation_name(*i));
        impls.dedup();
        let by_impl = impls.len() == rows.len();
        for (i, r) in rows.iter().enumerate() {
            let color = if by_impl {
                impl_color(r.implementation)
            } else {
                PALETTE[i % PALETTE.len()]
            };
            match &r.result {
                Measurement::Latency { rtt_us, lost, .. } => {
                    // A step function: flat until each measured value, then up to its fraction.
                    let mut pts = vec![(0.0, 0.0)];
                    let mut prev = 0.0;
                    for (x, f) in report::cdf(rtt_us) {
                        pts.push((x, prev));
                        pts.push((x, f));
                        prev = f;
                    }
                    if prev > 0.0 {
                        pts.push((max_ms, prev));
                    }
                    let series = chart
                        .draw_series(LineSeries::new(pts, color.stroke_width(3)))
                        .map_err(e)?;
                    if self.text {
                        let stats = report::summary(rtt_us).map_or_else(
                            || "no replies".to_string(),
                            |s| {
                                format!(
                                    "avg {} / p99 {} / max {} ms",
                                    ms_text(s.avg_us),
                                    ms_text(s.p99_us as f64),
                                    ms_text(s.max_us as f64)
                                )
                            },
                        );
                        let lost = if *lost > 0 {
                            format!(", {lost} lost")
                        } else {
                            String::new()
                        };
                        series
                            .label(format!("{}: {stats}{lost}", row_name(r)))
                            .legend(move |(x, y)| {
                                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
                            });
                    }
                }
                Measurement::Skipped { .. } | Measurement::Failed { .. } if self.text => {
                    let what = if matches!(r.result, Measurement::Skipped { .. }) {
                        "skipped"
                    } else {
                        "FAILED"
                    };
                    chart
                        .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())
                        .map_err(e)?
                        .label(format!("{}: {what}", row_name(r)))
                        .legend(move |(x, y)| {
                            PathElement::new(vec![(x, y), (x + 20, y)], GREY.stroke_width(1))
                        });
                }
                _ => {}
            }
        }
        if self.text {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .label_font(font(14))
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .draw()
                .map_err(e)?;
        }
        root.present().map_err(e)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without a font nothing may try to lay out text (plotters would fail with
    /// "FontUnavailable"). This test binary never registers a font, so it proves that path.
    #[test]
    fn plots_without_a_font_have_no_text_and_still_draw() {
        let dir = std::env::temp_dir().join(format!("kcpbench-plot-nofont-{}", std::process::id()));
        let report = Report {
            rows: vec![
                Row {
                    group: "g".into(),
                    label: "kcp".into(),
                    implementation: Implementation::Rkcp,
                    result: Measurement::Throughput {
                        bytes: 10_000_000,
                        secs: 1.0,
                        streams: 1,
                        wire_bytes: None,
                        rtt_min_ms: None,
                        queue_delay_ms: None,
                    },
                },
                Row {
                    group: "lat".into(),
                    label: "kcp".into(),
                    implementation: Implementation::Rkcp,
                    result: Measurement::Latency {
                        rtt_us: vec![1000, 2000, 3000],
                        lost: 0,
                        wire_bytes: None,
                    },
                },
                Row {
                    group: "s".into(),
                    label: "kcp".into(),
                    implementation: Implementation::Rkcp,
                    result: Measurement::Sessions {
                        sessions: 10,
                        secs: 1.0,
                        server_cpu_secs: 0.1,
                        server_rss_before: 1000,
                        server_rss_after: 50_000,
                        echoed: 10,
                        expected: 10,
                    },
                },
            ],
            ..Report::default()
        };
        let plots = draw_all(&report, &dir, false).unwrap();
        assert_eq!(plots.len(), 3);
        for p in &plots {
            let bytes = std::fs::read(&p.path).unwrap();
            assert!(
                bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
                "{}",
                p.path.display()
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn slugs_are_file_name_safe() {
        assert_eq!(
            slug("one-way 256 MiB, 1 stream"),
            "one-way-256-mib-1-stream"
        );
        assert_eq!(slug("×××"), "group");
    }

    #[test]
    fn ticks_drop_trailing_zeros() {
        assert_eq!(tick(&100.0), "100");
        assert_eq!(tick(&2.5), "2.5");
        assert_eq!(tick(&0.1), "0.1");
        assert_eq!(tick(&-0.0001), "0");
        assert_eq!(ms_text(230.0), "0.23");
        assert_eq!(ms_text(12_440.0), "12.4");
        assert_eq!(ms_text(213_400.0), "213");
    }
}
