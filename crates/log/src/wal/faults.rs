//! Injected I/O faults for the log writer's unit tests: the next writes and
//! fsyncs fail as a full disk, a failing device or a short write would.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

/// One injected failure.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// `ENOSPC`.
    NoSpace,
    /// `EIO`.
    Eio,
    /// Only this many bytes reach the file, then `ENOSPC`.
    Short(usize),
}

impl Fault {
    fn error(self) -> std::io::Error {
        match self {
            Fault::NoSpace | Fault::Short(_) => std::io::Error::from_raw_os_error(28),
            Fault::Eio => std::io::Error::from_raw_os_error(5),
        }
    }
}

/// Faults waiting to happen, in order, for writes and for fsyncs.
#[derive(Default)]
pub struct Faults {
    writes: Mutex<VecDeque<Option<Fault>>>,
    syncs: Mutex<VecDeque<Option<Fault>>>,
}

impl Faults {
    /// The next writes: `None` succeeds, `Some` fails.
    pub fn on_writes(&self, plan: impl IntoIterator<Item = Option<Fault>>) {
        self.writes.lock().unwrap().extend(plan);
    }

    /// The next fsyncs: `None` succeeds, `Some` fails.
    pub fn on_syncs(&self, plan: impl IntoIterator<Item = Option<Fault>>) {
        self.syncs.lock().unwrap().extend(plan);
    }

    /// Before a write of `buf` to `file`: fails it (a short one writing part) if planned.
    pub fn write(&self, file: &mut File, buf: &[u8]) -> std::io::Result<()> {
        match self.writes.lock().unwrap().pop_front().flatten() {
            None => Ok(()),
            Some(Fault::Short(n)) => {
                file.write_all(&buf[..n.min(buf.len())])?;
                Err(Fault::Short(n).error())
            }
            Some(f) => Err(f.error()),
        }
    }

    /// Before an fsync: fails it if planned.
    pub fn sync(&self) -> std::io::Result<()> {
        match self.syncs.lock().unwrap().pop_front().flatten() {
            None => Ok(()),
            Some(f) => Err(f.error()),
        }
    }
}
