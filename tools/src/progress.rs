//! Progress bars on stderr when it is a terminal (rate and ETA), nothing
//! otherwise: export counts the payload bytes of its selection, verify
//! the slot bytes it reads, reindex the slot locations it scans.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

fn bar(total: u64, what: &str, quiet: bool, template: &str) -> Option<ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.0}/s", state.per_sec());
            },
        );
    bar.set_style(style);
    bar.set_message(what.to_string());
    Some(bar)
}

/// A byte-count bar: `export [00:00:03] ==== 1.2 GiB/4.0 GiB 410 MiB/s ETA 7s`.
pub fn bytes_bar(total_bytes: u64, what: &str, quiet: bool) -> Option<ProgressBar> {
    bar(
        total_bytes,
        what,
        quiet,
        "{msg} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
    )
}

/// A count bar in `unit`s: `scan headers [00:00:02] ==== 120000/466000 slots 60000/s ETA 6s`.
pub fn count_bar(total: u64, unit: &str, what: &str, quiet: bool) -> Option<ProgressBar> {
    let template = format!(
        "{{msg}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} {{rate}} ETA {{eta}}"
    );
    bar(total, what, quiet, &template)
}
