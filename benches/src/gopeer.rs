//! The Go peer, `kcpbench-go`: finding Go, building the peer, running its server and its client jobs.
//!
//! The kcp-go column of every table is measured Go↔Go: `kcpbench-go serve` is a control server that
//! speaks [`crate::proto`] with xtaci/kcp-go and xtaci/smux behind its data ports, and
//! `kcpbench-go run '<json job>'` is the matching client, printing one JSON result line. Both set kcp-go
//! up the way kcptun does (stream mode, no write delay, the mode's nodelay tuple, windows, MTU, ACK
//! nodelay, socket buffers, FEC, the cipher from the PBKDF2-derived key), so the column shows what a
//! kcptun user gets rather than what a harness costs.
//!
//! The peer is built from source (`benches/go/kcpbench-go`) in GOPATH mode against Debian's
//! golang-github-xtaci-kcp-dev and golang-github-xtaci-smux-dev, next to the running executable, and
//! rebuilt whenever a `.go` file is newer than the binary. Without Go, [`GoPeer::locate_or_build`]
//! returns the reason as a sentence for the user, and kcpbench records kcp-go rows as skipped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Where Debian's Go packages put their sources; the peer is built with this GOPATH.
pub const GOPATH: &str = "/usr/share/gocode";

/// Name of the built peer (next to the kcpbench executable, or in the directory given).
pub const EXE_NAME: &str = "kcpbench-go";

/// How long [`GoPeer::spawn_server`] waits for the `READY` line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest stderr text kept from a job, for error messages.
const STDERR_KEEP: usize = 16 * 1024;

/// What to install to get the kcp-go column.
const APT_HINT: &str = "apt-get install golang-go golang-github-xtaci-kcp-dev golang-github-xtaci-smux-dev to get the kcp-go column";

/// A built `kcpbench-go` binary.
#[derive(Clone, Debug)]
pub struct GoPeer {
    exe: PathBuf,
}

