//! The engine's `log` records, forwarded to Python's `logging` (logger `smtpx.<module>`,
//! e.g. `smtpx.smtp_core.blocking.server`), so Python users see one line per connection
//! event like any other library's. Debug and trace records are not forwarded: they are
//! per command, and each forwarded record attaches to the interpreter.
//!
//! A record is dropped when the interpreter is finalizing (`try_attach` gives up) or
//! when logging itself fails; logging never takes a connection down.

use log::{Level, LevelFilter, Log, Metadata, Record};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

struct PythonLog;

static LOGGING: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

impl Log for PythonLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= Level::Info
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level: u8 = match record.level() {
            Level::Error => 40,
            Level::Warn => 30,
            Level::Info => 20,
            Level::Debug => 10,
            Level::Trace => 5,
        };
        let name = format!("smtpx.{}", record.target().replace("::", "."));
        let message = record.args().to_string();
        let _ = Python::try_attach(|py| -> PyResult<()> {
            let logging =
                LOGGING.get_or_try_init(py, || py.import("logging").map(Bound::unbind))?;
            let logger = logging.bind(py).call_method1("getLogger", (name,))?;
            if logger.call_method1("isEnabledFor", (level,))?.is_truthy()? {
                logger.call_method1("log", (level, "%s", message))?;
            }
            Ok(())
        });
    }

    fn flush(&self) {}
}

/// Installs the forwarding logger (once per process; a second call changes nothing).
pub fn install() {
    if log::set_logger(&PythonLog).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}
