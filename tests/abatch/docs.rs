//! Documentation generated from the command definition (man page, completions, --help), and
//! options taken from the environment.

use crate::common::*;

const REGENERATE: &str = "cargo run --quiet -- --generate man > man/abatch.1";

#[test]
fn the_committed_man_page_is_what_the_code_generates() {
    let out = abatch().args(["--generate", "man"]).assert().success();
    let generated = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/man/abatch.1");
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "man/abatch.1 is out of date; regenerate it with:\n    {REGENERATE}"
    );
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH DESCRIPTION",
        ".SH OPTIONS",
        ".SH RELIABILITY",
        ".SH \"EXIT STATUS\"",
        ".SH ENVIRONMENT",
        ".SH EXAMPLES",
    ] {
        assert!(generated.contains(section), "no {section} in the man page");
    }
    assert!(generated.contains("ABATCH_BATCH_SIZE"));
}

#[test]
fn completions_generate_for_each_shell() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let out = abatch().args(["--generate", shell]).assert().success();
        let script = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
        assert!(script.contains("batch-size"), "{shell}: {script}");
        assert!(script.contains("on-error"), "{shell}");
    }
    abatch().args(["--generate", "tcsh"]).assert().code(2);
}

#[test]
fn long_help_ends_with_examples_and_short_help_stays_short() {
    let long = abatch().arg("--help").assert().success();
    let long = String::from_utf8_lossy(&long.get_output().stdout).into_owned();
    let examples = long.rsplit("Examples:").next().unwrap();
    assert_eq!(
        examples
            .lines()
            .filter(|l| l.trim_start().starts_with("abatch ") || l.contains("| abatch "))
            .count(),
        4,
        "{examples}"
    );
    assert!(long.contains("Exit status:"));
    let short = abatch().arg("-h").assert().success();
    let short = String::from_utf8_lossy(&short.get_output().stdout).into_owned();
    assert!(
        !short.contains("Examples:") && !short.contains("--generate"),
        "{short}"
    );
    assert!(short.lines().count() < long.lines().count() / 2);
    let version = abatch().arg("--version").assert().success();
    assert_eq!(
        String::from_utf8_lossy(&version.get_output().stdout),
        format!("abatch {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn options_come_from_the_environment_and_flags_win() {
    let server = quick_server();
    abatch()
        .env("ABATCH_URL", server.url())
        .env("ABATCH_BATCH_SIZE", "3")
        .env("ABATCH_ORDERED", "true")
        .env("ABATCH_QUIET", "1")
        .write_stdin(records(0..7))
        .assert()
        .success()
        .stderr("");
    let mut seen = sizes(&server);
    seen.sort_unstable();
    assert_eq!(seen, [1, 3, 3]);

    let server = quick_server();
    abatch()
        .env("ABATCH_URL", server.url())
        .env("ABATCH_BATCH_SIZE", "3")
        .env("ABATCH_QUIET", "false")
        .args(["--batch-size", "5"])
        .write_stdin(records(0..7))
        .assert()
        .success();
    let mut seen = sizes(&server);
    seen.sort_unstable();
    assert_eq!(seen, [2, 5]);

    let out = abatch()
        .env("ABATCH_URL", server.url())
        .env("ABATCH_BATCH_SIZE", "0")
        .write_stdin(records(0..1))
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("--batch-size"), "{stderr}");

    let help = abatch().arg("--help").assert().success();
    let help = String::from_utf8_lossy(&help.get_output().stdout).into_owned();
    assert!(help.contains("[env: ABATCH_CONCURRENCY=]"), "{help}");
}

#[test]
fn on_off_variables_take_only_words_that_say_so() {
    let server = quick_server();
    for (value, quiet) in [
        ("TRUE", true),
        ("Yes", true),
        ("on", true),
        ("1", true),
        ("false", false),
        ("NO", false),
        ("Off", false),
        ("0", false),
    ] {
        let out = abatch_to(&server)
            .env("ABATCH_QUIET", value)
            .write_stdin(records(0..1))
            .assert()
            .success();
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert_eq!(stderr.is_empty(), quiet, "ABATCH_QUIET={value}: {stderr}");
    }
    assert_eq!(server.requests().len(), 8);

    for (variable, flag) in [
        ("ABATCH_INSECURE", "--insecure"),
        ("ABATCH_ORDERED", "--ordered"),
        ("ABATCH_DRY_RUN", "--dry-run"),
        ("ABATCH_VERBOSE", "--verbose"),
    ] {
        let out = abatch_to(&server)
            .env(variable, "flase")
            .write_stdin(records(0..1))
            .assert()
            .code(2);
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        let expected = format!("error: invalid value 'flase' for {variable} ({flag}): expected ");
        assert!(stderr.starts_with(&expected), "{stderr}");
    }
    assert_eq!(
        server.requests().len(),
        8,
        "nothing sent after a usage error"
    );
}
