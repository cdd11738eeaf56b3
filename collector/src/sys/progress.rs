//! Progress on stderr: one line per finished step when stderr is not a
//! terminal, a live spinner per running step when it is, nothing with `--quiet`.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Clone)]
pub enum Progress {
    /// Nothing.
    Quiet,
    /// One line per step on stderr.
    Lines,
    /// indicatif spinners.
    Live(MultiProgress),
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Progress::Quiet => "Quiet",
            Progress::Lines => "Lines",
            Progress::Live(_) => "Live",
        })
    }
}

/// Handle of one running step.
pub struct StepProgress {
    name: String,
    bar: Option<ProgressBar>,
    mode: Progress,
}

impl Progress {
    /// Picks the mode from `--quiet` and whether stderr is a terminal.
    pub fn detect(quiet: bool) -> Self {
        if quiet {
            Progress::Quiet
        } else if std::io::stderr().is_terminal() {
            Progress::Live(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
        } else {
            Progress::Lines
        }
    }

    /// Announces a step.
    pub fn start(&self, name: &str) -> StepProgress {
        let bar = match self {
            Progress::Live(mp) => {
                let pb = mp.add(ProgressBar::new_spinner());
                if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
                    pb.set_style(style);
                }
                pb.set_message(name.to_string());
                pb.enable_steady_tick(Duration::from_millis(120));
                Some(pb)
            }
            _ => None,
        };
        StepProgress {
            name: name.to_string(),
            bar,
            mode: self.clone(),
        }
    }

    /// Prints a free line (notes, warnings) without garbling the live display.
    pub fn line(&self, text: &str) {
        match self {
            Progress::Quiet => {}
            Progress::Lines => {
                let _ = writeln!(std::io::stderr(), "{text}");
            }
            Progress::Live(mp) => {
                let _ = mp.println(text);
            }
        }
    }
}

impl StepProgress {
    /// Ends the step with a status word and a detail.
    pub fn finish(self, status: &str, detail: &str, took: Duration) {
        let line = format!(
            "{:<8} {:<18} {:>7.2}s  {}",
            status,
            self.name,
            took.as_secs_f64(),
            detail
        );
        match (&self.mode, self.bar) {
            (Progress::Live(mp), Some(pb)) => {
                pb.finish_and_clear();
                mp.remove(&pb);
                let _ = mp.println(line);
            }
            (Progress::Lines, _) => {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
            _ => {}
        }
    }
}