impl GoPeer {
    /// The peer's Go sources (`benches/go/kcpbench-go` of this crate's source tree).
    pub fn source_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("go/kcpbench-go")
    }

    /// Builds the peer next to the running executable if it is missing or older than its sources,
    /// and returns it. Blocking (a first build takes seconds; call it before measuring, or from
    /// `spawn_blocking`).
    ///
    /// # Errors
    /// Why the kcp-go column cannot be had, worded for the user (Go or the xtaci packages are not
    /// installed, the sources are not there, the build failed).
    pub fn locate_or_build() -> Result<GoPeer, String> {
        let exe = std::env::current_exe().map_err(|e| {
            format!("cannot tell where kcpbench runs from ({e}) to build {EXE_NAME}")
        })?;
        let dir = exe
            .parent()
            .ok_or_else(|| format!("{} has no directory", exe.display()))?;
        GoPeer::locate_or_build_in(dir)
    }

    /// Like [`GoPeer::locate_or_build`], with the binary kept in `dir`.
    ///
    /// # Errors
    /// As [`GoPeer::locate_or_build`].
    pub fn locate_or_build_in(dir: &Path) -> Result<GoPeer, String> {
        let exe = dir.join(EXE_NAME);
        let src = GoPeer::source_dir();
        let sources = go_sources(&src).map_err(|e| {
            format!(
                "the kcpbench-go sources are not at {} ({e}); run kcpbench from its source tree to get the kcp-go column",
                src.display()
            )
        })?;
        // Tests build from several threads of one process: one build at a time, and whoever waited
        // finds the binary fresh (the temporary name below is per process, not per thread).
        static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_build = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
        if is_fresh(&exe, &sources) {
            return Ok(GoPeer { exe });
        }
        let go = find_go().ok_or_else(|| format!("go not found in PATH: {APT_HINT}"))?;
        for pkg in ["kcp-go", "smux"] {
            let p = Path::new(GOPATH).join("src/github.com/xtaci").join(pkg);
            if !p.is_dir() {
                return Err(format!("{} is missing: {APT_HINT}", p.display()));
            }
        }
        build(&go, &src, &exe)?;
        Ok(GoPeer { exe })
    }

    /// A peer already built at `exe` (nothing is checked until it is run).
    pub fn at(exe: impl Into<PathBuf>) -> GoPeer {
        GoPeer { exe: exe.into() }
    }

    /// The binary.
    pub fn exe(&self) -> &Path {
        &self.exe
    }

    /// Starts `kcpbench-go serve --listen LISTEN --stdin-lifetime` and waits for its `READY` line.
    /// The server ends when the returned [`GoServer`] is dropped, or by itself if this process dies
    /// (its stdin closes).
    ///
    /// # Errors
    /// The process did not start, or did not announce itself within [`READY_TIMEOUT`].
    pub fn spawn_server(&self, listen: &str) -> anyhow::Result<GoServer> {
        let mut child = Command::new(&self.exe)
            .args(["serve", "--listen", listen, "--stdin-lifetime"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", self.exe.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let mut server = GoServer {
            child,
            stdin,
            addr: String::new(),
        };
        let stdout = stdout.context("kcpbench-go serve has no stdout")?;
        let (tx, rx) = mpsc::channel();
        // A thread, so a server that never speaks cannot block us past the timeout.
        std::thread::spawn(move || {
            let mut line = String::new();
            let r = BufReader::new(stdout).read_line(&mut line).map(|_| line);
            let _ = tx.send(r);
        });
        let line = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(r) => r.context("reading READY from kcpbench-go serve")?,
            Err(_) => bail!(
                "kcpbench-go serve did not say READY within {} s",
                READY_TIMEOUT.as_secs()
            ),
        };
        let Some(addr) = line.trim().strip_prefix("READY ") else {
            bail!("kcpbench-go serve said {line:?} instead of READY <addr>");
        };
        server.addr = addr.to_string();
        Ok(server)
    }

    /// Starts a client job (`kcpbench-go run '<job>'`, the contract's JSON job). The child is killed
    /// if the returned [`GoJob`] is dropped before it finishes, so a `tokio::time::timeout` around
    /// [`GoJob::finish`] bounds it. Needs a tokio runtime.
    ///
    /// # Errors
    /// The process did not start.
    pub fn start_job(&self, job: &Value) -> anyhow::Result<GoJob> {
        let mut child = tokio::process::Command::new(&self.exe)
            .arg("run")
            .arg(job.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} run", self.exe.display()))?;
        let mut stdout = child
            .stdout
            .take()
            .context("kcpbench-go run has no stdout")?;
        let stderr = child
            .stderr
            .take()
            .context("kcpbench-go run has no stderr")?;
        let (opened_tx, opened_rx) = oneshot::channel();
        let stdout_task = tokio::spawn(async move {
            let mut out = Vec::new();
            stdout.read_to_end(&mut out).await.map(|_| out)
        });
        let stderr_task = tokio::spawn(async move {
            let mut opened_tx = Some(opened_tx);
            let mut kept = String::new();
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.trim() == "OPENED" {
                    if let Some(tx) = opened_tx.take() {
                        let _ = tx.send(());
                    }
                } else if kept.len() < STDERR_KEEP {
                    kept.push_str(&line);
                    kept.push('\n');
                }
            }
            kept
        });
        Ok(GoJob {
            child,
            opened: Opened::Waiting(opened_rx),
            stdout: stdout_task,
            stderr: stderr_task,
        })
    }

    /// Runs a job to its end: its result object (which may say `"ok": false`), with `on_opened`
    /// called when a `sessions` job reports all sessions open. The child is killed after
    /// `timeout`.
    ///
    /// # Errors
    /// The process did not start, timed out, or printed no JSON result.
    pub async fn run_job(
        &self,
        job: &Value,
        timeout: Duration,
        mut on_opened: impl FnMut(),
    ) -> anyhow::Result<Value> {
        let mut j = self.start_job(job)?;
        let run = async {
            if j.opened().await {
                on_opened();
            }
            j.finish().await
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(r) => r,
            Err(_) => bail!(
                "kcpbench-go run timed out after {:.0} s",
                timeout.as_secs_f64()
            ),
        }
    }
}

/// A running `kcpbench-go serve`, killed when dropped.
#[derive(Debug)]
pub struct GoServer {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: String,
}

impl GoServer {
    /// The control address it announced (`HOST:PORT`).
    pub fn control_addr(&self) -> &str {
        &self.addr
    }
}

impl Drop for GoServer {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a job has said `OPENED` yet.
#[derive(Debug)]
enum Opened {
    Waiting(oneshot::Receiver<()>),
    Yes,
    Never,
}

/// A running `kcpbench-go run` job.
#[derive(Debug)]
pub struct GoJob {
    child: tokio::process::Child,
    opened: Opened,
    stdout: JoinHandle<std::io::Result<Vec<u8>>>,
    stderr: JoinHandle<String>,
}

impl GoJob {
    /// Waits until the job prints `OPENED` on stderr (a `sessions` job, all sessions open: true)
    /// or closes stderr without it (any other job, or a failure: false).
    pub async fn opened(&mut self) -> bool {
        if let Opened::Waiting(rx) = &mut self.opened {
            self.opened = match rx.await {
                Ok(()) => Opened::Yes,
                Err(_) => Opened::Never,
            };
        }
        matches!(self.opened, Opened::Yes)
    }

