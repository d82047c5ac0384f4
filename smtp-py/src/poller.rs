//! `smtpx._native.ServerPoller`: the readiness of one asyncio server's direct-mode
//! connections (those whose socket the engine reads and writes itself, see
//! `ServerConnection.read_step`), watched by one epoll instance of its own.
//!
//! perf: with a reader per socket, every readable connection costs asyncio one event
//! (the selector's key, a `Handle`, its context) and a Python callback, before the
//! engine is called. Here asyncio watches only this poller's descriptor; its one callback
//! per loop iteration calls [`ServerPoller::poll`], which reads and steps every ready
//! connection in Rust and hands back only those that need Python (a hook to run, output
//! the socket did not take, the end of the stream, an earlier deadline, ...). A command
//! read and answered costs no Python at all.
//!
//! The poller decides nothing about a connection: the driver says which connections are
//! watched (while they want input), whether the engine may send on the socket (nothing
//! is held by the transport), and when the connection's timer fires; the step a read
//! leads to is the engine's (`ServerConnection`).

use pyo3::prelude::*;

use crate::connection::ServerConnection;

/// One watched connection.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
struct Watched {
    connection: Py<ServerConnection>,
    /// What `poll` hands back with the connection's outcome (the driver's protocol).
    owner: Py<PyAny>,
    /// The engine may send on the socket (the transport holds nothing unsent).
    send: bool,
    /// When the connection's timer fires; None: no timer is armed. A READ whose deadline
    /// comes before it goes to Python, which arms the timer again.
    timer_at: Option<f64>,
}

/// The direct-mode connections of one server and their epoll instance (see the module
/// docs and `_native.pyi`).
#[pyclass(module = "smtpx._native")]
pub struct ServerPoller {
    /// The epoll instance; None once closed.
    #[cfg(target_os = "linux")]
    epoll: Option<std::os::fd::OwnedFd>,
    watched: std::collections::HashMap<i32, Watched>,
}

impl std::fmt::Debug for ServerPoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerPoller")
            .field("fileno", &self.fileno())
            .field("watched", &self.watched.len())
            .finish()
    }
}

/// How many readiness events one `poll` takes at most (the rest stay ready for the next).
#[cfg(target_os = "linux")]
const EVENTS: usize = 256;

#[cfg(target_os = "linux")]
mod epoll {
    //! The three epoll calls, on descriptors the caller owns or borrows.
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    pub(super) fn create() -> io::Result<OwnedFd> {
        // SAFETY: epoll_create1 takes no pointer; a non-negative result is a new
        // descriptor that nothing else owns, so OwnedFd may close it.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nobody else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Watches `fd` for input (level-triggered), or changes nothing if it is watched.
    pub(super) fn add(epoll: &OwnedFd, fd: i32) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: fd as u64,
        };
        // SAFETY: `event` is a valid epoll_event for the whole call; the kernel checks
        // both descriptors.
        let done =
            unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) };
        if done < 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EEXIST) {
                return Err(error);
            }
        }
        Ok(())
    }

    /// Stops watching `fd` (an error, such as a descriptor closed meanwhile, which epoll
    /// dropped itself, changes nothing).
    pub(super) fn remove(epoll: &OwnedFd, fd: i32) {
        let mut event = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: as in `add`; the event is ignored by EPOLL_CTL_DEL on current kernels
        // but must be non-null on old ones.
        unsafe { libc::epoll_ctl(epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, fd, &mut event) };
    }

    /// The descriptors ready now (no waiting), into `events`; how many.
    pub(super) fn ready(epoll: &OwnedFd, events: &mut [libc::epoll_event]) -> io::Result<usize> {
        let capacity = i32::try_from(events.len()).unwrap_or(i32::MAX);
        // SAFETY: `events` is valid for `capacity` entries for the whole call.
        let n = unsafe { libc::epoll_wait(epoll.as_raw_fd(), events.as_mut_ptr(), capacity, 0) };
        if n < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(error);
        }
        Ok(n as usize)
    }
}

#[pymethods]
impl ServerPoller {
    /// A poller of its own epoll instance; OSError where there is no epoll (the driver
    /// then watches each socket with the event loop).
    #[new]
    fn new() -> PyResult<Self> {
        #[cfg(target_os = "linux")]
        {
            Ok(ServerPoller {
                epoll: Some(epoll::create()?),
                watched: std::collections::HashMap::new(),
            })
        }
        #[cfg(not(target_os = "linux"))]
        {
            Err(pyo3::exceptions::PyOSError::new_err(
                "ServerPoller needs epoll (Linux)",
            ))
        }
    }

