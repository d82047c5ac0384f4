//! The compiled part of the `smtpx` Python package, imported as `smtpx._native`.
//!
//! Users import `smtpx`, whose pure-Python part (`python/smtpx/`) re-exports what is
//! here; `_native.pyi` describes this module to type checkers. Like every binding, this
//! crate translates types and errors and owns no protocol logic.
//!
//! Built by maturin (`pip install ./smtp-py`) as an abi3 extension for CPython 3.10 and
//! later; the workspace enables pyo3's `abi3-py310` feature.

use pyo3::prelude::*;

/// The compiled core of smtpx. Import `smtpx` instead of this module.
#[pymodule]
mod _native {
    use super::*;

    use pyo3::types::PyInt;
    use smtp_core::reply::ReplyCode;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))
    }

    /// The standard meaning of an SMTP reply code (RFC 5321 section 4.2), or None.
    ///
    /// For example ``reply_code_meaning(250)`` is "Requested mail action okay,
    /// completed". Any int without a standard meaning, including negative or huge
    /// ones, gives None; a value that is not an int raises TypeError.
    #[pyfunction]
    fn reply_code_meaning(code: &Bound<'_, PyInt>) -> Option<&'static str> {
        let code: u16 = code.extract().ok()?;
        ReplyCode::new(code)?.meaning()
    }
}
