//! Query logging in dnstap (dnstap.info): a sample of the queries answered
//! and their responses, as `AUTH_QUERY` and `AUTH_RESPONSE` messages in
//! Frame Streams, to a file (unidirectional, as `dnstap-read` reads it) or
//! to a Unix socket (bidirectional: READY, ACCEPT, START).
//!
//! The answer path only copies a sampled query and its response into a
//! bounded queue (one in `--query-log-sample` queries per worker; nothing
//! is read from the clock or allocated for the others); a thread of its own
//! encodes and writes. A full queue or an absent reader drops entries and
//! counts them (`ferrodns_query_log_dropped_total`), so a slow disk or a
//! stopped collector never slows answers.
//!
//! Both messages of a pair carry the time the response was written: the
//! sample is taken then, and the difference from the true query time is
//! the answer's own time, which `ferrodns_dns_answer_duration_seconds`
//! measures.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The Frame Streams content type of dnstap.
const CONTENT_TYPE: &[u8] = b"protobuf:dnstap.Dnstap";
const CONTROL_ACCEPT: u32 = 0x01;
const CONTROL_START: u32 = 0x02;
const CONTROL_STOP: u32 = 0x03;
const CONTROL_READY: u32 = 0x04;
const FIELD_CONTENT_TYPE: u32 = 0x01;
/// Entries waiting for the writer; more are dropped.
const QUEUE: usize = 8192;
/// How often the writer looks at an empty queue. At 200,000 queries a
/// second logged in full, 8,192 entries last 40 ms.
const POLL: Duration = Duration::from_millis(20);

/// Where the log goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    File(PathBuf),
    Socket(PathBuf),
}

impl Target {
    /// `file:PATH`, `unix:PATH`, or a bare path (a file).
    pub fn parse(text: &str) -> Result<Target, String> {
        let (kind, path) = match text.split_once(':') {
            Some(("unix", path)) => ("unix", path),
            Some(("file", path)) => ("file", path),
            _ => ("file", text),
        };
        if path.is_empty() {
            return Err(format!("{text:?} names no path: want file:PATH or unix:PATH"));
        }
        Ok(match kind {
            "unix" => Target::Socket(PathBuf::from(path)),
            _ => Target::File(PathBuf::from(path)),
        })
    }
}

/// How queries are logged.
#[derive(Clone, Debug)]
pub struct QueryLogSettings {
    pub target: Target,
    /// Log one query in this many (per worker); 1 logs every query.
    pub sample: u32,
    /// The dnstap identity: the node id.
    pub identity: String,
}

/// The transport a logged query came over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Udp = 1,
    Tcp = 2,
}

/// One sampled exchange.
pub struct Entry {
    pub protocol: Protocol,
    pub client: SocketAddr,
    /// The address the query came to, when known.
    pub server: Option<SocketAddr>,
    pub query: Vec<u8>,
    pub response: Vec<u8>,
    pub time: SystemTime,
}

/// The answer path's handle: sampling and the queue.
pub struct QueryLog {
    sample: u32,
    queue: SyncSender<Entry>,
    /// The count TCP's tasks share for their sampling.
    shared: AtomicU32,
}

impl std::fmt::Debug for QueryLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryLog").field("sample", &self.sample).finish()
    }
}

impl QueryLog {
    /// Starts the writer thread, which ends (closing the stream with
    /// STOP) once every handle is dropped; join it then, so that the
    /// stream is whole before the process exits.
    pub fn start(settings: QueryLogSettings) -> io::Result<(Arc<QueryLog>, std::thread::JoinHandle<()>)> {
        let (queue, entries) = sync_channel(QUEUE);
        let writer = Writer::new(&settings);
        let thread = std::thread::Builder::new().name("dns-query-log".into()).spawn(move || writer.run(entries))?;
        tracing::info!(target = ?settings.target, sample = settings.sample, "query log (dnstap)");
        Ok((Arc::new(QueryLog { sample: settings.sample.max(1), queue, shared: AtomicU32::new(0) }), thread))
    }

    /// True for the TCP query to log (one in `sample` over every task).
    pub fn take_shared(&self) -> bool {
        self.shared.fetch_add(1, Ordering::Relaxed) % self.sample == 0
    }

    /// A countdown for one writer of the answer path.
    pub fn sampler(&self) -> Sampler {
        Sampler { every: self.sample, left: self.sample }
    }

    /// Queues an exchange; drops it when the writer is behind.
    pub fn log(&self, entry: Entry) {
        let metrics = ferrodns_metrics::global();
        match self.queue.try_send(entry) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => metrics.query_log_dropped.inc(),
        }
    }
}

/// One in `every` queries, counted by one writer.
pub struct Sampler {
    every: u32,
    left: u32,
}

