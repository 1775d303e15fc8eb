//! Reloading the TLS material without a restart: on SIGHUP, and when the certificate, key or CA file changes
//! (checked every `--tls-reload-poll-ms`; a change is a new modification time, size or inode, so a file
//! replaced by a rename counts too). A reload that fails (a half-written file, a key that does not match)
//! is logged and the previous material stays; the next change tries again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use super::Tls;

/// What identifies a version of one file.
type Stamp = Option<(SystemTime, u64, u64)>;

/// Watches for reload triggers until `stop` turns true. `poll_ms` 0 reloads on SIGHUP only.
pub async fn watch_files(tls: Arc<Tls>, poll_ms: u64, mut stop: watch::Receiver<bool>) {
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(hangup) => Some(hangup),
        Err(e) => {
            tracing::warn!("cannot watch for SIGHUP, TLS files reload on change only: {e}");
            None
        }
    };
    let paths = paths(&tls);
    let mut seen = stamps(&paths);
    let mut tick = tokio::time::interval(Duration::from_millis(poll_ms.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let why = tokio::select! {
            _ = tick.tick(), if poll_ms > 0 => {
                let now = stamps(&paths);
                if now == seen {
                    continue;
                }
                seen = now;
                "the files changed"
            }
            Some(()) = async { hangup.as_mut()?.recv().await } => {
                seen = stamps(&paths);
                "SIGHUP"
            }
            _ = stop.wait_for(|stopping| *stopping) => return,
        };
        match tls.reload() {
            Ok(()) => tracing::info!("TLS certificate, key and CA reloaded ({why}); new connections use them"),
            Err(e) => tracing::error!("TLS files not reloaded ({why}), the previous ones stay in use: {e:#}"),
        }
    }
}

fn paths(tls: &Tls) -> Vec<PathBuf> {
    let config = tls.config();
    [Some(config.cert.clone()), Some(config.key.clone()), config.ca.clone()].into_iter().flatten().collect()
}

fn stamps(paths: &[PathBuf]) -> Vec<Stamp> {
    use std::os::unix::fs::MetadataExt;
    paths
        .iter()
        .map(|path| {
            std::fs::metadata(path).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len(), m.ino()))
        })
        .collect()
}
