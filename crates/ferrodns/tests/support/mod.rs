//! Helpers shared by the integration tests: start ferrodns and real peer
//! servers (Knot, NSD) on loopback ports, and send them DNS queries.
//!
//! Every server gets its own temporary directory and is killed when its
//! [`Server`] is dropped.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrodns_proto::Name;

pub mod control;
pub mod relay;
pub mod secondary;
pub mod unbound;

/// The repository's test-data directory.
pub fn test_data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-data")
}

/// One line of the query corpus (test-data/queries/corpus.txt).
pub struct Case {
    pub line: String,
    pub qname: Vec<u8>,
    pub qtype: u16,
    pub qclass: u16,
    pub edns: Option<u16>,
    pub tcp: bool,
    /// The query asks for the NSID (RFC 5001).
    pub nsid: bool,
    /// Opcode NOTIFY instead of QUERY.
    pub notify: bool,
}

/// The identity, NSID and (hidden) version the differential tests give
/// every server, so that their CH-class and NSID answers compare.
pub const CORPUS_IDENTITY: &str = "corpus-node";
pub const CORPUS_NSID: &str = "corpus-nsid";

/// Every query of the corpus, as written there: `qname qtype [noedns]
/// [edns=SIZE] [tcp] [class=CLASS] [nsid] [notify]`.
pub fn read_corpus() -> Vec<Case> {
    let text = std::fs::read_to_string(test_data().join("queries/corpus.txt")).unwrap();
    let mut cases = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        let qname = Name::parse(words.next().unwrap(), None).unwrap_or_else(|e| panic!("{line}: {e}"));
        let qtype = ferrodns_proto::RecordType::from_mnemonic(words.next().unwrap())
            .unwrap_or_else(|| panic!("{line}: bad type"));
        let mut case = Case {
            line: line.to_string(),
            qname: qname.as_wire().to_vec(),
            qtype: qtype.0,
            qclass: 1,
            edns: Some(1232),
            tcp: false,
            nsid: false,
            notify: false,
        };
        for flag in words {
            match flag {
                "noedns" => case.edns = None,
                "tcp" => case.tcp = true,
                "nsid" => case.nsid = true,
                "notify" => case.notify = true,
                _ if flag.starts_with("class=") => {
                    case.qclass = ferrodns_proto::Class::from_mnemonic(&flag[6..])
                        .unwrap_or_else(|| panic!("{line}: bad class"))
                        .0
                }
                _ if flag.starts_with("edns=") => case.edns = Some(flag[5..].parse().unwrap()),
                _ => panic!("{line}: unknown flag {flag}"),
            }
        }
        cases.push(case);
    }
    cases
}

/// A zone file and its origin, taken from the file name (`<origin>.zone`).
pub struct ZoneFile {
    pub origin: String,
    pub path: PathBuf,
}

