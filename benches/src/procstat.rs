//! What the server process costs: CPU time (getrusage) and resident memory (/proc/self/statm), and the
//! open-files limit the sessions client needs raised.

/// User + system CPU time of this whole process since it started, in ns (`getrusage(RUSAGE_SELF)`).
pub fn cpu_ns() -> u64 {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct of integers.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable `rusage`; RUSAGE_SELF is always a valid `who`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    if rc != 0 {
        return 0;
    }
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Current resident set of this process in bytes: `/proc/self/statm` field 2 × page size (0 if unreadable).
pub fn rss_bytes() -> u64 {
    let Ok(s) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .unwrap_or(0);
    pages * page_size()
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 { p as u64 } else { 4096 }
}

/// Raises the soft `RLIMIT_NOFILE` to at least `want` (up to the hard limit).
///
/// # Errors
/// When even the hard limit is below `want`: the message says how to raise it.
pub fn raise_nofile(want: u64) -> anyhow::Result<u64> {
    // SAFETY: an all-zero `rlimit` is a valid value of this plain C struct.
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `rl` is a valid, writable `rlimit`.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        anyhow::bail!(
            "getrlimit(RLIMIT_NOFILE): {}",
            std::io::Error::last_os_error()
        );
    }
    if rl.rlim_cur >= want {
        return Ok(rl.rlim_cur);
    }
    let target = want.min(rl.rlim_max);
    let new = libc::rlimit {
        rlim_cur: target,
        rlim_max: rl.rlim_max,
    };
    // SAFETY: `new` is a valid `rlimit` with cur ≤ max.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
        anyhow::bail!(
            "setrlimit(RLIMIT_NOFILE, {target}): {}",
            std::io::Error::last_os_error()
        );
    }
    if target < want {
        anyhow::bail!(
            "need {want} open files but the hard limit is {}; raise it (ulimit -Hn {want} as root, or \
             /etc/security/limits.conf) or use fewer --sessions",
            rl.rlim_max
        );
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_plausible() {
        let a = cpu_ns();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(cpu_ns() >= a);
        assert!(rss_bytes() > 1 << 20);
        assert!(raise_nofile(64).unwrap() >= 64);
    }
}
