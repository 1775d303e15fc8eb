//! Headless Chromium (Debian's `chromium`, installed by `.ci/browser.sh`) pointed at a broker's web console:
//! the DOM after the page's scripts ran, and screenshots kept under the build directory for people to look at.

use std::path::Path;
use std::process::Command;

/// How long the page runs (in Chromium's virtual time) before the DOM or screenshot is taken: the console
/// polls every 2 s, so this covers its first answers.
const PAGE_TIME_MS: u32 = 9_000;

fn chromium() -> Command {
    let mut command = Command::new("chromium");
    // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        &format!("--virtual-time-budget={PAGE_TIME_MS}"),
    ]);
    command
}

/// The page's DOM, serialized, once its scripts have run for a few seconds.
///
/// # Panics
///
/// If chromium is missing (run `.ci/browser.sh`) or fails.
pub fn rendered_dom(url: &str) -> String {
    let out = chromium()
        .args(["--dump-dom", url])
        .output()
        .unwrap_or_else(|e| panic!("cannot run chromium (install it with .ci/browser.sh): {e}"));
    assert!(out.status.success(), "chromium --dump-dom {url} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Saves a 1280-pixel-wide screenshot of the page to `path` (a `.png`), making its directory.
///
/// # Panics
///
/// If chromium is missing or writes no file.
pub fn screenshot(url: &str, path: &Path) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("create the screenshot directory");
    }
    let _ = std::fs::remove_file(path);
    let out = chromium()
        .args(["--window-size=1280,1400", &format!("--screenshot={}", path.display()), url])
        .output()
        .unwrap_or_else(|e| panic!("cannot run chromium (install it with .ci/browser.sh): {e}"));
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    assert!(size > 0, "chromium wrote no screenshot of {url}: {}", String::from_utf8_lossy(&out.stderr));
}