impl Sampler {
    /// True for the query to log.
    #[inline]
    pub fn take(&mut self) -> bool {
        self.left -= 1;
        if self.left == 0 {
            self.left = self.every;
            true
        } else {
            false
        }
    }
}

/// Writes Frame Streams to the target.
struct Writer {
    target: Target,
    identity: Vec<u8>,
    version: Vec<u8>,
}

impl Writer {
    fn new(settings: &QueryLogSettings) -> Writer {
        Writer {
            target: settings.target.clone(),
            identity: settings.identity.as_bytes().to_vec(),
            version: format!("ferrodns {}", env!("CARGO_PKG_VERSION")).into_bytes(),
        }
    }

    fn run(self, entries: Receiver<Entry>) {
        let mut output: Option<Box<dyn Write>> = None;
        let mut next_attempt = std::time::Instant::now();
        let metrics = ferrodns_metrics::global();
        let mut frame = Vec::with_capacity(1024);
        // The writer polls the queue rather than sleeping on it: a writer
        // parked on the queue would make every sampled query wake it (a
        // futex call on the answer path's thread, and a context switch).
        let mut idle = false;
        loop {
            let entry = match entries.try_recv() {
                Ok(entry) => {
                    idle = false;
                    Some(entry)
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {
                    if idle {
                        std::thread::sleep(POLL);
                    }
                    idle = true;
                    None
                }
                Err(std::sync::mpsc::TryRecvError::Disconnected) => break,
            };
            if output.is_none() && std::time::Instant::now() >= next_attempt {
                match self.open() {
                    Ok(opened) => output = Some(opened),
                    Err(e) => {
                        tracing::warn!(target = ?self.target, error = %e, "cannot open the query log; dropping entries, trying again in 5 s");
                        next_attempt = std::time::Instant::now() + Duration::from_secs(5);
                    }
                }
            }
            let Some(entry) = entry else {
                if let Some(out) = output.as_mut() {
                    let _ = out.flush();
                }
                continue;
            };
            let Some(out) = output.as_mut() else {
                metrics.query_log_dropped.inc();
                continue;
            };
            let mut written = true;
            for response in [false, true] {
                frame.clear();
                self.encode(&entry, response, &mut frame);
                written &= data_frame(out, &frame).is_ok();
            }
            if written {
                metrics.query_log_written.inc();
            } else {
                tracing::warn!(target = ?self.target, "the query log's reader went away; reconnecting");
                metrics.query_log_dropped.inc();
                output = None;
                next_attempt = std::time::Instant::now() + Duration::from_secs(1);
            }
        }
        if let Some(mut out) = output {
            let _ = control_frame(&mut out, CONTROL_STOP, false).and_then(|()| out.flush());
        }
    }

    /// Opens the target and writes the stream's opening control frames.
    fn open(&self) -> io::Result<Box<dyn Write>> {
        match &self.target {
            Target::File(path) => {
                let file = std::fs::OpenOptions::new().create(true).truncate(true).write(true).open(path)?;
                let mut out = io::BufWriter::with_capacity(64 * 1024, file);
                control_frame(&mut out, CONTROL_START, true)?;
                Ok(Box::new(out))
            }
            Target::Socket(path) => {
                let mut stream = UnixStream::connect(path)?;
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                control_frame(&mut stream, CONTROL_READY, true)?;
                stream.flush()?;
                let accepted = read_control(&mut stream)?;
                if accepted != CONTROL_ACCEPT {
                    return Err(io::Error::other(format!("the reader answered control frame {accepted}, not ACCEPT")));
                }
                control_frame(&mut stream, CONTROL_START, true)?;
                Ok(Box::new(io::BufWriter::with_capacity(64 * 1024, stream)))
            }
        }
    }

    /// One dnstap message of an entry: its query, or its response.
    fn encode(&self, entry: &Entry, response: bool, out: &mut Vec<u8>) {
        let since = entry.time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let (family, client_ip, server_ip) = match (entry.client, entry.server) {
            (SocketAddr::V4(client), server) => (
                1u32,
                client.ip().octets().to_vec(),
                server.and_then(|s| if let SocketAddr::V4(s) = s { Some(s.ip().octets().to_vec()) } else { None }),
            ),
            (SocketAddr::V6(client), server) => (
                2,
                client.ip().octets().to_vec(),
                server.and_then(|s| if let SocketAddr::V6(s) = s { Some(s.ip().octets().to_vec()) } else { None }),
            ),
        };
        let message = proto::Message {
            r#type: if response { 2 } else { 1 },
            socket_family: Some(family),
            socket_protocol: Some(entry.protocol as u32),
            query_address: Some(client_ip),
            response_address: server_ip,
            query_port: Some(entry.client.port() as u32),
            response_port: entry.server.map(|s| s.port() as u32),
            query_time_sec: (!response).then_some(since.as_secs()),
            query_time_nsec: (!response).then_some(since.subsec_nanos()),
            query_message: (!response).then(|| entry.query.clone()),
            response_time_sec: response.then_some(since.as_secs()),
            response_time_nsec: response.then_some(since.subsec_nanos()),
            response_message: response.then(|| entry.response.clone()),
        };
        let dnstap = proto::Dnstap {
            identity: Some(self.identity.clone()),
            version: Some(self.version.clone()),
            message: Some(message),
            r#type: 1,
        };
        prost::Message::encode(&dnstap, out).expect("a Vec grows as needed");
    }
}

fn data_frame(out: &mut dyn Write, data: &[u8]) -> io::Result<()> {
    out.write_all(&(data.len() as u32).to_be_bytes())?;
    out.write_all(data)
}

/// A control frame: the escape, its length, its type, and the content
/// type when asked for.
fn control_frame(out: &mut dyn Write, kind: u32, content_type: bool) -> io::Result<()> {
    let mut frame = kind.to_be_bytes().to_vec();
    if content_type {
        frame.extend_from_slice(&FIELD_CONTENT_TYPE.to_be_bytes());
        frame.extend_from_slice(&(CONTENT_TYPE.len() as u32).to_be_bytes());
        frame.extend_from_slice(CONTENT_TYPE);
    }
    out.write_all(&0u32.to_be_bytes())?;
    out.write_all(&(frame.len() as u32).to_be_bytes())?;
    out.write_all(&frame)
}

/// Reads one control frame (at most 512 octets) and returns its type.
fn read_control(input: &mut dyn Read) -> io::Result<u32> {
    let mut word = [0u8; 4];
    input.read_exact(&mut word)?;
    if u32::from_be_bytes(word) != 0 {
        return Err(io::Error::other("the reader sent data, not a control frame"));
    }
    input.read_exact(&mut word)?;
    let length = u32::from_be_bytes(word) as usize;
    if !(4..=512).contains(&length) {
        return Err(io::Error::other(format!("a control frame of {length} octets")));
    }
    let mut frame = vec![0u8; length];
    input.read_exact(&mut frame)?;
    Ok(u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]))
}