    /// Waits for the job to exit and returns its result object (which may say `"ok": false`).
    ///
    /// # Errors
    /// The job exited without printing a JSON object (its stderr is in the message).
    pub async fn finish(mut self) -> anyhow::Result<Value> {
        let out = (&mut self.stdout)
            .await
            .context("kcpbench-go stdout reader")?
            .context("reading kcpbench-go stdout")?;
        let err = (&mut self.stderr).await.unwrap_or_default();
        let status = self.child.wait().await.context("waiting for kcpbench-go")?;
        let text = String::from_utf8_lossy(&out);
        let last = text.lines().rev().find(|l| !l.trim().is_empty());
        match last.map(serde_json::from_str::<Value>) {
            Some(Ok(v)) if v.is_object() => Ok(v),
            _ => bail!(
                "kcpbench-go run exited ({status}) without a JSON result; stdout {:?}, stderr {:?}",
                text.trim(),
                err.trim()
            ),
        }
    }
}

/// The `.go` files of the peer's source directory.
fn go_sources(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        if p.extension().is_some_and(|x| x == "go") {
            v.push(p);
        }
    }
    if v.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no .go files",
        ));
    }
    Ok(v)
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// The binary exists and is at least as new as every source file.
fn is_fresh(exe: &Path, sources: &[PathBuf]) -> bool {
    let Some(built) = mtime(exe) else {
        return false;
    };
    sources.iter().all(|s| mtime(s).is_some_and(|m| m <= built))
}

/// `go` from PATH (Debian's golang-go links it to /usr/bin), else Debian's own location.
fn find_go() -> Option<PathBuf> {
    let from_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("go"))
            .find(|p| is_executable(p))
    });
    from_path.or_else(|| {
        let p = PathBuf::from("/usr/lib/go/bin/go");
        is_executable(&p).then_some(p)
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `go build` in GOPATH mode into a temporary name, then renamed over `exe`, so concurrent builds
/// (parallel tests) never run a half-written binary.
fn build(go: &Path, src: &Path, exe: &Path) -> Result<(), String> {
    let tmp = exe.with_file_name(format!("{EXE_NAME}.build-{}", std::process::id()));
    let mut cmd = Command::new(go);
    cmd.arg("build")
        .arg("-o")
        .arg(&tmp)
        .arg(".")
        .current_dir(src)
        .env("GOPATH", GOPATH)
        .env("GO111MODULE", "off")
        .env("GOFLAGS", "")
        .stdin(Stdio::null());
    // go refuses to build without a cache directory; give it one when the environment has none.
    let has_cache = ["GOCACHE", "XDG_CACHE_HOME", "HOME"]
        .iter()
        .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()));
    if !has_cache {
        cmd.env("GOCACHE", exe.with_file_name("kcpbench-go-cache"));
    }
    let out = cmd
        .output()
        .map_err(|e| format!("running {}: {e}", go.display()))?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!(
            "building {EXE_NAME} failed ({}): {}; are golang-github-xtaci-kcp-dev and golang-github-xtaci-smux-dev installed?",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    std::fs::rename(&tmp, exe).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        format!("moving the built {EXE_NAME} to {}: {e}", exe.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_found_and_freshness_follows_mtimes() {
        let src = GoPeer::source_dir();
        let files = go_sources(&src).unwrap();
        assert!(files.iter().any(|p| p.ends_with("main.go")));
        let dir = std::env::temp_dir().join(format!("gopeer-fresh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let exe = dir.join(EXE_NAME);
        assert!(!is_fresh(&exe, &files), "a missing binary is stale");
        std::fs::write(&exe, b"").unwrap();
        assert!(
            is_fresh(&exe, &files),
            "a binary newer than the sources is fresh"
        );
        let newer = dir.join("newer.go");
        std::fs::write(&newer, b"").unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        std::fs::File::options()
            .write(true)
            .open(&exe)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert!(!is_fresh(&exe, &[newer]), "an older binary is stale");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_source_dir_is_an_error() {
        assert!(go_sources(Path::new("/nonexistent/kcpbench-go")).is_err());
    }
}
