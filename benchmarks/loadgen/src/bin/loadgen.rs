//! Echo load generator for benchmarks/echo.py and benchmarks/tls_echo.py.
//!
//! Opens N connections (TCP or Unix socket) to an echo server. Each connection sends a
//! fixed-size message, waits until the whole message has come back, checks it, and sends the
//! next: one request in flight per connection. A fixed total number of messages is shared
//! among the connections. The timed run starts once every connection is open and warmed up;
//! with `--wait` the load generator then prints a `ready` line and waits for a line on stdin
//! before it starts (so that the caller can start the server's CPU measurement first).
//!
//! The result is one JSON line on stdout: messages, elapsed seconds, requests per second and
//! latency percentiles (microseconds, per message, from the first byte written to the last
//! byte read). Errors are one JSON line `{"event":"error",...}` and exit status 1; a run that
//! outlasts `--timeout` exits with status 2.
//!
//! With `--tls-ca FILE` every TCP connection runs TLS (rustls, ring backend): the handshakes
//! happen while connecting, before the warm-up, and the server's certificate is verified
//! against the CA certificate(s) in FILE. The result then names the protocol version and the
//! cipher suite negotiated.
//!
//! One thread (tokio's current-thread runtime): the caller pins it to one core.

use std::io::Write as _;
use std::process::exit;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use tokio_rustls::TlsConnector;

const USAGE: &str = "\
usage: loadgen (--tcp HOST:PORT | --unix PATH) [options]

  --conns N        concurrent connections (default 100)
  --size BYTES     message size (default 100)
  --messages M     timed messages in total, shared among the connections (default 100000)
  --warmup W       untimed messages in total before the timed run (default 10 per connection)
  --wait           after connecting and warming up, print a `ready` line and wait for a
                   line on stdin before the timed run (EOF on stdin aborts)
  --timeout SECS   give up after this long, exit status 2 (default 120)
  --tls-ca FILE    TLS over --tcp: verify the server's certificate against the CA
                   certificate(s) in FILE (PEM)
  --tls-name NAME  the name the certificate must carry (default: the host of --tcp)
";

enum Target {
    Tcp(String),
    Unix(String),
}

impl Target {
    fn describe(&self) -> String {
        match self {
            Target::Tcp(addr) => format!("tcp:{addr}"),
            Target::Unix(path) => format!("unix:{path}"),
        }
    }
}

struct Args {
    target: Target,
    conns: usize,
    size: usize,
    messages: u64,
    warmup: u64,
    wait: bool,
    timeout: Duration,
    tls_ca: Option<String>,
    tls_name: Option<String>,
}

fn fail(msg: &str, status: i32) -> ! {
    println!("{{\"event\":\"error\",\"error\":{}}}", json_str(msg));
    let _ = std::io::stdout().flush();
    eprintln!("loadgen: {msg}");
    exit(status)
}

fn parse_args() -> Args {
    let mut target = None;
    let (mut conns, mut size, mut messages) = (100usize, 100usize, 100_000u64);
    let (mut warmup, mut wait, mut timeout) = (None, false, 120.0f64);
    let (mut tls_ca, mut tls_name) = (None, None);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .unwrap_or_else(|| fail(&format!("{name} needs a value\n{USAGE}"), 1))
        };
        fn num<T: std::str::FromStr>(name: &str, text: String) -> T {
            text.parse()
                .unwrap_or_else(|_| fail(&format!("bad {name}: {text:?}"), 1))
        }
        match arg.as_str() {
            "--tcp" => target = Some(Target::Tcp(value("--tcp"))),
            "--unix" => target = Some(Target::Unix(value("--unix"))),
            "--conns" => conns = num("--conns", value("--conns")),
            "--size" => size = num("--size", value("--size")),
            "--messages" => messages = num("--messages", value("--messages")),
            "--warmup" => warmup = Some(num("--warmup", value("--warmup"))),
            "--wait" => wait = true,
            "--timeout" => timeout = num("--timeout", value("--timeout")),
            "--tls-ca" => tls_ca = Some(value("--tls-ca")),
            "--tls-name" => tls_name = Some(value("--tls-name")),
            "-h" | "--help" => {
                print!("{USAGE}");
                exit(0)
            }
            other => fail(&format!("unknown argument {other:?}\n{USAGE}"), 1),
        }
    }
    let target = target.unwrap_or_else(|| fail(&format!("--tcp or --unix is required\n{USAGE}"), 1));
    if conns == 0 || size == 0 || messages == 0 || timeout.is_nan() || timeout <= 0.0 {
        fail("--conns, --size, --messages and --timeout must be positive", 1);
    }
    if tls_ca.is_some() && !matches!(target, Target::Tcp(_)) {
        fail("--tls-ca needs --tcp", 1);
    }
    Args {
        target,
        conns,
        size,
        messages,
        warmup: warmup.unwrap_or(10 * conns as u64),
        wait,
        timeout: Duration::from_secs_f64(timeout),
        tls_ca,
        tls_name,
    }
}

