//! A progress line on stderr while a command does long work (checkpoints, restores, stop's
//! and diff's syncs, resume, image builds): a spinner, what it does, the elapsed time and the
//! latest stage the service reported through its `Progress` callback (the one MCP's progress
//! notifications use; an image build reports each line). Drawn only when stderr is a
//! terminal, redrawn in place and erased when the work ends; elsewhere nothing is drawn and a
//! stage line is printed as a log line only where `log_stages` asks (image builds, whose log
//! a CI job wants).

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::task::service::Progress;

const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const REDRAW: Duration = Duration::from_millis(100);

pub struct Bar {
    what: String,
    stage: Arc<Mutex<String>>,
    on_terminal: bool,
    log_stages: bool,
}

impl Bar {
    /// A bar for `what` (e.g. "checkpoint alpha").
    pub fn new(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            stage: Arc::default(),
            on_terminal: std::io::stderr().is_terminal(),
            log_stages: false,
        }
    }

    /// Off a terminal, print each stage as a line (on one, the bar shows the latest).
    pub fn log_stages(mut self) -> Self {
        self.log_stages = true;
        self
    }

    /// The service's progress callback: each stage replaces the bar's.
    pub fn progress(&self) -> Progress {
        let stage = self.stage.clone();
        let on_terminal = self.on_terminal;
        let log = self.log_stages;
        Arc::new(move |line: &str| {
            if on_terminal {
                if let Ok(mut stage) = stage.lock() {
                    *stage = printable(line);
                }
            } else if log {
                eprintln!("{line}");
            }
        })
    }

    /// Runs `work`, drawing the bar until it ends.
    pub async fn run<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        if !self.on_terminal {
            return work.await;
        }
        tokio::pin!(work);
        let started = Instant::now();
        let mut ticks = tokio::time::interval(REDRAW);
        let mut frame = 0;
        let result = loop {
            tokio::select! {
                // The frame first: the bar shows before the work's first poll, which may run
                // a while before it yields.
                biased;
                _ = ticks.tick() => {
                    let stage = self.stage.lock().map(|s| s.clone()).unwrap_or_default();
                    let line = render(FRAMES[frame % FRAMES.len()], &self.what, started.elapsed(), &stage, width());
                    frame += 1;
                    let mut err = std::io::stderr().lock();
                    let _ = write!(err, "\r\x1b[2K{line}");
                    let _ = err.flush();
                }
                result = &mut work => break result,
            }
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
        result
    }
}

/// One frame: `⠋ checkpoint alpha  3.4 s  stage`, cut to `width` characters.
fn render(spinner: char, what: &str, elapsed: Duration, stage: &str, width: usize) -> String {
    let mut line = format!("{spinner} {what}  {:.1} s", elapsed.as_secs_f64());
    if !stage.is_empty() {
        line.push_str("  ");
        line.push_str(stage);
    }
    // One column short of the edge: a full line would wrap on some terminals.
    line.chars().take(width.saturating_sub(1).max(10)).collect()
}

/// A stage as one line of plain text: control characters (a build's colours, carriage
/// returns) dropped, whitespace trimmed.
fn printable(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // An escape sequence: skip to its final letter.
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else if c.is_control() {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out.trim().to_string()
}

/// The terminal's width (stderr's), else 80.
fn width() -> usize {
    rustix::termios::tcgetwinsize(std::io::stderr())
        .ok()
        .map(|size| size.ws_col as usize)
        .filter(|w| *w > 0)
        .unwrap_or(80)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_names_the_work_its_time_and_stage_within_the_width() {
        let line = render('⠋', "checkpoint alpha", Duration::from_millis(3420), "Step 2/5", 80);
        assert_eq!(line, "⠋ checkpoint alpha  3.4 s  Step 2/5");
        let cut = render('⠋', "checkpoint alpha", Duration::from_secs(1), &"x".repeat(200), 40);
        assert_eq!(cut.chars().count(), 39);
    }

    #[test]
    fn stages_lose_escape_sequences_and_control_characters() {
        assert_eq!(printable("\x1b[31mStep 1/3\x1b[0m : RUN x\r\n"), "Step 1/3 : RUN x");
    }
}
