//! The I/O core of rose's datagram transport: asyncio's `_SelectorDatagramTransport`
//! semantics (one `recvfrom` per readiness, `datagram_received(data, addr)`, `error_received`
//! for socket errors, `sendto` with an immediate send and a queue of whole datagrams), with the
//! syscalls and the address conversions of IP sockets done here.
//!
//! Addresses: IPv4 and IPv6 peers are turned into asyncio's tuples here (`inet_ntop` plus
//! glibc's scope suffix: what Python's socket module prints); a `sendto` address that is a
//! numeric IPv4/IPv6 tuple is turned into a `sockaddr` here. Everything else (host names, scoped
//! IPv6 destinations, AF_UNIX sockets) goes through the Python socket's own `recvfrom` and
//! `sendto`, so it behaves exactly as stdlib, errors included.
//!
//! The Python class `rose.transports._SelectorDatagramTransport` owns one of these; the pyclass
//! carries asyncio's class name so that a failing `datagram_received` is reported as
//! "Exception in callback _SelectorDatagramTransport._read_ready()", as stdlib reports it.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;

use pyo3::exceptions::{PyBlockingIOError, PyInterruptedError, PyOSError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView, PyString, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::errors::{last_errno, os_error};
use crate::event_loop::EventLoop;
use crate::gil_cell::GilCell;
use crate::sockaddr::addr_to_py;
use crate::sockfd::SockFd;
use crate::transport::{
    call_transport, close, count_open, detach, fatal, force_close, forget_on_drop, is_closing, is_reading,
    list_transport, log_lost_write, maybe_pause_protocol, maybe_resume_protocol, not_bytes_like, pause_reading,
    protocol_of, read_ready_paused, release_objects, resume_reading, retry_later, set_transport,
    set_write_buffer_limits, start_reading, transport_of, unwatch, watch, with_scratch, Common, Core, CoreState,
    RawBuffer, LOG_THRESHOLD_FOR_CONNLOST_WRITES, READ_SIZE,
};

// The biggest IPv4/IPv6 UDP payload is 65,507/65,527 bytes: the transports' 64 KiB read buffer
// (`READ_SIZE`) takes any datagram whole.
const _: () = assert!(READ_SIZE >= 65536);

pub struct State {
    common: Common,
    /// The remote address given to `create_datagram_endpoint(remote_addr=...)` (asyncio's
    /// `_address`): `sendto` accepts only it (or None).
    address: Option<Py<PyAny>>,
    /// Queued datagrams (already copied: `bytes`) and their addresses.
    queue: VecDeque<(Py<PyBytes>, Py<PyAny>)>,
    queued_bytes: usize,
}

impl CoreState for State {
    type Dropped = VecDeque<(Py<PyBytes>, Py<PyAny>)>;

    fn common(&mut self) -> &mut Common {
        &mut self.common
    }

    fn pending(&self) -> usize {
        self.queued_bytes
    }

    fn discard(&mut self) -> Self::Dropped {
        self.queued_bytes = 0;
        std::mem::take(&mut self.queue)
    }
}

#[pyclass(frozen, name = "_SelectorDatagramTransport", module = "rose._rose")]
pub struct DatagramTransport {
    event_loop: Py<EventLoop>,
    /// The Python socket object (for what is not done here: see the module note) and its fd
    /// (no syscall once the socket has let it go: see sockfd.rs).
    sock: SockFd,
    family: i32,
    /// The socket is connected (asyncio: `self._extra['peername']` is truthy): `send`.
    connected: bool,
    /// What the running asyncio counts per queued datagram beyond its data (3.12+: 8).
    header_size: usize,
    /// The running asyncio sends empty datagrams (3.12+; 3.11's `sendto(b'')` does nothing).
    sends_empty: bool,
    state: GilCell<State>,
    peer: GilCell<Option<PeerCache>>,
}

impl Drop for DatagramTransport {
    fn drop(&mut self) {
        forget_on_drop(self);
    }
}

impl Core for DatagramTransport {
    type State = State;
    const WRITE_READY: &'static str = "_sendto_ready";

    fn state(&self) -> &GilCell<State> {
        &self.state
    }

    fn event_loop(&self) -> &Py<EventLoop> {
        &self.event_loop
    }

    fn fd(&self) -> RawFd {
        self.sock.number()
    }

    fn on_ready(slf: &Bound<'_, Self>, write: bool) -> PyResult<()> {
        let this = slf.get();
        if write {
            this._sendto_ready(slf.py())
        } else {
            this._read_ready(slf.py())
        }
    }
}

/// The last sender seen by `recvfrom`: its sockaddr as the kernel gave it and the tuple handed
/// to the protocol. The next datagram from the same sender gets the same (immutable, equal)
/// tuple instead of a new str, int and tuple, and a `sendto` to that very tuple (an echo's
/// reply) skips the address conversion.
struct PeerCache {
    raw: libc::sockaddr_storage,
    len: libc::socklen_t,
    tuple: Py<PyAny>,
}

impl PeerCache {
    fn matches(&self, storage: &libc::sockaddr_storage, len: libc::socklen_t) -> bool {
        if self.len != len {
            return false;
        }
        let n = (len as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
        // SAFETY: both are plain-old-data sockaddr_storage values of at least `n` bytes.
        let (a, b) = unsafe {
            (
                std::slice::from_raw_parts((&self.raw as *const libc::sockaddr_storage).cast::<u8>(), n),
                std::slice::from_raw_parts((storage as *const libc::sockaddr_storage).cast::<u8>(), n),
            )
        };
        a == b
    }
}

/// What one send attempt gave.
enum Sent {
    Done,
    Again,
    Failed(PyErr),
}

fn c_addr_v4(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip.octets()),
        },
        sin_zero: [0; 8],
    }
}