/// The TLS client: the CA certificates of `ca_file` as the only roots, default protocol
/// versions and cipher suites of rustls's ring provider.
fn tls_connector(ca_file: &str) -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca_file)
        .and_then(|it| it.collect())
        .map_err(|e| format!("--tls-ca {ca_file}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("--tls-ca {ca_file}: no certificate in the file"));
    }
    for cert in certs {
        roots.add(cert).map_err(|e| format!("--tls-ca {ca_file}: {e}"))?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(std::sync::Arc::new(config)))
}

/// The host part of HOST:PORT (or [HOST]:PORT).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// `total` messages shared among `conns` connections: the first `total % conns` get one more.
fn share(total: u64, conns: usize, i: usize) -> u64 {
    total / conns as u64 + u64::from((i as u64) < total % conns as u64)
}

/// Message `seq` of connection `conn`: its first 8 bytes (or fewer) are a tag that the echo
/// must bring back unchanged; the rest is a fixed pattern.
fn stamp(buf: &mut [u8], conn: usize, seq: u64) {
    let tag = ((conn as u64) << 40 | seq).to_le_bytes();
    let n = buf.len().min(8);
    buf[..n].copy_from_slice(&tag[..n]);
}

/// One connection: `warmup` untimed round trips, then report ready, wait for the start, then
/// `n` timed round trips. Returns the latencies in nanoseconds.
#[allow(clippy::too_many_arguments)]
async fn client<R, W>(
    conn: usize,
    mut rd: R,
    mut wr: W,
    size: usize,
    warmup: u64,
    n: u64,
    ready: mpsc::UnboundedSender<()>,
    mut go: watch::Receiver<bool>,
) -> Result<Vec<u64>, String>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut msg: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
    let mut back = vec![0u8; size];
    let mut latencies = Vec::with_capacity(n as usize);
    let mut seq = 0u64;
    for phase in 0..2 {
        if phase == 1 {
            let _ = ready.send(());
            while !*go.borrow_and_update() {
                go.changed().await.map_err(|_| "the run was abandoned".to_string())?;
            }
        }
        let count = if phase == 0 { warmup } else { n };
        for _ in 0..count {
            stamp(&mut msg, conn, seq);
            let t0 = Instant::now();
            // Write and read at once: a large message comes back while it is still being sent.
            // The flush is a no-op on a socket; with TLS it sends what rustls still holds.
            let write = async {
                wr.write_all(&msg).await?;
                wr.flush().await
            };
            let (w, r) = tokio::join!(write, rd.read_exact(&mut back));
            let elapsed = t0.elapsed();
            w.map_err(|e| format!("connection {conn}: write: {e}"))?;
            r.map_err(|e| format!("connection {conn}: read (message {seq}): {e}"))?;
            let k = size.min(8);
            if back[..k] != msg[..k] || back[size - 1] != msg[size - 1] {
                return Err(format!("connection {conn}: message {seq} came back altered"));
            }
            if phase == 1 {
                latencies.push(elapsed.as_nanos() as u64);
            }
            seq += 1;
        }
    }
    Ok(latencies)
}

type Job = tokio::task::JoinHandle<Result<Vec<u64>, String>>;

