//! Repeating a command's screen: `--watch` for `rill cluster status`, and `rill top`'s refresh.

use clap::Args;

/// How often and how many times a screen is shown.
#[derive(Debug, Clone, Copy, Args)]
pub struct Repeat {
    /// Time between screens, in ms.
    #[arg(long, default_value_t = 2_000)]
    pub interval_ms: u64,
    /// Stop after this many screens [default: until interrupted].
    #[arg(long)]
    pub iterations: Option<u32>,
}

impl Repeat {
    /// `text` as one screen: on a terminal it replaces the previous screen (clear and home, as `top` does);
    /// piped, screens follow each other separated by a blank line.
    pub fn frame(&self, terminal: bool, text: &str) -> String {
        if terminal { format!("\x1b[2J\x1b[H{text}") } else { format!("{text}\n") }
    }
}
