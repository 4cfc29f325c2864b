//! The dashboard in a real browser: runs `web/tests/` (node's test runner,
//! playwright-core driving Debian's Chromium) against this build's binary.

use std::path::PathBuf;
use std::process::Command;

use crate::common::binary;

#[test]
fn dashboard_browser_tests() {
    let web = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../web");
    let ready = web.join("node_modules/playwright-core").exists()
        && PathBuf::from("/usr/bin/chromium").exists();
    if !ready {
        // .ci/run installs both; a local run without them says so instead of failing.
        assert!(
            std::env::var("CI").is_err(),
            "CI must have web/node_modules and chromium (see .ci/run)"
        );
        eprintln!("skipping browser tests: run `npm ci` in web/ and install chromium (apt-get install chromium)");
        return;
    }
    let out = Command::new("node")
        .args(["--test", "--test-concurrency=1", "tests/"])
        .current_dir(&web)
        .env("DASHBOARD_TEST_BIN", binary())
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "browser tests failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("# pass 4"), "{stdout}");
}