/// The messages of dnstap.proto that ferrodns writes.
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Dnstap {
        #[prost(bytes = "vec", optional, tag = "1")]
        pub identity: Option<Vec<u8>>,
        #[prost(bytes = "vec", optional, tag = "2")]
        pub version: Option<Vec<u8>>,
        #[prost(message, optional, tag = "14")]
        pub message: Option<Message>,
        /// MESSAGE (1).
        #[prost(uint32, required, tag = "15")]
        pub r#type: u32,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Message {
        /// AUTH_QUERY (1) or AUTH_RESPONSE (2).
        #[prost(uint32, required, tag = "1")]
        pub r#type: u32,
        /// INET (1) or INET6 (2).
        #[prost(uint32, optional, tag = "2")]
        pub socket_family: Option<u32>,
        /// UDP (1) or TCP (2).
        #[prost(uint32, optional, tag = "3")]
        pub socket_protocol: Option<u32>,
        #[prost(bytes = "vec", optional, tag = "4")]
        pub query_address: Option<Vec<u8>>,
        #[prost(bytes = "vec", optional, tag = "5")]
        pub response_address: Option<Vec<u8>>,
        #[prost(uint32, optional, tag = "6")]
        pub query_port: Option<u32>,
        #[prost(uint32, optional, tag = "7")]
        pub response_port: Option<u32>,
        #[prost(uint64, optional, tag = "8")]
        pub query_time_sec: Option<u64>,
        #[prost(fixed32, optional, tag = "9")]
        pub query_time_nsec: Option<u32>,
        #[prost(bytes = "vec", optional, tag = "10")]
        pub query_message: Option<Vec<u8>>,
        #[prost(uint64, optional, tag = "12")]
        pub response_time_sec: Option<u64>,
        #[prost(fixed32, optional, tag = "13")]
        pub response_time_nsec: Option<u32>,
        #[prost(bytes = "vec", optional, tag = "14")]
        pub response_message: Option<Vec<u8>>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_the_sampler_takes_one_in_n() {
        assert_eq!(Target::parse("unix:/run/dnstap.sock"), Ok(Target::Socket("/run/dnstap.sock".into())));
        assert_eq!(Target::parse("file:/var/log/q.tap"), Ok(Target::File("/var/log/q.tap".into())));
        assert_eq!(Target::parse("/var/log/q.tap"), Ok(Target::File("/var/log/q.tap".into())));
        assert!(Target::parse("unix:").is_err());
        let mut sampler = Sampler { every: 100, left: 100 };
        assert_eq!((0..1000).filter(|_| sampler.take()).count(), 10);
        let mut every = Sampler { every: 1, left: 1 };
        assert!((0..5).all(|_| every.take()));
    }
}
