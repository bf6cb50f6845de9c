//! Progress on stderr: a redrawn line on a terminal, plain periodic lines otherwise.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Reports `done / total` rows with rate and ETA.
pub struct Progress {
    label: String,
    total: usize,
    done: usize,
    /// Rows done before this run (a resume): not part of the rate.
    done_before: usize,
    started: Instant,
    last_print: Instant,
    terminal: bool,
}

impl Progress {
    /// Starts a progress report for `total` rows.
    pub fn new(label: &str, total: usize) -> Self {
        let now = Instant::now();
        Self {
            label: label.to_string(),
            total,
            done: 0,
            done_before: 0,
            started: now,
            last_print: now,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    /// Counts `n` rows as done by an earlier run (a resume): shown, but not part of the rate.
    pub fn resume_from(&mut self, n: usize) {
        self.done += n;
        self.done_before += n;
    }

    /// Records `n` more rows done and prints if it is time to.
    pub fn advance(&mut self, n: usize) {
        self.done += n;
        let every = if self.terminal {
            Duration::from_millis(200)
        } else {
            Duration::from_secs(5)
        };
        if self.last_print.elapsed() >= every || self.done == self.total {
            self.print();
            self.last_print = Instant::now();
        }
    }

    fn print(&self) {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let rate = (self.done - self.done_before) as f64 / secs;
        let eta = if rate > 0.0 {
            (self.total - self.done) as f64 / rate
        } else {
            0.0
        };
        let pct = if self.total == 0 {
            100.0
        } else {
            100.0 * self.done as f64 / self.total as f64
        };
        let line = format!(
            "{}: {}/{} rows ({pct:.0}%), {rate:.1} rows/s, ETA {eta:.0}s",
            self.label, self.done, self.total
        );
        let mut err = std::io::stderr().lock();
        if self.terminal {
            let _ = write!(err, "\r\x1b[2K{line}");
            if self.done == self.total {
                let _ = writeln!(err);
            }
        } else {
            let _ = writeln!(err, "{line}");
        }
    }
}