/// Every zone under test-data/zones.
pub fn corpus_zones() -> Vec<ZoneFile> {
    let mut zones: Vec<ZoneFile> = std::fs::read_dir(test_data().join("zones"))
        .expect("test-data/zones exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "zone"))
        .map(|path| {
            let stem = path.file_stem().unwrap().to_string_lossy().to_string();
            ZoneFile { origin: format!("{stem}."), path: path.canonicalize().unwrap() }
        })
        .collect();
    zones.sort_by(|a, b| a.origin.cmp(&b.origin));
    zones
}

/// A free loopback port (UDP and TCP both free at the time of asking), for
/// peers that must be told a port before they start (BIND, Knot, NOTIFY
/// targets). It is drawn at random below Linux's ephemeral range (32768
/// up), where port-0 binds and outgoing connections never land: the
/// kernel's own choice, probed and released, came back to the next test
/// process that asked, and a BIND with SO_REUSEPORT then shared a
/// secondary's port and answered half its queries REFUSED.
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    loop {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
        );
        hasher.write_u32(std::process::id());
        let port = 10_000 + (hasher.finish() % 22_000) as u16;
        let udp = UdpSocket::bind(("127.0.0.1", port));
        if udp.is_ok() && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The addresses a ferrodns process started on port 0 reports in its log
/// ("serving DNS dns=[…]", and "serving the API api=…" when `api`), so that
/// no port is probed and released first for another process to take.
/// Waits up to 30 s; panics with the log if the process exits first.
pub fn logged_addresses(log: &Path, child: &mut Child, api: bool) -> (SocketAddr, Option<SocketAddr>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let value = |marker: &str, key: &str| -> Option<String> {
            let line = text.lines().find(|l| l.contains(marker))?;
            let rest = &line[line.find(key)? + key.len()..];
            Some(rest.split([' ', ',', ']']).next()?.to_string())
        };
        let dns = value("serving DNS", "dns=[").and_then(|v| v.parse().ok());
        let api_address = value("serving the API", "api=").and_then(|v| v.parse().ok());
        match (dns, api_address) {
            (Some(dns), api_address) if api_address.is_some() || !api => return (dns, api_address),
            _ => {}
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("ferrodns exited at start ({status}):\n{text}");
        }
        assert!(Instant::now() < deadline, "ferrodns logged no bound address in 30 s:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running server process.
pub struct Server {
    pub name: &'static str,
    pub addr: SocketAddr,
    child: Child,
    pub dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Server {
    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        send_signal(self.child.id(), 15);
        self.child.wait().unwrap()
    }

    /// Sends a signal (e.g. 1 for SIGHUP).
    pub fn signal(&self, signal: i32) {
        send_signal(self.child.id(), signal);
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// CPU time (user plus system) the process has used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // utime and stime are the 14th and 15th fields, in clock ticks (100 a second on Linux).
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10)
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

/// Sends `signal` to a process this test started.
pub fn send_signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) on a child process of this test; no memory is involved.
    unsafe {
        libc_kill(pid as i32, signal);
    }
}

/// A fresh directory under the system temporary directory, unique to this test process.
pub fn temp_dir(name: &str) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ferrodns-test-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn require(binary: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"] {
        let path = Path::new(dir).join(binary);
        if path.exists() {
            return path;
        }
    }
    panic!("{binary} is not installed; .ci/run installs it (apt-get install knot nsd)");
}

/// Starts a server and waits until it answers `probe`. Port 0 means a
/// ferrodns that binds a port of the kernel's choosing and logs it.
fn spawn(name: &'static str, port: u16, dir: PathBuf, command: &mut Command, probe: &str) -> Server {
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let mut child = command.stdout(log.try_clone().unwrap()).stderr(log).stdin(Stdio::null()).spawn().unwrap();
    let addr = match port {
        0 => logged_addresses(&dir.join("server.log"), &mut child, false).0,
        port => SocketAddr::from(([127, 0, 0, 1], port)),
    };
    let mut server = Server { name, addr, child, dir };
    let deadline = Instant::now() + Duration::from_secs(30);
    let qname = Name::parse(probe, None).unwrap();
    loop {
        if !server.is_running() {
            let log = std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default();
            panic!("{name} exited at start:\n{log}");
        }
        if let Some(reply) =
            query_udp(server.addr, &build_query(1, qname.as_wire(), 6, Some(1232), false), Duration::from_millis(200))
        {
            if reply.len() >= 12 && reply[3] & 0x0f == 0 {
                return server;
            }
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(server.dir.join("server.log")).unwrap_or_default();
            panic!("{name} did not answer within 30 s:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts ferrodns serving `zones` from files.
pub fn start_ferrodns(zones: &[ZoneFile], extra: &[&str]) -> Server {
    let dir = temp_dir("ferrodns");
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferrodns"));
    command.arg("serve").arg("--dns-listen").arg("127.0.0.1:0").arg("--api-listen").arg("off");
    command.arg("--data-dir").arg(&dir);
    for zone in zones {
        command.arg("--zone-file").arg(&zone.path);
    }
    command.args(extra);
    spawn("ferrodns", 0, dir, &mut command, &zones[0].origin)
}

/// Starts Knot DNS serving `zones`.
pub fn start_knot(zones: &[ZoneFile]) -> Server {
    let binary = require("knotd");
    let port = free_port();
    let dir = temp_dir("knot");
    let mut config = format!(
        "server:\n    rundir: \"{d}\"\n    listen: 127.0.0.1@{port}\n    udp-workers: 1\n    tcp-workers: 1\n    background-workers: 1\n\
         \x20   identity: {CORPUS_IDENTITY}\n    nsid: {CORPUS_NSID}\n    version: \"\"\n\
         database:\n    storage: \"{d}\"\nlog:\n  - target: stderr\n    any: warning\nzone:\n",
        d = dir.display()
    );
    for zone in zones {
        config.push_str(&format!(
            "  - domain: {}\n    file: \"{}\"\n    zonefile-sync: -1\n    journal-content: none\n",
            zone.origin,
            zone.path.display()
        ));
    }
    std::fs::write(dir.join("knot.conf"), config).unwrap();
    let mut command = Command::new(binary);
    command.arg("-c").arg(dir.join("knot.conf"));
    spawn("knot", port, dir, &mut command, &zones[0].origin)
}

/// Starts NSD serving `zones`, with response rate limiting off.
pub fn start_nsd(zones: &[ZoneFile]) -> Server {
    let binary = require("nsd");
    let port = free_port();
    let dir = temp_dir("nsd");
    let mut config = format!(
        "server:\n    ip-address: 127.0.0.1@{port}\n    server-count: 1\n    username: \"\"\n    zonesdir: \"{d}\"\n    database: \"\"\n\
         pidfile: \"{d}/nsd.pid\"\n    xfrdfile: \"{d}/xfrd.state\"\n    zonelistfile: \"{d}/zone.list\"\n    verbosity: 0\n\
         rrl-ratelimit: 0\n    rrl-whitelist-ratelimit: 0\n    identity: \"{CORPUS_IDENTITY}\"\n    nsid: \"ascii_{CORPUS_NSID}\"\n\
         \x20   hide-version: yes\nremote-control:\n    control-enable: no\n",
        d = dir.display()
    );
    for zone in zones {
        config.push_str(&format!("zone:\n    name: \"{}\"\n    zonefile: \"{}\"\n", zone.origin, zone.path.display()));
    }
    std::fs::write(dir.join("nsd.conf"), config).unwrap();
    let mut command = Command::new(binary);
    command.arg("-d").arg("-c").arg(dir.join("nsd.conf"));
    spawn("nsd", port, dir, &mut command, &zones[0].origin)
}

/// The query a corpus case describes.
pub fn case_query(id: u16, case: &Case) -> Vec<u8> {
    let mut msg = build_query(id, &case.qname, case.qtype, case.edns, false);
    msg[12 + case.qname.len() + 2..12 + case.qname.len() + 4].copy_from_slice(&case.qclass.to_be_bytes());
    if case.notify {
        // Opcode NOTIFY, AA set (RFC 1996 §3.1).
        msg[2] = 0x24;
    }
    if case.nsid && case.edns.is_some() {
        // An empty NSID option in the OPT record, which is last.
        let rdlen_at = msg.len() - 2;
        msg[rdlen_at..].copy_from_slice(&4u16.to_be_bytes());
        msg.extend_from_slice(&[0, 3, 0, 0]);
    }
    msg
}

/// The EDNS options of a reply's OPT record, as (code, data); `None` when
/// it has none or cannot be read. Names are skipped, not read, so this
/// works on any well-formed message.
pub fn reply_options(bytes: &[u8]) -> Option<Vec<(u16, Vec<u8>)>> {
    let count = |i: usize| bytes.get(4 + 2 * i..6 + 2 * i).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize);
    let skip_name = |mut at: usize| -> Option<usize> {
        loop {
            match *bytes.get(at)? {
                0 => return Some(at + 1),
                len if len >= 0xc0 => return Some(at + 2),
                len => at += 1 + len as usize,
            }
        }
    };
    let mut at = 12;
    for _ in 0..count(0)? {
        at = skip_name(at)? + 4;
    }
    let mut opt = None;
    for _ in 0..count(1)? + count(2)? + count(3)? {
        let fixed = skip_name(at)?;
        let rtype = u16::from_be_bytes([*bytes.get(fixed)?, *bytes.get(fixed + 1)?]);
        let rdlen = u16::from_be_bytes([*bytes.get(fixed + 8)?, *bytes.get(fixed + 9)?]) as usize;
        if rtype == 41 {
            opt = Some((fixed + 10, rdlen));
        }
        at = fixed + 10 + rdlen;
    }
    let (start, rdlen) = opt?;
    let mut options = Vec::new();
    let mut pos = start;
    while pos + 4 <= start + rdlen {
        let code = u16::from_be_bytes([bytes[pos], bytes[pos + 1]]);
        let len = u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]) as usize;
        options.push((code, bytes.get(pos + 4..pos + 4 + len)?.to_vec()));
        pos += 4 + len;
    }
    Some(options)
}

/// Builds a query message. `edns` is the advertised UDP payload size, or None
/// for a query without OPT.
pub fn build_query(id: u16, qname_wire: &[u8], qtype: u16, edns: Option<u16>, dnssec_ok: bool) -> Vec<u8> {
    let mut msg = Vec::with_capacity(64);
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&[0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns.is_some())]);
    msg.extend_from_slice(qname_wire);
    msg.extend_from_slice(&qtype.to_be_bytes());
    msg.extend_from_slice(&1u16.to_be_bytes());
    if let Some(size) = edns {
        msg.extend_from_slice(&[0, 0, 41]);
        msg.extend_from_slice(&size.to_be_bytes());
        msg.extend_from_slice(&[0, 0, if dnssec_ok { 0x80 } else { 0 }, 0, 0, 0]);
    }
    msg
}

