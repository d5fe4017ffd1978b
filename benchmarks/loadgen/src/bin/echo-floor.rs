//! The floor of the echo benchmark: a minimal echo server in Rust (tokio, current-thread
//! runtime, no Python), the cost that no Python event loop can go below.
//!
//! It listens on 127.0.0.1 (`--port P`, default 0: any free port) or on a Unix socket
//! (`--unix PATH`), and prints one JSON line: `{"event":"ready","pid":...,"port":...}`.
//!
//! Control, one command per line on stdin, one JSON line in reply on stdout, the same protocol
//! as the Python servers of benchmarks/echo.py:
//!
//! - `start`: take the process's `getrusage` as the baseline; replies `{"event":"started"}`;
//! - `stop`: replies `{"event":"usage","user_s":...,"sys_s":...,"wall_s":...}`, the CPU time
//!   (user and system apart, all threads) and wall time since `start`;
//! - EOF on stdin, or SIGTERM / SIGINT: prints the same usage as an `exit` event (since
//!   `start`, or since the process began if there was none) and exits with status 0.
//!
//! Linux only (the `struct rusage` layout below is Linux's).

use std::io::{BufRead, Write};
use std::os::raw::{c_int, c_long};
use std::process::exit;
use std::sync::Mutex;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{signal, SignalKind};

const BUF: usize = 64 * 1024;

#[repr(C)]
#[derive(Clone, Copy)]
struct Timeval {
    tv_sec: c_long,
    tv_usec: c_long,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Rusage {
    ru_utime: Timeval,
    ru_stime: Timeval,
    ru_maxrss: c_long,
    rest: [c_long; 13],
}

extern "C" {
    fn getrusage(who: c_int, usage: *mut Rusage) -> c_int;
}

const RUSAGE_SELF: c_int = 0;

#[derive(Clone, Copy)]
struct Sample {
    user_s: f64,
    sys_s: f64,
    maxrss_kib: i64,
    at: Instant,
}

fn sample() -> Sample {
    let mut ru = std::mem::MaybeUninit::<Rusage>::zeroed();
    // SAFETY: getrusage fills the struct, whose layout is Linux's `struct rusage`.
    let ru = unsafe {
        if getrusage(RUSAGE_SELF, ru.as_mut_ptr()) != 0 {
            panic!("getrusage failed");
        }
        ru.assume_init()
    };
    let secs = |t: Timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Sample {
        user_s: secs(ru.ru_utime),
        sys_s: secs(ru.ru_stime),
        maxrss_kib: ru.ru_maxrss as i64,
        at: Instant::now(),
    }
}

/// The baseline taken by `start` (None: the process's start, i.e. zero CPU).
static BASELINE: Mutex<Option<Sample>> = Mutex::new(None);

fn usage(event: &str, started: Instant) -> String {
    let now = sample();
    let base = *BASELINE.lock().unwrap();
    let (user0, sys0, at0) = match base {
        Some(b) => (b.user_s, b.sys_s, b.at),
        None => (0.0, 0.0, started),
    };
    format!(
        "{{\"event\":\"{event}\",\"user_s\":{:.6},\"sys_s\":{:.6},\"wall_s\":{:.6},\"maxrss_kib\":{}}}",
        now.user_s - user0,
        now.sys_s - sys0,
        now.at.duration_since(at0).as_secs_f64(),
        now.maxrss_kib
    )
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Reads control commands from stdin on its own thread (blocked in read(2): no CPU).
fn control(started: Instant) {
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "start" => {
                *BASELINE.lock().unwrap() = Some(sample());
                say("{\"event\":\"started\"}");
            }
            "stop" => say(&usage("usage", started)),
            "" => {}
            other => say(&format!(
                "{{\"event\":\"error\",\"error\":\"unknown command {other:?}\"}}"
            )),
        }
    }
    say(&usage("exit", started));
    exit(0);
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    let mut buf = vec![0u8; BUF];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn main() {
    let started = Instant::now();
    let (mut port, mut unix) = (0u16, None::<String>);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--port" => port = it.next().and_then(|p| p.parse().ok()).expect("--port N"),
            "--unix" => unix = Some(it.next().expect("--unix PATH")),
            _ => {
                eprintln!("usage: echo-floor [--port P | --unix PATH]");
                exit(1)
            }
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        let pid = std::process::id();
        let accept = async {
            match unix {
                Some(path) => {
                    let _ = std::fs::remove_file(&path);
                    let listener = UnixListener::bind(&path).expect("bind unix socket");
                    say(&format!(
                        "{{\"event\":\"ready\",\"pid\":{pid},\"port\":null,\"path\":{path:?}}}"
                    ));
                    std::thread::spawn(move || control(started));
                    loop {
                        if let Ok((s, _)) = listener.accept().await {
                            tokio::spawn(echo(s));
                        }
                    }
                }
                None => {
                    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
                    let port = listener.local_addr().expect("local address").port();
                    say(&format!("{{\"event\":\"ready\",\"pid\":{pid},\"port\":{port}}}"));
                    std::thread::spawn(move || control(started));
                    loop {
                        if let Ok((s, _)) = listener.accept().await {
                            let _ = s.set_nodelay(true);
                            tokio::spawn(echo(s));
                        }
                    }
                }
            }
        };
        tokio::select! {
            _ = accept => {}
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        say(&usage("exit", started));
        exit(0);
    });
}
