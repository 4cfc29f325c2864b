//! How many bytes of log lie after an LSN: the writer notes its running
//! byte count every [`STEP`] bytes, so a consumer's lag in bytes is known to
//! within that step, from a list no longer than the retained log / step.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Bytes of log between two notes.
const STEP: u64 = 64 * 1024;

/// (LSN, bytes written up to and including it), every `STEP` bytes.
#[derive(Default)]
pub(crate) struct ByteIndex {
    inner: Mutex<Notes>,
}

#[derive(Default)]
struct Notes {
    marks: VecDeque<(u64, u64)>,
    /// The newest LSN and the bytes up to it.
    last: (u64, u64),
}

impl ByteIndex {
    fn notes(&self) -> std::sync::MutexGuard<'_, Notes> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writer has written `bytes` more, up to `lsn`.
    pub fn wrote(&self, lsn: u64, bytes: u64) {
        let mut n = self.notes();
        n.last = (lsn, n.last.1 + bytes);
        let due = n.marks.back().is_none_or(|m| n.last.1 - m.1 >= STEP);
        if due {
            let last = n.last;
            n.marks.push_back(last);
        }
    }

    /// Bytes of log after `lsn` (a little more: up to one step).
    pub fn after(&self, lsn: u64) -> u64 {
        let n = self.notes();
        if lsn >= n.last.0 {
            return 0;
        }
        let at = match n.marks.partition_point(|m| m.0 <= lsn) {
            0 => 0,
            i => n.marks[i - 1].1,
        };
        n.last.1 - at
    }

    /// Forgets notes below `lsn` (the log is trimmed up to it), keeping the last one at or below it.
    pub fn trim(&self, lsn: u64) {
        let mut n = self.notes();
        while n.marks.len() > 1 && n.marks[1].0 <= lsn {
            n.marks.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_in_bytes_is_known_within_a_step() {
        let idx = ByteIndex::default();
        for lsn in 1..=1000u64 {
            idx.wrote(lsn, 1024);
        }
        assert_eq!(idx.after(1000), 0);
        let lag = idx.after(500);
        assert!((500 * 1024..=500 * 1024 + STEP).contains(&lag), "{lag}");
        idx.trim(900);
        let lag = idx.after(950);
        assert!((50 * 1024..=50 * 1024 + STEP).contains(&lag), "{lag}");
        assert!(idx.notes().marks.len() <= 3);
    }
}
