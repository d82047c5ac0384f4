//! The wire trace for Python: a [`Trace`] that calls a Python callable with
//! `(connection_id, direction, text)`, direction `"C"` or `"S"`, for each line the engine
//! traces (already redacted: AUTH payloads, SASL responses and message content never reach
//! it; see `smtp_core::trace`).
//!
//! A sink is installed in a session only when Python asks for one (`Server.start(trace=...)`,
//! `set_trace` on the sans-IO objects), so an untraced connection pays nothing. The
//! blocking client is the exception: its engine takes the sink at connect, and smtplib
//! lets `set_debuglevel` be called on a connected client, so `Client` always carries one.
//! The callable sits in a slot that can be emptied or refilled while the connection runs;
//! while it is empty the engine builds no line at all (`Trace::enabled`).
//!
//! The callable runs attached to the interpreter (`Python::try_attach`: nothing runs
//! while the interpreter finalizes), from whatever thread runs the connection. An
//! exception it raises is swallowed (the trace never changes the conversation) and
//! reported once per sink through `logging` (logger `smtpx.wire`, level ERROR).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use pyo3::prelude::*;
use pyo3::types::PyDict;

use smtp_core::trace::{Direction, Trace, TraceSink};

/// A Python callable as a trace sink (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct PyTrace {
    /// The callable, shared so that a line can take it out of the lock before attaching
    /// (a thread holding the interpreter may be waiting for the lock in `set`).
    slot: Mutex<Option<Arc<Py<PyAny>>>>,
    /// An exception of the callable has been reported.
    reported: AtomicBool,
    /// perf: the slot holds a callable. Read without the lock by [`Trace::enabled`], so
    /// that an idle sink costs the engine nothing per line (no line is built).
    on: AtomicBool,
}

impl PyTrace {
    /// A sink calling `callable` (or nothing, until [`PyTrace::set`]).
    pub(crate) fn new(callable: Option<Py<PyAny>>) -> Arc<PyTrace> {
        Arc::new(PyTrace {
            on: AtomicBool::new(callable.is_some()),
            slot: Mutex::new(callable.map(Arc::new)),
            reported: AtomicBool::new(false),
        })
    }

    /// Replaces the callable; None stops calling Python.
    pub(crate) fn set(&self, callable: Option<Py<PyAny>>) {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        self.on.store(callable.is_some(), Ordering::Relaxed);
        let old = std::mem::replace(&mut *slot, callable.map(Arc::new));
        drop(slot);
        // Dropped outside the lock (a reference count may need the interpreter).
        drop(old);
    }

    /// This sink as the engine holds it.
    pub(crate) fn sink(self: &Arc<Self>) -> TraceSink {
        TraceSink::new(self.clone())
    }

    fn report(&self, py: Python<'_>, callable: &Bound<'_, PyAny>, error: PyErr) {
        if self.reported.swap(true, Ordering::Relaxed) {
            return;
        }
        let logged = (|| -> PyResult<()> {
            let logger = py
                .import("logging")?
                .call_method1("getLogger", ("smtpx.wire",))?;
            let kwargs = PyDict::new(py);
            kwargs.set_item("exc_info", error.value(py))?;
            logger.call_method(
                "error",
                (
                    "the wire trace callable %r raised (ignored; further errors of this trace are not reported)",
                    callable,
                ),
                Some(&kwargs),
            )?;
            Ok(())
        })();
        if let Err(e) = logged {
            e.write_unraisable(py, Some(callable));
        }
    }
}

impl Trace for PyTrace {
    fn enabled(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    fn line(&self, connection: u64, direction: Direction, text: &str) {
        let callable = self.slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let Some(callable) = callable else {
            return;
        };
        let direction = match direction {
            Direction::ClientToServer => "C",
            Direction::ServerToClient => "S",
        };
        Python::try_attach(move |py| {
            let bound = callable.bind(py);
            if let Err(error) = bound.call1((connection, direction, text)) {
                self.report(py, bound, error);
            }
            // The last reference (the slot was emptied meanwhile) goes while attached.
            drop(callable);
        });
    }
}
