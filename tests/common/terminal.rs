//! Being the user's terminal: `tty_drive.py` (as the test user) runs a
//! command on a pty of the test's, types what the test says, and reports
//! the output and what was left in the terminal's input queue (what the
//! user's shell would read next).

use super::{tool, Env};

/// Runs `warren ARGS` on a terminal of the test's (`tty_drive.py`, as the
/// test user) and returns its output and the bytes left in that
/// terminal's input queue afterwards.
pub fn on_a_terminal(env: &Env, argv: &[&str]) -> (String, String) {
    typing_on_a_terminal(env, argv, "")
}

/// As [`on_a_terminal`], typing `input` (escapes as in Python) first.
pub fn typing_on_a_terminal(env: &Env, argv: &[&str], input: &str) -> (String, String) {
    let out = env
        .user_cmd("python3")
        .env("TTY_INPUT", input)
        .arg(tool("tty_drive.py"))
        .args(argv)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let pending = text
        .lines()
        .find_map(|l| l.strip_prefix("PENDING "))
        .unwrap_or_else(|| {
            panic!(
                "no PENDING line: {text}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .to_string();
    (text, pending)
}
