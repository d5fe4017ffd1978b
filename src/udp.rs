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
use crate::transport::{
    call_transport, flow_callback, is_exit, log_lost_write, not_bytes_like, retry_later, unwatch_fd, watch_fd,
    with_scratch, FlowControl, RawBuffer, LOG_THRESHOLD_FOR_CONNLOST_WRITES, READ_SIZE,
};

// The biggest IPv4/IPv6 UDP payload is 65,507/65,527 bytes: the transports' 64 KiB read buffer
// (`READ_SIZE`) takes any datagram whole.
const _: () = assert!(READ_SIZE >= 65536);

struct State {
    protocol: Option<Py<PyAny>>,
    transport: Option<Py<PyAny>>,
    /// The remote address given to `create_datagram_endpoint(remote_addr=...)` (asyncio's
    /// `_address`): `sendto` accepts only it (or None).
    address: Option<Py<PyAny>>,
    /// Queued datagrams (already copied: `bytes`) and their addresses.
    queue: VecDeque<(Py<PyBytes>, Py<PyAny>)>,
    queued_bytes: usize,
    closing: bool,
    conn_lost: u32,
    /// `pause_reading()` was called (the fd may still be registered, as in `stream.rs`).
    paused: bool,
    read_watched: bool,
    write_watched: bool,
    flow: FlowControl,
}

#[pyclass(frozen, name = "_SelectorDatagramTransport", module = "rose._rose")]
pub struct DatagramTransport {
    event_loop: Py<EventLoop>,
    /// The Python socket object (for what is not done here: see the module note).
    sock: Py<PyAny>,
    fd: RawFd,
    family: i32,
    /// The socket is connected (asyncio: `self._extra['peername']` is truthy): `send`.
    connected: bool,
    state: GilCell<State>,
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

extern "C" {
    // POSIX; the libc crate does not declare it.
    fn inet_ntop(
        af: libc::c_int,
        src: *const libc::c_void,
        dst: *mut libc::c_char,
        size: libc::socklen_t,
    ) -> *const libc::c_char;
}

/// `inet_ntop` of an IPv4 or IPv6 address (the text Python's socket module gives).
fn ntop(family: i32, src: *const libc::c_void) -> Option<String> {
    let mut buf = [0 as libc::c_char; 64];
    // SAFETY: `src` points to an in_addr/in6_addr matching `family`; `buf` is large enough for
    // either (INET6_ADDRSTRLEN is 46).
    let p = unsafe { inet_ntop(family, src, buf.as_mut_ptr(), buf.len() as libc::socklen_t) };
    if p.is_null() {
        return None;
    }
    // SAFETY: inet_ntop wrote a NUL-terminated string into `buf`.
    let text = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    text.to_str().ok().map(str::to_owned)
}

/// "a.b.c.d" without libc's `inet_ntop`, which formats IPv4 with `sprintf` (measured: a
/// quarter of the user time of receiving a datagram). Returns the buffer and its length.
fn dotted_quad(octets: [u8; 4]) -> ([u8; 15], usize) {
    let mut out = [0u8; 15];
    let mut n = 0;
    for (i, o) in octets.into_iter().enumerate() {
        if i > 0 {
            out[n] = b'.';
            n += 1;
        }
        if o >= 100 {
            out[n] = b'0' + o / 100;
            n += 1;
        }
        if o >= 10 {
            out[n] = b'0' + (o / 10) % 10;
            n += 1;
        }
        out[n] = b'0' + o % 10;
        n += 1;
    }
    (out, n)
}

/// The `%scope` suffix glibc's `getnameinfo(NI_NUMERICHOST)` gives a scoped IPv6 address (and
/// so Python's socket module): the interface name for link-local addresses, else the number.
fn scope_suffix(ip: &Ipv6Addr, scope_id: u32) -> String {
    let o = ip.octets();
    let link_local = (o[0] == 0xfe && o[1] & 0xc0 == 0x80) || (o[0] == 0xff && o[1] & 0x0f == 0x02);
    if link_local {
        let mut name = [0 as libc::c_char; libc::IF_NAMESIZE + 1];
        // SAFETY: `name` has room for IF_NAMESIZE bytes and a NUL, as if_indextoname requires.
        if !unsafe { libc::if_indextoname(scope_id, name.as_mut_ptr()) }.is_null() {
            // SAFETY: if_indextoname wrote a NUL-terminated name.
            let name = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
            return format!("%{}", name.to_string_lossy());
        }
    }
    format!("%{scope_id}")
}

/// asyncio's address tuple for an IPv4/IPv6 sockaddr that `recvfrom` filled (what Python's
/// socket module makes of it).
fn addr_to_py<'py>(py: Python<'py>, storage: &libc::sockaddr_storage) -> PyResult<Bound<'py, PyAny>> {
    match storage.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in.
            let sa = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let host = dotted_quad(sa.sin_addr.s_addr.to_ne_bytes());
            let host = PyString::new(
                py,
                std::str::from_utf8(&host.0[..host.1]).expect("ASCII digits and dots"),
            );
            Ok((host, u16::from_be(sa.sin_port)).into_pyobject(py)?.into_any())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6.
            let sa = unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
            let mut host = ntop(libc::AF_INET6, (&sa.sin6_addr as *const libc::in6_addr).cast()).unwrap_or_default();
            if sa.sin6_scope_id != 0 {
                host.push_str(&scope_suffix(&Ipv6Addr::from(sa.sin6_addr.s6_addr), sa.sin6_scope_id));
            }
            let port = u16::from_be(sa.sin6_port);
            let tuple = (host, port, u32::from_be(sa.sin6_flowinfo), sa.sin6_scope_id);
            Ok(tuple.into_pyobject(py)?.into_any())
        }
        // Only IP sockets read here (see `_read_ready`).
        _ => Ok(py.None().into_bound(py)),
    }
}