fn c_addr_v6(ip: Ipv6Addr, port: u16, flowinfo: u32, scope_id: u32) -> libc::sockaddr_in6 {
    libc::sockaddr_in6 {
        sin6_family: libc::AF_INET6 as libc::sa_family_t,
        sin6_port: port.to_be(),
        sin6_flowinfo: flowinfo.to_be(),
        sin6_addr: libc::in6_addr { s6_addr: ip.octets() },
        sin6_scope_id: scope_id,
    }
}

/// A numeric address tuple for a socket of `family`, as a C sockaddr; None when Python's
/// socket module should convert it (names, scoped addresses, anything unusual).
fn parse_addr(family: i32, addr: &Bound<'_, PyAny>) -> Option<libc::sockaddr_storage> {
    let tuple = addr.cast::<PyTuple>().ok()?;
    let host = tuple.get_item(0).ok()?;
    let host = host.cast::<PyString>().ok()?.to_str().ok()?;
    let port: u16 = tuple.get_item(1).ok()?.extract().ok()?;
    // SAFETY: an all-zero sockaddr_storage is valid; we fill a prefix of it below.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    if family == libc::AF_INET && tuple.len() == 2 {
        let ip: Ipv4Addr = host.parse().ok()?;
        let sa = c_addr_v4(ip, port);
        // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
        unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sa) };
        return Some(storage);
    }
    if family == libc::AF_INET6 && (2..=4).contains(&tuple.len()) && !host.contains('%') {
        let ip: Ipv6Addr = host.parse().ok()?;
        let flowinfo: u32 = match tuple.get_item(2) {
            Ok(v) => v.extract().ok().filter(|f| *f <= 0xfffff)?,
            Err(_) => 0,
        };
        let scope_id: u32 = match tuple.get_item(3) {
            Ok(v) => v.extract().ok()?,
            Err(_) => 0,
        };
        let sa = c_addr_v6(ip, port, flowinfo, scope_id);
        // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
        unsafe { std::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sa) };
        return Some(storage);
    }
    None
}

impl DatagramTransport {
    fn error_received(&self, py: Python<'_>, err: PyErr) -> PyResult<()> {
        match protocol_of(self, py) {
            Some(p) => p
                .bind(py)
                .call_method1(intern!(py, "error_received"), (err.into_value(py),))
                .map(drop),
            None => Ok(()),
        }
    }

