//! The part of Go's `time.Format` layouts kcptun's `--snmplog` file names use (`./snmp-20060102.log`).

/// Broken-down local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalTime {
    pub(crate) unix: u64,
    pub(crate) year: i32,
    /// 1..=12
    pub(crate) month: u32,
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
    /// 0 = Sunday
    pub(crate) weekday: u32,
}

impl LocalTime {
    /// Now, in the local time zone (as Go's `time.Now()`).
    pub(crate) fn now() -> LocalTime {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let t = unix as libc::time_t;
        // SAFETY: `tm` is plain old data (integers and a pointer), for which all-zero is a valid value.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid for the call; localtime_r is the thread-safe variant and writes only
        // into `tm`.
        let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
        if !ok {
            return LocalTime {
                unix,
                year: 1970,
                month: 1,
                day: 1,
                hour: 0,
                minute: 0,
                second: 0,
                weekday: 4,
            };
        }
        LocalTime {
            unix,
            year: tm.tm_year + 1900,
            month: (tm.tm_mon + 1) as u32,
            day: tm.tm_mday as u32,
            hour: tm.tm_hour as u32,
            minute: tm.tm_min as u32,
            second: tm.tm_sec as u32,
            weekday: tm.tm_wday as u32,
        }
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

/// Formats `t` with a Go layout: `2006 06 01 1 Jan January 02 2 _2 15 03 3 04 4 05 5 Mon Monday PM pm`
/// (the reference time Mon Jan 2 15:04:05 2006); other text is copied.
pub(crate) fn format(layout: &str, t: &LocalTime) -> String {
    let month = MONTHS[(t.month.clamp(1, 12) - 1) as usize];
    let day = DAYS[(t.weekday % 7) as usize];
    let h12 = match t.hour % 12 {
        0 => 12,
        h => h,
    };
    // Longest tokens first, in the order Go's nextStdChunk tries them.
    let tokens: [(&str, String); 21] = [
        ("January", month.to_string()),
        ("Jan", month[..3].to_string()),
        ("Monday", day.to_string()),
        ("Mon", day[..3].to_string()),
        ("2006", format!("{:04}", t.year)),
        ("01", format!("{:02}", t.month)),
        ("02", format!("{:02}", t.day)),
        ("03", format!("{h12:02}")),
        ("04", format!("{:02}", t.minute)),
        ("05", format!("{:02}", t.second)),
        ("06", format!("{:02}", t.year.rem_euclid(100))),
        ("15", format!("{}", t.hour)),
        ("_2", format!("{:>2}", t.day)),
        ("PM", if t.hour >= 12 { "PM" } else { "AM" }.to_string()),
        ("pm", if t.hour >= 12 { "pm" } else { "am" }.to_string()),
        ("1", t.month.to_string()),
        ("2", t.day.to_string()),
        ("3", h12.to_string()),
        ("4", t.minute.to_string()),
        ("5", t.second.to_string()),
        ("MST", String::new()),
    ];
    let mut out = String::new();
    let mut rest = layout;
    'outer: while !rest.is_empty() {
        for (tok, val) in &tokens {
            if *tok == "MST" {
                continue;
            }
            if let Some(r) = rest.strip_prefix(tok) {
                out.push_str(val);
                rest = r;
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kcptun_style_layouts() {
        let t = LocalTime {
            unix: 0,
            year: 2026,
            month: 11,
            day: 3,
            hour: 21,
            minute: 7,
            second: 9,
            weekday: 2,
        };
        assert_eq!(format("snmp-20060102.log", &t), "snmp-20261103.log");
        assert_eq!(
            format("s-2006-01-02_15.04.05.csv", &t),
            "s-2026-11-03_21.07.09.csv"
        );
        assert_eq!(format("Mon Jan _2 3PM", &t), "Tue Nov  3 9PM");
        assert_eq!(format("snmp.log", &t), "snmp.log");
        assert!(LocalTime::now().year >= 2024);
    }
}
