//! What a process uses, from /proc.

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Resident memory of process `pid` in KiB (0 if it cannot be read).
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// CPU time process `pid` has used, in clock ticks (0 if it cannot be read).
fn cpu_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces): utime
            // and stime are the 12th and 13th.
            let rest = &s[s.rfind(')')? + 1..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

/// Longest [`settle`] waits.
const MAX_SETTLE: std::time::Duration = std::time::Duration::from_secs(60);

/// Waits until every process in `pids` has used under a tenth of a core
/// over half a second (at most a minute), so that a round does not share
/// the machine with what a server still does after the round before (a
/// broker draining a backlog, a store sealing).
pub async fn settle(pids: &[u32]) {
    let step = std::time::Duration::from_millis(500);
    let started = std::time::Instant::now();
    let mut before: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
    while started.elapsed() < MAX_SETTLE {
        tokio::time::sleep(step).await;
        let now: Vec<u64> = pids.iter().map(|p| cpu_ticks(*p)).collect();
        // Clock ticks are 1/100 s: 5 in half a second is a tenth of a core.
        let busy = now
            .iter()
            .zip(&before)
            .any(|(n, b)| n.saturating_sub(*b) >= 5);
        if !busy {
            return;
        }
        before = now;
    }
}

/// Peak resident memory of process `pid` in KiB (0 if it cannot be read).
pub fn peak_rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:")
}
