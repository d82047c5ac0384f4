//! The result objects of a batch (`smtpx.Reply`, `smtpx.RecipientResult`,
//! `smtpx.SendResult`), built here instead of from tuples in Python.
//!
//! perf: a batch of N messages gave Python N result tuples to rebuild as NamedTuples,
//! five Python-level constructions per message (`bench/blocking_client.py`). The types
//! are registered once by `smtpx/common.py` ([`register_result_types`]) and each object
//! is made with `tuple.__new__(cls, fields)`, which is what a NamedTuple's `_make` does,
//! without a Python frame. A server answers MAIL, RCPT and (without a queue id in it)
//! the final dot alike for every message of a batch, so each distinct reply becomes one
//! `Reply` shared by all the results that got it; they are immutable, so sharing them
//! changes nothing a caller can see.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyList, PyString, PyTuple, PyType};

use smtp_core::client::TransactionResult;
use smtp_core::reply::Reply;

use crate::client::reply_tuple;

/// The classes results are made of, and `tuple.__new__`.
struct ResultTypes {
    tuple_new: Py<PyAny>,
    reply: Py<PyType>,
    recipient: Py<PyType>,
    send: Py<PyType>,
}

static TYPES: PyOnceLock<ResultTypes> = PyOnceLock::new();

/// Registers the NamedTuple classes of results (done once by `smtpx/common.py`). Each
/// must be a tuple subclass with as many fields as the engine gives: `Reply` 4,
/// `RecipientResult` 4, `SendResult` 4.
#[pyfunction]
pub fn register_result_types(
    py: Python<'_>,
    reply: Bound<'_, PyType>,
    recipient_result: Bound<'_, PyType>,
    send_result: Bound<'_, PyType>,
) -> PyResult<()> {
    let tuple = py.get_type::<PyTuple>();
    for cls in [&reply, &recipient_result, &send_result] {
        if !cls.is_subclass(&tuple)? {
            return Err(pyo3::exceptions::PyTypeError::new_err(
                "result types must be tuple subclasses (NamedTuples)",
            ));
        }
    }
    let types = ResultTypes {
        tuple_new: tuple.getattr("__new__")?.unbind(),
        reply: reply.unbind(),
        recipient: recipient_result.unbind(),
        send: send_result.unbind(),
    };
    // A second registration (a reloaded module) keeps the first classes.
    let _ = TYPES.set(py, types);
    Ok(())
}

/// Builds result objects, remembering the most recent distinct replies' objects.
pub struct ResultObjects<'py> {
    py: Python<'py>,
    types: &'py ResultTypes,
    recent: Vec<(Reply, Bound<'py, PyAny>)>,
    /// The most recent distinct recipient addresses' `str` objects.
    addresses: Vec<Bound<'py, PyString>>,
}

impl<'py> ResultObjects<'py> {
    /// How many distinct replies are remembered (MAIL, RCPT, the final reply, a refusal).
    const KEPT: usize = 8;

    pub fn new(py: Python<'py>) -> PyResult<Self> {
        let types = TYPES
            .get(py)
            .ok_or_else(|| PyRuntimeError::new_err("smtpx result types are not registered"))?;
        Ok(ResultObjects {
            py,
            types,
            recent: Vec::with_capacity(Self::KEPT),
            addresses: Vec::with_capacity(Self::KEPT),
        })
    }

    /// An instance of `cls` with `fields`, as `tuple.__new__(cls, fields)`.
    fn make(&self, cls: &Py<PyType>, fields: Bound<'py, PyTuple>) -> PyResult<Bound<'py, PyAny>> {
        self.types
            .tuple_new
            .bind(self.py)
            .call1((cls.bind(self.py), fields))
    }

    /// The `Reply` of `reply`, shared with earlier results that got the same reply.
    fn reply(&mut self, reply: &Reply) -> PyResult<Bound<'py, PyAny>> {
        if let Some((_, object)) = self.recent.iter().find(|(known, _)| known == reply) {
            return Ok(object.clone());
        }
        let fields = reply_tuple(reply).into_pyobject(self.py)?;
        let object = self.make(&self.types.reply, fields)?;
        if self.recent.len() == Self::KEPT {
            self.recent.remove(0);
        }
        self.recent.push((reply.clone(), object.clone()));
        Ok(object)
    }

    /// The `str` of a recipient's address, shared with earlier results to the same one.
    fn address(&mut self, address: &str) -> Bound<'py, PyString> {
        if let Some(object) = self
            .addresses
            .iter()
            .find(|known| known.to_str().is_ok_and(|known| known == address))
        {
            return object.clone();
        }
        let object = PyString::new(self.py, address);
        if self.addresses.len() == Self::KEPT {
            self.addresses.remove(0);
        }
        self.addresses.push(object.clone());
        object
    }

    /// The `SendResult` of one transaction.
    pub fn result(&mut self, result: &TransactionResult) -> PyResult<Bound<'py, PyAny>> {
        let py = self.py;
        let mail = self.reply(&result.mail)?;
        let recipients = PyList::empty(py);
        for r in &result.recipients {
            let reply = self.reply(&r.reply)?;
            let delivery = match &r.delivery {
                Some(delivery) => self.reply(delivery)?,
                None => py.None().into_bound(py),
            };
            let fields = PyTuple::new(
                py,
                [
                    self.address(r.address.as_str()).into_any(),
                    reply,
                    delivery,
                    pyo3::types::PyBool::new(py, r.is_accepted())
                        .to_owned()
                        .into_any(),
                ],
            )?;
            recipients.append(self.make(&self.types.recipient, fields)?)?;
        }
        let data = match &result.data {
            Some(data) => self.reply(data)?,
            None => py.None().into_bound(py),
        };
        let fields = PyTuple::new(
            py,
            [
                mail,
                recipients.into_any(),
                data,
                result.queue_id().into_pyobject(py)?.into_any(),
            ],
        )?;
        self.make(&self.types.send, fields)
    }
}