impl DatagramTransport {
    fn transport(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.state.borrow_mut(py).transport.as_ref().map(|t| t.clone_ref(py))
    }

    fn protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.state.borrow_mut(py).protocol.as_ref().map(|p| p.clone_ref(py))
    }

    fn fatal(&self, py: Python<'_>, err: PyErr, message: &str) -> PyResult<()> {
        if is_exit(py, &err) {
            return Err(err);
        }
        call_transport(
            py,
            self.transport(py),
            intern!(py, "_fatal_error"),
            (err.into_value(py), message),
        )
    }

    fn error_received(&self, py: Python<'_>, err: PyErr) -> PyResult<()> {
        match self.protocol(py) {
            Some(p) => p
                .bind(py)
                .call_method1(intern!(py, "error_received"), (err.into_value(py),))
                .map(drop),
            None => Ok(()),
        }
    }

    fn set_watched(&self, py: Python<'_>, write: bool, value: bool) -> bool {
        let mut st = self.state.borrow_mut(py);
        let flag = if write {
            &mut st.write_watched
        } else {
            &mut st.read_watched
        };
        std::mem::replace(flag, value)
    }

    fn watch(slf: &Bound<'_, Self>, write: bool) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.set_watched(py, write, true) {
            return Ok(());
        }
        let method = if write {
            intern!(py, "_sendto_ready")
        } else {
            intern!(py, "_read_ready")
        };
        watch_fd(slf.as_any(), this.event_loop.bind(py), this.fd, write, method).inspect_err(|_| {
            this.set_watched(py, write, false);
        })
    }

    fn unwatch(&self, py: Python<'_>, write: bool) -> PyResult<()> {
        if !self.set_watched(py, write, false) {
            return Ok(());
        }
        unwatch_fd(self.event_loop.bind(py), self.fd, write)
    }

    /// One datagram out: `send` when connected, `sendto` with a converted address, or the
    /// Python socket's `sendto` for addresses converted there.
    fn send_one(&self, py: Python<'_>, data: &[u8], pydata: &Bound<'_, PyAny>, addr: &Bound<'_, PyAny>) -> Sent {
        let n = if self.connected {
            // SAFETY: sending from a live buffer of `data.len()` bytes.
            unsafe { libc::send(self.fd, data.as_ptr().cast(), data.len(), 0) }
        } else {
            match parse_addr(self.family, addr) {
                // SAFETY: `sa` is an initialised sockaddr of the socket's family.
                Some(sa) => unsafe {
                    let len = if self.family == libc::AF_INET {
                        std::mem::size_of::<libc::sockaddr_in>()
                    } else {
                        std::mem::size_of::<libc::sockaddr_in6>()
                    };
                    libc::sendto(
                        self.fd,
                        data.as_ptr().cast(),
                        data.len(),
                        0,
                        (&sa as *const libc::sockaddr_storage).cast(),
                        len as libc::socklen_t,
                    )
                },
                None => {
                    return match self.sock.bind(py).call_method1(intern!(py, "sendto"), (pydata, addr)) {
                        Ok(_) => Sent::Done,
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
            self.fatal(py, err, "Fatal write error on datagram transport")
        }
    }

    fn maybe_pause_protocol(&self, py: Python<'_>) -> PyResult<()> {
        let protocol = {
            let mut st = self.state.borrow_mut(py);
            let size = st.queued_bytes;
            if !st.flow.pause_now(size) {
                return Ok(());
            }
            st.protocol.as_ref().map(|p| p.clone_ref(py))
        };
        let method = intern!(py, "pause_writing");
        flow_callback(
            py,
            protocol,
            self.transport(py),
            method,
            "protocol.pause_writing() failed",
        )
    }

    fn maybe_resume_protocol(&self, py: Python<'_>) -> PyResult<()> {
        let protocol = {
            let mut st = self.state.borrow_mut(py);
            let size = st.queued_bytes;
            if !st.flow.resume_now(size) {
                return Ok(());
            }
            st.protocol.as_ref().map(|p| p.clone_ref(py))
        };
        let method = intern!(py, "resume_writing");
        flow_callback(
            py,
            protocol,
            self.transport(py),
            method,
            "protocol.resume_writing() failed",
        )
    }

    fn schedule_connection_lost(&self, py: Python<'_>, exc: Py<PyAny>) -> PyResult<()> {
        let Some(t) = self.transport(py) else {
            return Ok(());
        };
        let callback = t.bind(py).getattr(intern!(py, "_call_connection_lost"))?;
        let args = PyTuple::new(py, [exc])?;
        EventLoop::call_soon(self.event_loop.bind(py), callback, args, None).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_quads_match_the_std_formatting() {
        for octets in [
            [0, 0, 0, 0],
            [127, 0, 0, 1],
            [255, 255, 255, 255],
            [10, 9, 100, 99],
            [1, 20, 200, 0],
        ] {
            let (buf, n) = dotted_quad(octets);
            assert_eq!(
                std::str::from_utf8(&buf[..n]).unwrap(),
                Ipv4Addr::from(octets).to_string()
            );
        }
    }
}

#[pymethods]
impl DatagramTransport {
    #[new]
    #[pyo3(signature = (event_loop, sock, protocol, address, connected))]
    fn new(
        event_loop: Py<EventLoop>,
        sock: &Bound<'_, PyAny>,
        protocol: Py<PyAny>,
        address: Option<Py<PyAny>>,
        connected: bool,
    ) -> PyResult<Self> {
        let py = sock.py();
        Ok(Self {
            event_loop,
            fd: sock.call_method0(intern!(py, "fileno"))?.extract()?,
            family: sock.getattr(intern!(py, "family"))?.extract()?,
            sock: sock.clone().unbind(),
            connected,
            state: GilCell::new(State {
                protocol: Some(protocol),
                transport: None,
                address,
                queue: VecDeque::new(),
                queued_bytes: 0,
                closing: false,
                conn_lost: 0,
                paused: false,
                read_watched: false,
                write_watched: false,
                flow: FlowControl::default(),
            }),
        })
    }

    fn _set_transport(&self, py: Python<'_>, transport: Py<PyAny>) {
        self.state.borrow_mut(py).transport = Some(transport);
    }

    fn set_protocol(&self, py: Python<'_>, protocol: Py<PyAny>) {
        let old = self.state.borrow_mut(py).protocol.replace(protocol);
        drop(old);
    }

    fn get_protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.protocol(py)
    }

    /// The reader callback: one datagram (asyncio's `_read_ready`).
    fn _read_ready(&self, py: Python<'_>) -> PyResult<()> {
        let Some(protocol) = ({
            let st = self.state.borrow_mut(py);
            if st.conn_lost > 0 {
                return Ok(());
            }
            if st.paused {
                // Paused without a syscall; a datagram came: now stop watching.
                drop(st);
                return self.unwatch(py, false);
            }
            st.protocol.as_ref().map(|p| p.clone_ref(py))
        }) else {
            return Ok(());
        };
        let protocol = protocol.bind(py);
        if self.family != libc::AF_INET && self.family != libc::AF_INET6 {
            return self.read_with_python(py, protocol);
        }
        // SAFETY: an all-zero sockaddr_storage is a valid out-parameter.
        let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let received = with_scratch(|buf| {
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            // SAFETY: reading at most `buf.len()` bytes into our buffer; `storage`/`len`
            // describe a valid address buffer.
            let n = unsafe {
                libc::recvfrom(
                    self.fd,
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
                Ok(PyBytes::new(py, &buf[..n as usize]))
            }
        });
        let data = match received {
            Ok(data) => data,
            Err(errno) if retry_later(errno) => return Ok(()),
            Err(errno) => return self.error_received(py, os_error(errno)),
        };
        let addr = addr_to_py(py, &storage)?;
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
            let size = data.as_bytes().len();
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
        self.maybe_resume_protocol(py)?; // may queue more
        let (empty, closing) = {
            let st = self.state.borrow_mut(py);
            (st.queue.is_empty(), st.closing)
        };
        if empty {
            self.unwatch(py, true)?;
            if closing {
                call_transport(
                    py,
                    self.transport(py),
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
            return Err(not_bytes_like(data));
        }
        if data.len()? == 0 {
            return Ok(());
        }
        let mut addr = addr.unwrap_or_else(|| py.None().into_bound(py));
        let (address, conn_lost, queued) = {
            let st = this.state.borrow_mut(py);
            let address = st.address.as_ref().map(|a| a.clone_ref(py).into_bound(py));
            (address, st.conn_lost, !st.queue.is_empty())
        };
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
                    st.conn_lost += 1;
                    st.conn_lost > LOG_THRESHOLD_FOR_CONNLOST_WRITES
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
                Sent::Again => Self::watch(slf, true)?,
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
            st.queued_bytes += copy.as_bytes().len();
            st.queue.push_back((copy.unbind(), addr.unbind()));
        }
        this.maybe_pause_protocol(py)
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let lost = {
            let mut st = self.state.borrow_mut(py);
            if st.closing {
                return Ok(());
            }
            st.closing = true;
            st.queue.is_empty()
        };
        self.unwatch(py, false)?;
        if lost {
            self.state.borrow_mut(py).conn_lost += 1;
            self.unwatch(py, true)?;
            self.schedule_connection_lost(py, py.None())?;
        }
        Ok(())
    }

    fn _force_close(&self, py: Python<'_>, exc: Py<PyAny>) -> PyResult<()> {
        let (dropped, was_closing) = {
            let mut st = self.state.borrow_mut(py);
            if st.conn_lost > 0 {
                return Ok(());
            }
            st.conn_lost += 1;
            st.queued_bytes = 0;
            (std::mem::take(&mut st.queue), std::mem::replace(&mut st.closing, true))
        };
        if !dropped.is_empty() {
            self.unwatch(py, true)?;
        }
        drop(dropped);
        if !was_closing {
            self.unwatch(py, false)?;
        }
        self.schedule_connection_lost(py, exc)
    }

    fn is_closing(&self, py: Python<'_>) -> bool {
        self.state.borrow_mut(py).closing
    }

    fn _start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let st = slf.get().state.borrow_mut(slf.py());
        if st.closing || st.paused {
            return Ok(());
        }
        drop(st);
        Self::watch(slf, false)
    }

    fn is_reading(&self, py: Python<'_>) -> bool {
        let st = self.state.borrow_mut(py);
        !st.closing && !st.paused
    }

    /// Returns True if reading was paused by this call (no syscall).
    fn _pause_reading(&self, py: Python<'_>) -> bool {
        let mut st = self.state.borrow_mut(py);
        if st.closing || st.paused {
            return false;
        }
        st.paused = true;
        true
    }

    /// Returns True if reading was resumed by this call.
    fn _resume_reading(slf: &Bound<'_, Self>) -> PyResult<bool> {
        {
            let mut st = slf.get().state.borrow_mut(slf.py());
            if st.closing || !st.paused {
                return Ok(false);
            }
            st.paused = false;
        }
        Self::watch(slf, false)?;
        Ok(true)
    }

    fn get_write_buffer_size(&self, py: Python<'_>) -> usize {
        self.state.borrow_mut(py).queued_bytes
    }

    fn _set_write_buffer_limits(&self, py: Python<'_>, high: Bound<'_, PyAny>, low: Bound<'_, PyAny>) -> PyResult<()> {
        let old = self.state.borrow_mut(py).flow.set(high, low)?;
        drop(old);
        self.maybe_pause_protocol(py)
    }

    fn get_write_buffer_limits(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        self.state.borrow_mut(py).flow.limits(py)
    }

    #[getter]
    fn _protocol_paused(&self, py: Python<'_>) -> bool {
        self.state.borrow_mut(py).flow.protocol_paused
    }

    #[getter]
    fn _conn_lost(&self, py: Python<'_>) -> u32 {
        self.state.borrow_mut(py).conn_lost
    }

    /// (reading registered, writing registered) for the repr.
    fn _polling(&self, py: Python<'_>) -> (bool, bool) {
        let st = self.state.borrow_mut(py);
        (st.read_watched && !st.paused, st.write_watched)
    }

    fn _detach(&self, py: Python<'_>) {
        let taken = {
            let mut st = self.state.borrow_mut(py);
            st.conn_lost = st.conn_lost.max(1);
            st.closing = true;
            st.queued_bytes = 0;
            (st.protocol.take(), st.transport.take(), std::mem::take(&mut st.queue))
        };
        drop(taken);
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.event_loop)?;
        visit.call(&self.sock)?;
        if let Some(st) = self.state.try_borrow_for_gc() {
            visit.call(&st.protocol)?;
            visit.call(&st.transport)?;
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
                    st.protocol.take(),
                    st.transport.take(),
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
        match self.sock.bind(py).call_method1(intern!(py, "recvfrom"), (max_size,)) {
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
            Err(err) => self.fatal(py, err, "Fatal read error on datagram transport"),
        }
    }
}