/// Sends one UDP query and waits for the reply with the same id.
pub fn query_udp(addr: SocketAddr, query: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind(if addr.is_ipv6() { "[::1]:0" } else { "127.0.0.1:0" }).ok()?;
    socket.set_read_timeout(Some(timeout)).ok()?;
    for _ in 0..3 {
        socket.send_to(query, addr).ok()?;
        let mut buf = vec![0u8; 65535];
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match socket.recv_from(&mut buf) {
                Ok((len, _)) if len >= 2 && buf[..2] == query[..2] => return Some(buf[..len].to_vec()),
                Ok(_) => continue,
                Err(_) => break,
            }
        }
    }
    None
}

/// Sends one query over a new TCP connection and reads one reply.
pub fn query_tcp(addr: SocketAddr, query: &[u8], timeout: Duration) -> Option<Vec<u8>> {
    use std::io::Write;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).ok()?;
    stream.set_read_timeout(Some(timeout)).ok()?;
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed).ok()?;
    read_framed(&mut stream)
}

/// Reads one DNS message in TCP framing (a 16-bit length, then the
/// message); None if the stream ends or fails first.
pub fn read_framed(stream: &mut impl std::io::Read) -> Option<Vec<u8>> {
    let mut length = [0u8; 2];
    stream.read_exact(&mut length).ok()?;
    let mut message = vec![0u8; u16::from_be_bytes(length) as usize];
    stream.read_exact(&mut message).ok()?;
    Some(message)
}