    /// The address tuple of a datagram's sender: the cached one when the sender is the same as
    /// last time (see `PeerCache`), else a new one, which becomes the cached one.
    fn peer_tuple<'py>(
        &self,
        py: Python<'py>,
        storage: &libc::sockaddr_storage,
        len: libc::socklen_t,
    ) -> PyResult<Bound<'py, PyAny>> {
        if let Some(cached) = &*self.peer.borrow_mut(py) {
            if cached.matches(storage, len) {
                return Ok(cached.tuple.bind(py).clone());
            }
        }
        let tuple = addr_to_py(py, storage)?;
        let old = self.peer.borrow_mut(py).replace(PeerCache {
            raw: *storage,
            len,
            tuple: tuple.clone().unbind(),
        });
        drop(old);
        Ok(tuple)
    }

    /// One datagram out: `send` when connected, `sendto` with a converted address, or the
    /// Python socket's `sendto` for addresses converted there.
    fn send_one(&self, py: Python<'_>, data: &[u8], pydata: &Bound<'_, PyAny>, addr: &Bound<'_, PyAny>) -> Sent {
        // asyncio's `sock.send`/`sock.sendto` on a closed socket: EBADF (error_received).
        let fd = match self.sock.get(py) {
            Ok(fd) => fd,
            Err(errno) => return Sent::Failed(os_error(errno)),
        };
        let n = if self.connected {
            // SAFETY: sending from a live buffer of `data.len()` bytes.
            unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), 0) }
        } else {
            let cached = match &*self.peer.borrow_mut(py) {
                Some(c) if addr.is(c.tuple.bind(py)) => Some((c.raw, c.len as usize)),
                _ => None,
            };
            let parsed = cached.or_else(|| {
                let len = if self.family == libc::AF_INET {
                    std::mem::size_of::<libc::sockaddr_in>()
                } else {
                    std::mem::size_of::<libc::sockaddr_in6>()
                };
                parse_addr(self.family, addr).map(|sa| (sa, len))
            });
            match parsed {
                // SAFETY: `sa` is an initialised sockaddr of the socket's family, `len` long.
                Some((sa, len)) => unsafe {
                    libc::sendto(
                        fd,
                        data.as_ptr().cast(),
                        data.len(),
                        0,
                        (&sa as *const libc::sockaddr_storage).cast(),
                        len as libc::socklen_t,
                    )
                },
                None => {
                    return match self
                        .sock
                        .socket(py)
                        .expect("a datagram transport is made with its socket")
                        .bind(py)
                        .call_method1(intern!(py, "sendto"), (pydata, addr))
                    {
                        Ok(_) => {
                            self.stats().bytes_written.add_shared(data.len() as u64);
                            Sent::Done
                        }
                        Err(err)
                            if err.is_instance_of::<PyBlockingIOError>(py)
                                || err.is_instance_of::<PyInterruptedError>(py) =>
                        {
                            Sent::Again
                        }
                        Err(err) => Sent::Failed(err),
                    };
                }
            }
        };
        if n >= 0 {
            self.stats().bytes_written.add_shared(n as u64);
            return Sent::Done;
        }
        match last_errno() {
            errno if retry_later(errno) => Sent::Again,
            errno => Sent::Failed(os_error(errno)),
        }
    }

    /// A failed send: socket errors go to `error_received`, anything else is fatal.
    fn send_failed(&self, py: Python<'_>, err: PyErr) -> PyResult<()> {
        if err.is_instance_of::<PyOSError>(py) {
            self.error_received(py, err)
        } else {
            fatal(self, py, err, "Fatal write error on datagram transport")
        }
    }
}

#[pymethods]
impl DatagramTransport {
    #[new]
    #[pyo3(signature = (event_loop, sock, protocol, address, connected, header_size=0, sends_empty=false))]
    fn new(
        event_loop: Py<EventLoop>,
        sock: &Bound<'_, PyAny>,
        protocol: Py<PyAny>,
        address: Option<Py<PyAny>>,
        connected: bool,
        header_size: usize,
        sends_empty: bool,
    ) -> PyResult<Self> {
        let py = sock.py();
        count_open(event_loop.get());
        Ok(Self {
            event_loop,
            family: sock.getattr(intern!(py, "family"))?.extract()?,
            sock: SockFd::new(sock)?,
            connected,
            header_size,
            sends_empty,
            peer: GilCell::new(None),
            state: GilCell::new(State {
                common: Common::new(protocol, None),
                address,
                queue: VecDeque::new(),
                queued_bytes: 0,
            }),
        })
    }

    /// The fd the transport was made with (asyncio's `_sock_fd`).
    #[getter]
    fn _fd(&self) -> RawFd {
        self.sock.number()
    }

    /// The socket object.
    fn _socket(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.sock.socket(py).map(|s| s.clone_ref(py))
    }

    fn _set_transport(&self, py: Python<'_>, transport: Py<PyAny>) {
        set_transport(self, py, transport);
    }

    /// Enter the transport in `loop._transports` again (`enter`), or take it out.
    fn _list_transport(&self, py: Python<'_>, enter: bool) {
        list_transport(self, py, enter);
    }

    fn set_protocol(&self, py: Python<'_>, protocol: Py<PyAny>) {
        let old = self.state.borrow_mut(py).common.protocol.replace(protocol);
        drop(old);
    }

