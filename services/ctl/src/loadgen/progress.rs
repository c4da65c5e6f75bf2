//! Progress of a load run on stderr: a bar when stderr is a terminal, else a plain line every
//! few seconds (for logs and CI).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    total: u64,
    started: Instant,
    last_line: Instant,
    every: Duration,
}

impl Progress {
    /// A bar on a terminal, plain lines otherwise.
    pub fn new(label: &str, total: u64) -> Progress {
        Progress::with_terminal(label, total, std::io::stderr().is_terminal())
    }

    pub fn with_terminal(label: &str, total: u64, terminal: bool) -> Progress {
        let bar = terminal.then(|| {
            let b = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            b.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:40.cyan/blue}] {pos}/{len} ({percent}%) {per_sec} eta {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            b.set_prefix(label.to_owned());
            b
        });
        let now = Instant::now();
        Progress {
            bar,
            label: label.to_owned(),
            total,
            started: now,
            last_line: now,
            every: Duration::from_secs(5),
        }
    }

    /// `sent` records so far.
    pub fn update(&mut self, sent: u64) {
        if let Some(b) = &self.bar {
            b.set_position(sent);
        } else if self.last_line.elapsed() >= self.every && sent < self.total {
            self.last_line = Instant::now();
            eprintln!("{}", self.line(sent));
        }
    }

    /// The plain progress line.
    pub fn line(&self, sent: u64) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        format!(
            "{}: {sent}/{} ({:.0}%), {:.0} records/s",
            self.label,
            self.total,
            sent as f64 * 100.0 / self.total.max(1) as f64,
            if secs > 0.0 { sent as f64 / secs } else { 0.0 }
        )
    }

    pub fn finish(&self, sent: u64) {
        match &self.bar {
            Some(b) => {
                b.set_position(sent);
                b.finish();
            }
            None => eprintln!("{}", self.line(sent)),
        }
    }
}
