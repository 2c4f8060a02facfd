//! dmaplay's command line: usage errors exit 2, other errors 1 naming the
//! target, and the help documents the exit codes. (An integration test of
//! this package, so `cargo test -p dmarec-tools` builds the dmaplay binary
//! the end-to-end tests in tests/ run.)

use std::process::{Command, Output};

fn dmaplay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dmaplay"))
        .args(args)
        .output()
        .expect("run dmaplay")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn usage_errors_exit_2_and_help_documents_exit_codes() {
    let out = dmaplay(&["verify"]);
    assert_eq!(out.status.code(), Some(2));
    let out = dmaplay(&["export", "x", "--out", "y"]);
    assert_eq!(out.status.code(), Some(2), "neither --channel nor --all");
    let help = text(&dmaplay(&["verify", "--help"]).stdout);
    assert!(
        help.contains("Exit status:") && help.contains("3  verify: bad"),
        "{help}"
    );
    let out = dmaplay(&["inspect", "/nonexistent/dev"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("target /nonexistent/dev: cannot stat"),
        "{err}"
    );
    let out = dmaplay(&["inspect", "x", "--seq", "9..3"]);
    assert_eq!(out.status.code(), Some(2));
}
