//! Control-plane helpers: a database per test (SQLite file or a fresh
//! PostgreSQL database), a `ferrodns serve` process with DNS and the API on
//! free loopback ports, and a small blocking HTTP client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::Method;
use serde_json::Value;

use super::temp_dir;

/// Where a test's data lives. PostgreSQL databases are created fresh and
/// dropped afterwards, so tests run in parallel.
pub enum Database {
    Sqlite,
    Postgres { name: String, url: String },
}

/// The PostgreSQL server tests use, as a URL without a database:
/// `FERRODNS_TEST_POSTGRES`, by default CI's (loopback, trust auth, role
/// `root`). Each test makes and drops its own database on it.
pub fn postgres_server() -> String {
    std::env::var("FERRODNS_TEST_POSTGRES")
        .ok()
        .map(|url| url.trim_end_matches('/').to_string())
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| "postgres://root@127.0.0.1:5432".to_string())
}

/// The `host:port` of [`postgres_server`].
pub fn postgres_address() -> String {
    let server = postgres_server();
    let authority = server.split_once("://").map_or(server.as_str(), |(_, rest)| rest);
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    let host = host.split(['/', '?']).next().unwrap_or(host);
    if host.contains(':') {
        host.to_string()
    } else {
        format!("{host}:5432")
    }
}

impl Database {
    pub fn sqlite() -> Database {
        Database::Sqlite
    }

    pub fn postgres() -> Database {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("ferrodns_test_{}_{n}", std::process::id());
        psql(&format!("DROP DATABASE IF EXISTS {name}"));
        psql(&format!("CREATE DATABASE {name}"));
        let url = format!("{}/{name}", postgres_server());
        Database::Postgres { name, url }
    }