    fn get_protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        protocol_of(self, py)
    }

    /// The reader callback: one datagram (asyncio's `_read_ready`).
    fn _read_ready(&self, py: Python<'_>) -> PyResult<()> {
        if read_ready_paused(self, py)? {
            return Ok(());
        }
        let Some(protocol) = protocol_of(self, py) else {
            return Ok(());
        };
        let protocol = protocol.bind(py);
        if self.family != libc::AF_INET && self.family != libc::AF_INET6 {
            return self.read_with_python(py, protocol);
        }
        let fd = match self.sock.get(py) {
            Ok(fd) => fd,
            Err(errno) => return self.error_received(py, os_error(errno)),
        };
        // SAFETY: an all-zero sockaddr_storage is a valid out-parameter.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        let received = with_scratch(|buf| {
            // SAFETY: reading at most `buf.len()` bytes into our buffer; `storage`/`len`
            // describe a valid address buffer.
            let n = unsafe {
                libc::recvfrom(
                    fd,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut storage as *mut libc::sockaddr_storage).cast(),
                    &mut len,
                )
            };
            if n < 0 {
                Err(last_errno())
            } else {
                self.stats().bytes_read.add_shared(n as u64);
                Ok(PyBytes::new(py, &buf[..n as usize]))
            }
        });
        let data = match received {
            Ok(data) => data,
            Err(errno) if retry_later(errno) => return Ok(()),
            Err(errno) => return self.error_received(py, os_error(errno)),
        };
        let addr = self.peer_tuple(py, &storage, len)?;
        protocol
            .call_method1(intern!(py, "datagram_received"), (data, addr))
            .map(drop)
    }

    /// The writer callback: send queued datagrams until the socket would block.
    fn _sendto_ready(&self, py: Python<'_>) -> PyResult<()> {
        loop {
            let Some((data, addr)) = self.state.borrow_mut(py).queue.pop_front() else {
                break;
            };
            let (data, addr) = (data.into_bound(py), addr.into_bound(py));
            let size = data.as_bytes().len() + self.header_size;
            self.state.borrow_mut(py).queued_bytes -= size;
            match self.send_one(py, data.as_bytes(), data.as_any(), &addr) {
                Sent::Done => {}
                Sent::Again => {
                    let mut st = self.state.borrow_mut(py);
                    st.queue.push_front((data.unbind(), addr.unbind()));
                    st.queued_bytes += size;
                    break;
                }
                Sent::Failed(err) => return self.send_failed(py, err),
            }
        }
        maybe_resume_protocol(self, py)?; // may queue more
        let (empty, closing) = {
            let st = self.state.borrow_mut(py);
            (st.queue.is_empty(), st.common.closing)
        };
        if empty {
            unwatch(self, py, true)?;
            if closing {
                call_transport(
                    py,
                    transport_of(self, py),
                    intern!(py, "_call_connection_lost"),
                    (py.None(),),
                )?;
            }
        }
        Ok(())
    }

    #[pyo3(signature = (data, addr=None))]
    fn sendto(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>, addr: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let bytes = data.cast::<PyBytes>().ok();
        if bytes.is_none() && !data.is_instance_of::<PyByteArray>() && !data.is_instance_of::<PyMemoryView>() {
            return Err(not_bytes_like(data, "sendto"));
        }
        if !this.sends_empty && data.len()? == 0 {
            return Ok(());
        }
        let mut addr = addr.unwrap_or_else(|| py.None().into_bound(py));
        let (address, conn_lost, queued, detached) = {
            let st = this.state.borrow_mut(py);
            let address = st.address.as_ref().map(|a| a.clone_ref(py).into_bound(py));
            let detached = st.common.transport.is_none();
            (address, st.common.conn_lost, !st.queue.is_empty(), detached)
        };
        if detached {
            // After connection_lost the socket is closed and its fd number may be another
            // socket's already: nothing is sent. (asyncio fails here with an AttributeError on
            // its cleared socket attribute.)
            this.state.borrow_mut(py).common.conn_lost += 1;
            return Ok(());
        }
        let address = address.filter(|a| a.is_truthy().unwrap_or(true));
        if let Some(address) = &address {
            if !addr.is_none() && !addr.eq(address)? {
                return Err(PyValueError::new_err(format!(
                    "Invalid address: must be None or {}",
                    address.str()?
                )));
            }
            addr = address.clone();
            if conn_lost > 0 {
                let warn = {
                    let mut st = this.state.borrow_mut(py);
                    st.common.conn_lost += 1;
                    st.common.conn_lost > LOG_THRESHOLD_FOR_CONNLOST_WRITES
                };
                if warn {
                    log_lost_write(py)?;
                }
                return Ok(());
            }
        }
        if !queued {
            let sent = match &bytes {
                Some(b) => this.send_one(py, b.as_bytes(), data, &addr),
                None => match RawBuffer::get(data, false) {
                    Ok(view) => this.send_one(py, view.as_slice(), data, &addr),
                    Err(err) => Sent::Failed(err),
                },
            };
            match sent {
                Sent::Done => return Ok(()),
                Sent::Again => watch(slf, true)?,
                Sent::Failed(err) => return this.send_failed(py, err),
            }
        }
        // What is queued must not change: a copy unless it is `bytes` already.
        let copy = match bytes {
            Some(b) => b.clone(),
            None => PyBytes::new(py, RawBuffer::get(data, false)?.as_slice()),
        };
        {
            let mut st = this.state.borrow_mut(py);
            st.queued_bytes += copy.as_bytes().len() + this.header_size;
            st.queue.push_back((copy.unbind(), addr.unbind()));
        }
        maybe_pause_protocol(this, py)
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        close(self, py)
    }

    fn _force_close(&self, py: Python<'_>, exc: Py<PyAny>) -> PyResult<()> {
        force_close(self, py, exc)
    }

    fn is_closing(&self, py: Python<'_>) -> bool {
        is_closing(self, py)
    }

    fn _start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        start_reading(slf)
    }

    fn is_reading(&self, py: Python<'_>) -> bool {
        is_reading(self, py)
    }

    fn _pause_reading(&self, py: Python<'_>) -> bool {
        pause_reading(self, py)
    }

    fn _resume_reading(slf: &Bound<'_, Self>) -> PyResult<bool> {
        resume_reading(slf)
    }

    fn get_write_buffer_size(&self, py: Python<'_>) -> usize {
        self.state.borrow_mut(py).queued_bytes
    }

    fn _set_write_buffer_limits(&self, py: Python<'_>, high: Bound<'_, PyAny>, low: Bound<'_, PyAny>) -> PyResult<()> {
        set_write_buffer_limits(self, py, high, low)
    }

    fn get_write_buffer_limits(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        self.state.borrow_mut(py).common.flow.limits(py)
    }

    #[getter]
    fn _protocol_paused(&self, py: Python<'_>) -> bool {
        self.state.borrow_mut(py).common.protocol_paused
    }

    /// asyncio's `_paused`: `pause_reading()` was called (and not undone).
    #[getter]
    fn _paused(&self, py: Python<'_>) -> bool {
        self.state.borrow_mut(py).common.paused
    }

    #[getter]
    fn _conn_lost(&self, py: Python<'_>) -> u32 {
        self.state.borrow_mut(py).common.conn_lost
    }

    /// (reading registered, writing registered) for the repr.
    fn _polling(&self, py: Python<'_>) -> (bool, bool) {
        let st = self.state.borrow_mut(py);
        (st.common.read_watched && !st.common.paused, st.common.write_watched)
    }

    fn _detach(&self, py: Python<'_>) {
        detach(self, py)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.event_loop)?;
        // Not the socket: the GC then sees it as held from outside, so when an unclosed
        // transport is collected, its `__del__` (which warns and closes the socket, as
        // asyncio's) runs while the socket is still alive, and the socket's own finalizer
        // finds it closed and stays silent, as on asyncio. A socket refers to no object that
        // could lead back here, so no cycle goes through this edge.
        if let Some(st) = self.state.try_borrow_for_gc() {
            st.common.traverse(&visit)?;
            visit.call(&st.address)?;
            for (_, addr) in &st.queue {
                visit.call(addr)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            if let Some(mut st) = self.state.try_borrow_mut(py) {
                let taken = (
                    release_objects(self, py, &mut st.common),
                    st.address.take(),
                    std::mem::take(&mut st.queue),
                );
                drop(st);
                drop(taken);
            }
        });
    }
}

impl DatagramTransport {
    /// `recvfrom` through the Python socket (AF_UNIX and other families), as asyncio does it.
    fn read_with_python(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let max_size = 256 * 1024;
        match self
            .sock
            .socket(py)
            .expect("a datagram transport is made with its socket")
            .bind(py)
            .call_method1(intern!(py, "recvfrom"), (max_size,))
        {
            Ok(pair) => {
                let (data, addr): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair.extract()?;
                protocol
                    .call_method1(intern!(py, "datagram_received"), (data, addr))
                    .map(drop)
            }
            Err(err) if err.is_instance_of::<PyBlockingIOError>(py) || err.is_instance_of::<PyInterruptedError>(py) => {
                Ok(())
            }
            Err(err) if err.is_instance_of::<PyOSError>(py) => self.error_received(py, err),
            Err(err) => fatal(self, py, err, "Fatal read error on datagram transport"),
        }
    }
}
