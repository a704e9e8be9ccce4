//! The stderr logger of the daemons: simple_logger, or journald's own line format when systemd
//! started us. The wording of every line is [`atacama_core::logging`]'s.

use atacama_core::logging::format_journald;

/// Installs the stderr logger of the daemons: `level` (from `--log-level`) if given, else
/// `RUST_LOG` if it names a level, else `info`.
///
/// Started by systemd (`JOURNAL_STREAM` is set), each line is [`format_journald`]: a `<N>`
/// syslog priority prefix and no timestamp (the journal stamps it), so that
/// `journalctl -p warning` finds warnings and errors. Otherwise each line starts with a UTC
/// timestamp and the level name.
///
/// simple_logger writes with `eprintln!`, which panics when stderr is gone (a closed pipe):
/// the wrapper turns that into a lost line instead of a dead connection or a hung shutdown.
pub fn init(level: Option<log::LevelFilter>) -> Result<(), log::SetLoggerError> {
    let mut logger = simple_logger::SimpleLogger::new()
        .with_level(log::LevelFilter::Info)
        .env()
        .with_utc_timestamps();
    if let Some(level) = level {
        logger = logger.with_level(level);
    }
    if logger.max_level() < log::LevelFilter::Trace {
        // rustls warns whenever a client sends an IP address as SNI (msmtp and curl do):
        // client behaviour, not a server problem, and noise under `journalctl -p warning`.
        // Only `trace` shows it.
        logger = logger.with_module_level("rustls", log::LevelFilter::Error);
    }
    log::set_max_level(logger.max_level());
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        log::set_boxed_logger(Box::new(Journald(logger)))
    } else {
        log::set_boxed_logger(Box::new(NeverPanics(logger)))
    }
}

/// A logger whose failures to write are ignored.
struct NeverPanics<L>(L);

impl<L: log::Log> log::Log for NeverPanics<L> {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.0.log(record)));
    }

    fn flush(&self) {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.0.flush()));
    }
}

/// Writes [`format_journald`] lines to stderr, filtered by the levels of the logger inside;
/// a failed write is a lost line.
struct Journald<L>(L);

impl<L: log::Log> log::Log for Journald<L> {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        self.0.enabled(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        use std::io::Write as _;
        if self.enabled(record.metadata()) {
            let message = record.args().to_string();
            let text = format_journald(record.level(), record.target(), &message);
            // One write per record, so that lines of two threads never interleave.
            let _ = std::io::stderr().lock().write_all(text.as_bytes());
        }
    }

    fn flush(&self) {
        use std::io::Write as _;
        let _ = std::io::stderr().flush();
    }
}
