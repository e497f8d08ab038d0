//! How `snix-store copy` shows its progress: an indicatif bar on a
//! terminal, plain log lines for journals and pipes.

use snix_store::register::Claimed;

pub struct CopyProgress {
    bar: Option<indicatif::ProgressBar>,
    done: u64,
}

impl CopyProgress {
    /// `total`: NAR bytes of the whole closure.
    pub fn new(total: u64) -> Self {
        let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            let style = indicatif::ProgressStyle::with_template(
                "{bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} [{msg}]",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        CopyProgress { bar, done: 0 }
    }

    /// Before path `i` of `n`; `skip` when it is already present.
    pub fn at(&mut self, i: usize, n: usize, c: &Claimed, skip: bool) {
        if let Some(bar) = &self.bar {
            bar.set_position(self.done);
            bar.set_message(format!("{}/{n} {}", i + 1, c.store_path));
        } else if skip {
            tracing::info!("[{}/{n}] {} already present", i + 1, c.store_path);
        } else {
            tracing::info!("[{}/{n}] copying {} ({} bytes)", i + 1, c.store_path, c.nar_size);
        }
        self.done += c.nar_size;
    }

    pub fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