    /// The `--database-url`, if not the SQLite default.
    pub fn url(&self) -> Option<&str> {
        match self {
            Database::Sqlite => None,
            Database::Postgres { url, .. } => Some(url),
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Database::Sqlite => "sqlite",
            Database::Postgres { .. } => "postgres",
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Database::Postgres { name, .. } = self {
            psql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
        }
    }
}

/// Runs one SQL statement against the `postgres` database with psql.
pub fn psql(sql: &str) {
    let status = Command::new("psql")
        .args(["-d", &format!("{}/postgres", postgres_server()), "-q", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdout(Stdio::null())
        .status()
        .expect("psql runs (apt-get install postgresql-client)");
    assert!(status.success(), "psql failed: {sql}");
}

/// A `ferrodns serve` with DNS and the API. The data directory outlives
/// restarts and goes when this is dropped.
pub struct Node {
    pub dns: SocketAddr,
    pub api: String,
    pub data_dir: PathBuf,
    pub token: String,
    database_url: Option<String>,
    extra: Vec<String>,
    child: Option<Child>,
    /// A node run in process ([`Node::start_in_process`]): its stop signal
    /// and the thread that runs it.
    in_process: Option<(tokio::sync::watch::Sender<bool>, std::thread::JoinHandle<anyhow::Result<()>>)>,
    http: Client,
}

impl Node {
    /// Starts a node on `database` with extra serve flags, and waits until
    /// the API is ready.
    pub fn start(database: &Database, extra: &[&str]) -> Node {
        Node::start_on(database.url().map(str::to_string), extra)
    }

    /// As [`Node::start`], with an explicit PostgreSQL URL.
    pub fn start_with_url(url: &str, extra: &[&str]) -> Node {
        Node::start_on(Some(url.to_string()), extra)
    }

    fn start_on(database_url: Option<String>, extra: &[&str]) -> Node {
        let data_dir = temp_dir("control");
        let mut node = Node {
            dns: SocketAddr::from(([127, 0, 0, 1], 0)),
            api: String::new(),
            data_dir,
            token: String::new(),
            database_url,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            in_process: None,
            http: Client::builder().timeout(Duration::from_secs(60)).build().unwrap(),
        };
        node.launch();
        // Only the node that finds the database empty writes the token file;
        // tests give the others the first node's token.
        node.token = std::fs::read_to_string(node.data_dir.join("admin.token")).unwrap_or_default().trim().to_string();
        node
    }

    /// Starts a node in this test's process, as `ferrodns serve` would run
    /// it, on ports the kernel picks (no port is probed first); it stops
    /// when dropped. It has no process to signal, so `kill`, `stop`,
    /// `restart` and `log` are for [`Node::start`]'s nodes.
    pub fn start_in_process(database: &Database, extra: &[&str]) -> Node {
        let data_dir = temp_dir("in-process");
        let mut flags: Vec<String> =
            ["--dns-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--udp-workers", "1"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        flags.extend(["--data-dir".to_string(), data_dir.display().to_string()]);
        if let Some(url) = database.url() {
            flags.extend(["--database-url".to_string(), url.to_string()]);
        }
        flags.extend(extra.iter().map(|s| s.to_string()));
        let settings = ferrodns::config::ServeSettings::from_flags(flags).unwrap();
        let listeners = ferrodns::Listeners::bind(&settings).unwrap();
        let dns = listeners.dns_addresses()[0];
        let api = format!("http://{}", listeners.api_address().expect("an API listener"));
        let app = ferrodns::App::build(settings).unwrap();
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
            runtime.block_on(app.run(listeners, shutdown))
        });
        let http = Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !http.get(format!("{api}/v1/health/ready")).send().is_ok_and(|r| r.status().is_success()) {
            assert!(!thread.is_finished(), "the in-process node stopped at start");
            assert!(Instant::now() < deadline, "the in-process node was not ready in 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        let token = std::fs::read_to_string(data_dir.join("admin.token")).unwrap_or_default().trim().to_string();
        Node {
            dns,
            api,
            data_dir,
            token,
            database_url: database.url().map(str::to_string),
            extra: Vec::new(),
            child: None,
            in_process: Some((stop, thread)),
            http,
        }
    }

    /// Starts the process. The first start binds ports drawn below the
    /// kernel's ephemeral range ([`super::free_port`]) and reads them from
    /// the log; a restart asks for the same, which no outgoing connection
    /// can have taken meanwhile. A port another test bound in between fails
    /// the launch: a first start then draws new ones, a restart tries again
    /// for a few seconds.
    fn launch(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.try_launch() {
                Ok(()) => return,
                Err(log) if log.contains("Address already in use") && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(log) => panic!("ferrodns exited at start:\n{log}"),
            }
        }
    }

    fn try_launch(&mut self) -> Result<(), String> {
        let first = self.api.is_empty();
        let (dns, api) = if first {
            // Not port 0: a port the kernel handed out was, once the node
            // stopped, free for any outgoing connection to take as its
            // source port (a pooled PostgreSQL connection holds one for
            // minutes; the failover suite's restart found its DNS port
            // taken for longer than its retries).
            (format!("127.0.0.1:{}", super::free_port()), format!("127.0.0.1:{}", super::free_port()))
        } else {
            (self.dns.to_string(), self.api.trim_start_matches("http://").to_string())
        };
        let log_path = self.data_dir.join("server.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
        // What this attempt writes starts here.
        let written_before = self.log().len();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferrodns"));
        command
            .arg("serve")
            .arg("--dns-listen")
            .arg(dns)
            .arg("--api-listen")
            .arg(api)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--udp-workers")
            .arg("1")
            .env_remove("FERRODNS_ADMIN_TOKEN");
        if let Some(url) = &self.database_url {
            command.arg("--database-url").arg(url);
        }
        command.args(&self.extra);
        let child = command.stdout(log.try_clone().unwrap()).stderr(log).stdin(Stdio::null()).spawn().unwrap();
        self.child = Some(child);
        if first {
            let (dns, api) = super::logged_addresses(&log_path, self.child.as_mut().unwrap(), true);
            self.dns = dns;
            self.api = format!("http://{}", api.expect("the API address"));
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                return Err(format!("({status}):\n{}", self.log().get(written_before..).unwrap_or_default()));
            }
            if let Ok(response) = self.http.get(format!("{}/v1/health/ready", self.api)).send() {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            assert!(Instant::now() < deadline, "ferrodns API not ready in 30 s:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default()
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Sends a signal (1 for SIGHUP).
    pub fn signal(&self, signal: i32) {
        if let Some(pid) = self.pid() {
            super::send_signal(pid, signal);
        }
    }

    /// Kills the process with SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops with SIGTERM and waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            super::send_signal(child.id(), 15);
            let _ = child.wait();
        }
    }

    /// Starts the process again on the same data directory and database.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// Starts again after [`Node::kill`].
    pub fn relaunch(&mut self) {
        self.launch();
    }

    /// Creates a zone through the API, as the admin, and expects a 201.
    pub fn create_zone(&self, zone: &str) {
        let body = serde_json::json!({ "name": zone });
        let (status, answer, _) = json(self.request(Method::POST, "/v1/zones").json(&body).send().unwrap());
        assert_eq!(status, 201, "creating {zone}: {answer}");
    }

    /// A request with the admin token.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_as(&self.token, method, path)
    }

    /// A request with another token.
    pub fn request_as(&self, token: &str, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.api)).bearer_auth(token)
    }

    /// A request without a token.
    pub fn anonymous(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.api))
    }