async fn run(args: Args) -> Result<String, String> {
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let (go_tx, go_rx) = watch::channel(false);
    let tls = match (&args.tls_ca, &args.target) {
        (Some(ca), Target::Tcp(addr)) => {
            let name = args.tls_name.clone().unwrap_or_else(|| host_of(addr).to_string());
            let name = ServerName::try_from(name.clone()).map_err(|e| format!("--tls-name {name:?}: {e}"))?;
            Some((tls_connector(ca)?, name))
        }
        _ => None,
    };
    let mut tls_info = String::from("null");
    let t_connect = Instant::now();
    let mut jobs: Vec<Job> = Vec::with_capacity(args.conns);
    for i in 0..args.conns {
        let (warm, n) = (share(args.warmup, args.conns, i), share(args.messages, args.conns, i));
        let (ready, go, size) = (ready_tx.clone(), go_rx.clone(), args.size);
        let job = match &args.target {
            Target::Tcp(addr) => {
                let s = TcpStream::connect(addr.as_str())
                    .await
                    .map_err(|e| format!("connect {addr} (connection {i}): {e}"))?;
                s.set_nodelay(true).map_err(|e| format!("TCP_NODELAY: {e}"))?;
                if let Some((connector, name)) = &tls {
                    let s = connector
                        .connect(name.clone(), s)
                        .await
                        .map_err(|e| format!("TLS handshake (connection {i}): {e}"))?;
                    if i == 0 {
                        let (_, session) = s.get_ref();
                        let version = session.protocol_version().map(|v| format!("{v:?}"));
                        let suite = session.negotiated_cipher_suite().map(|c| format!("{:?}", c.suite()));
                        tls_info = format!(
                            "{{\"version\":{},\"suite\":{}}}",
                            json_str(&version.unwrap_or_default()),
                            json_str(&suite.unwrap_or_default())
                        );
                    }
                    let (r, w) = tokio::io::split(s);
                    tokio::spawn(client(i, r, w, size, warm, n, ready, go))
                } else {
                    let (r, w) = s.into_split();
                    tokio::spawn(client(i, r, w, size, warm, n, ready, go))
                }
            }
            Target::Unix(path) => {
                let s = UnixStream::connect(path.as_str())
                    .await
                    .map_err(|e| format!("connect {path} (connection {i}): {e}"))?;
                let (r, w) = s.into_split();
                tokio::spawn(client(i, r, w, size, warm, n, ready, go))
            }
        };
        jobs.push(job);
    }
    drop(ready_tx);
    let connect_s = t_connect.elapsed().as_secs_f64();

    // Every connection is open and warmed up (or one failed: its error is reported below).
    let mut ready = 0;
    while ready < args.conns && ready_rx.recv().await.is_some() {
        ready += 1;
    }
    if ready < args.conns {
        for job in jobs {
            job.await.map_err(|e| e.to_string())??;
        }
        return Err("a connection stopped before the run".into());
    }
    let warm_s = t_connect.elapsed().as_secs_f64() - connect_s;
    if args.wait {
        println!(
            "{{\"event\":\"ready\",\"conns\":{},\"connect_s\":{connect_s:.6},\"warmup_s\":{warm_s:.6}}}",
            args.conns
        );
        let _ = std::io::stdout().flush();
        let line = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).map(|n| n > 0)
        })
        .await
        .map_err(|e| e.to_string())?;
        if !matches!(line, Ok(true)) {
            return Err("stdin closed before the start signal".into());
        }
    }

    let t0 = Instant::now();
    go_tx.send_replace(true);
    let mut lat = Vec::with_capacity(args.messages as usize);
    for job in jobs {
        lat.extend(job.await.map_err(|e| e.to_string())??);
    }
    let elapsed = t0.elapsed().as_secs_f64();

    lat.sort_unstable();
    let pct = |p: f64| {
        let rank = ((p / 100.0) * lat.len() as f64).ceil() as usize;
        lat[rank.clamp(1, lat.len()) - 1] as f64 / 1e3
    };
    let mean = lat.iter().map(|&x| x as f64).sum::<f64>() / lat.len() as f64 / 1e3;
    let messages = lat.len() as u64;
    Ok(format!(
        concat!(
            "{{\"event\":\"result\",\"target\":{},\"conns\":{},\"size\":{},\"messages\":{},",
            "\"warmup_messages\":{},\"elapsed_s\":{:.6},\"rps\":{:.1},\"mb_per_s\":{:.3},",
            "\"connect_s\":{:.6},\"warmup_s\":{:.6},\"latency_us\":{{\"min\":{:.1},",
            "\"mean\":{:.1},\"p50\":{:.1},\"p90\":{:.1},\"p99\":{:.1},\"p99_9\":{:.1},",
            "\"max\":{:.1}}},\"tls\":{}}}"
        ),
        json_str(&args.target.describe()),
        args.conns,
        args.size,
        messages,
        args.warmup,
        elapsed,
        messages as f64 / elapsed,
        (messages * args.size as u64) as f64 / elapsed / 1e6,
        connect_s,
        warm_s,
        lat[0] as f64 / 1e3,
        mean,
        pct(50.0),
        pct(90.0),
        pct(99.0),
        pct(99.9),
        lat[lat.len() - 1] as f64 / 1e3,
        tls_info,
    ))
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn main() {
    let args = parse_args();
    let timeout = args.timeout;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&format!("runtime: {e}"), 1));
    let outcome = rt.block_on(async { tokio::time::timeout(timeout, run(args)).await });
    match outcome {
        Ok(Ok(line)) => {
            println!("{line}");
            let _ = std::io::stdout().flush();
            // Do not wait for a blocked stdin reader or for the sockets' shutdown.
            exit(0)
        }
        Ok(Err(e)) => fail(&e, 1),
        Err(_) => fail(&format!("timed out after {:.1} s", timeout.as_secs_f64()), 2),
    }
}