    /// The epoll descriptor, readable while a watched connection is (-1 once closed).
    fn fileno(&self) -> i32 {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            self.epoll.as_ref().map_or(-1, |fd| fd.as_raw_fd())
        }
        #[cfg(not(target_os = "linux"))]
        {
            -1
        }
    }

    /// How many connections are watched.
    fn __len__(&self) -> usize {
        self.watched.len()
    }

    /// Watches the socket `fd` of `connection` for input; `poll` hands `owner` back with
    /// what a read led to. `send`: the engine may send its replies on `fd`; `timer_at`:
    /// when the connection's timer fires (None: none is armed). Watching a descriptor
    /// again replaces what was given for it.
    #[pyo3(signature = (fd, connection, owner, send, timer_at))]
    fn add(
        &mut self,
        fd: i32,
        connection: Py<ServerConnection>,
        owner: Py<PyAny>,
        send: bool,
        timer_at: Option<f64>,
    ) -> PyResult<()> {
        #[cfg(target_os = "linux")]
        {
            let Some(epoll) = &self.epoll else {
                return Err(pyo3::exceptions::PyValueError::new_err(
                    "the poller is closed",
                ));
            };
            epoll::add(epoll, fd)?;
        }
        self.watched.insert(
            fd,
            Watched {
                connection,
                owner,
                send,
                timer_at,
            },
        );
        Ok(())
    }

    /// Stops watching `fd`, if it is `connection`'s (a connection gone before does not
    /// remove the one now on its descriptor).
    fn remove(&mut self, fd: i32, connection: &Bound<'_, ServerConnection>) {
        if self
            .watched
            .get(&fd)
            .is_some_and(|watched| watched.connection.as_ptr() == connection.as_ptr())
        {
            self.watched.remove(&fd);
            #[cfg(target_os = "linux")]
            if let Some(epoll) = &self.epoll {
                epoll::remove(epoll, fd);
            }
        }
    }

    /// Whether the engine may send on `fd` (False while the transport holds bytes).
    fn set_send(&mut self, fd: i32, send: bool) {
        if let Some(watched) = self.watched.get_mut(&fd) {
            watched.send = send;
        }
    }

    /// When the timer of the connection on `fd` fires (None: none is armed).
    fn set_timer(&mut self, fd: i32, timer_at: Option<f64>) {
        if let Some(watched) = self.watched.get_mut(&fd) {
            watched.timer_at = timer_at;
        }
    }

    /// Reads every ready connection once and takes the step it leads to, at `now`;
    /// returns the `(owner, outcome)` pairs that need the driver, or None when there are
    /// none. The outcome is the step's `(kind, payload, output)` tuple, 0 at the end of
    /// the stream, an exception when reading or stepping failed, or None when the driver
    /// must read the socket itself. A READ step with nothing left to write and a deadline
    /// no earlier than the armed timer is done here and not handed back.
    fn poll<'py>(
        &mut self,
        py: Python<'py>,
        now: f64,
    ) -> PyResult<Option<Bound<'py, pyo3::types::PyList>>> {
        #[cfg(target_os = "linux")]
        {
            self.poll_ready(py, now)
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = (py, now);
            Ok(None)
        }
    }

    /// Stops watching every connection and closes the epoll descriptor.
    fn close(&mut self) {
        self.watched.clear();
        #[cfg(target_os = "linux")]
        {
            self.epoll = None;
        }
    }

    // The watched connections and their owners (which hold the server, which holds this
    // poller) are visible to Python's cycle collector.
    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        for watched in self.watched.values() {
            visit.call(&watched.connection)?;
            visit.call(&watched.owner)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.watched.clear();
    }
}

#[cfg(target_os = "linux")]
impl ServerPoller {
    fn poll_ready<'py>(
        &mut self,
        py: Python<'py>,
        now: f64,
    ) -> PyResult<Option<Bound<'py, pyo3::types::PyList>>> {
        use crate::connection::{READ, ReadStep};
        use pyo3::types::PyList;

        let Some(epoll) = &self.epoll else {
            return Ok(None);
        };
        let clock = crate::sans_io::seconds(now)?;
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        let n = epoll::ready(epoll, &mut events)?;
        let mut handed: Option<Bound<'py, PyList>> = None;
        for event in &events[..n] {
            let fd = event.u64 as i32;
            let Some(watched) = self.watched.get(&fd) else {
                epoll::remove(epoll, fd); // not ours any more
                continue;
            };
            let outcome = match watched.connection.bind(py).try_borrow_mut() {
                // Only if Python code run by a step (a trace) were stepping it: the
                // driver reads it itself.
                Err(_) => py.None().into_bound(py),
                Ok(mut connection) => {
                    let send_fd = watched.send.then_some(fd);
                    match connection.read_step_on(py, fd, clock, send_fd) {
                        Err(error) => error.into_value(py).into_bound(py).into_any(),
                        Ok(ReadStep::Nothing) => continue,
                        Ok(ReadStep::Eof) => 0isize.into_pyobject(py)?.into_any(),
                        Ok(ReadStep::Step((kind, payload, output))) => {
                            if kind == READ
                                && output.is_none()
                                && watched
                                    .timer_at
                                    .is_some_and(|at| connection.last_deadline() >= at)
                            {
                                continue; // answered, and the timer is armed early enough
                            }
                            (kind, payload, output).into_pyobject(py)?.into_any()
                        }
                    }
                }
            };
            let list = match &handed {
                Some(list) => list,
                None => handed.insert(PyList::empty(py)),
            };
            list.append((watched.owner.bind(py), outcome))?;
        }
        Ok(handed)
    }
}