    /// The owner names of every RRset of a zone, read page by page.
    pub fn rrset_names(&self, zone: &str) -> Vec<String> {
        let mut names = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/zones/{zone}/rrsets?limit=1000&cursor={c}"),
                None => format!("/v1/zones/{zone}/rrsets?limit=1000"),
            };
            let (status, page, _) = json(self.request(Method::GET, &path).send().unwrap());
            assert_eq!(status, 200, "{page}");
            names.extend(page["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_string()));
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => return names,
            }
        }
    }

    /// Runs the CLI against this node.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_ferrodns"))
            .args(args)
            .env("FERRODNS_API", &self.api)
            .env("FERRODNS_DATA_DIR", &self.data_dir)
            .env_remove("FERRODNS_TOKEN")
            .output()
            .unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if let Some((stop, thread)) = self.in_process.take() {
            let _ = stop.send(true);
            let stopped = thread.join();
            if !std::thread::panicking() {
                stopped.expect("the in-process node panicked").expect("the in-process node failed");
            }
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A response's status and JSON body (Null when empty or not JSON).
pub fn json(response: Response) -> (u16, Value, reqwest::header::HeaderMap) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null), headers)
}

/// Asks `server` for `name`/`qtype` over UDP; returns the rcode and the
/// answer section's RDATA as text, sorted.
pub fn dns_lookup(server: SocketAddr, name: &str, qtype: u16) -> (String, Vec<String>) {
    let qname = ferrodns_proto::Name::parse(name, None).unwrap();
    let query = super::build_query(7, qname.as_wire(), qtype, Some(1232), false);
    let reply = super::query_udp(server, &query, Duration::from_secs(2)).expect("a DNS answer");
    let message = hickory_proto::op::Message::from_vec(&reply).expect("a well-formed DNS answer");
    let mut data: Vec<String> = message.answers.iter().map(|r| r.data.to_string()).collect();
    data.sort();
    (format!("{:?}", message.metadata.response_code), data)
}

/// A zone as `server` transfers it (AXFR by kdig, signed when `key` is
/// `name:algorithm:base64`), one line per record with single spaces, sorted,
/// the closing SOA folded into the opening one. Empty when refused.
pub fn axfr_lines(server: SocketAddr, zone: &str, key: Option<&str>) -> Vec<String> {
    let mut command = std::process::Command::new("kdig");
    command.args([&format!("@{}", server.ip()), "-p", &server.port().to_string()]);
    if let Some(key) = key {
        let (name, rest) = key.split_once(':').expect("name:algorithm:secret");
        let (algorithm, secret) = rest.split_once(':').expect("name:algorithm:secret");
        command.arg("-y").arg(format!("{algorithm}:{name}:{secret}"));
    }
    let output = command
        .args(["AXFR", zone, "+noall", "+answer", "+nocrypto", "+time=2", "+retry=0"])
        .output()
        .expect("kdig runs");
    let mut lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    lines.sort();
    lines.dedup();
    lines
}
