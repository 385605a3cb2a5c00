//! `ferrodns serve` settings: command-line flags, `FERRODNS_*` environment
//! variables and a TOML file, merged in that order of precedence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use ferrodns_engine::ServerIdentity;
use ferrodns_forward::table::ForwarderAddr;
use ferrodns_forward::RecursionSettings;
use ferrodns_proto::tsig::Key;
use ferrodns_proto::Name;
use ferrodns_server::cookies::CookieSecrets;
use ferrodns_server::rrl::{RrlSettings, MAX_RATE};
use ferrodns_server::CpuPin;
use ferrodns_store::SerialPolicy;
use ferrodns_transfer::acl::{Access, Network};
use ferrodns_transfer::catalog::DEFAULT_CATALOG;
use ferrodns_transfer::target::Target;
use serde::Deserialize;

/// The secondary role's settings.
#[derive(Debug, Clone)]
pub struct SecondaryConfig {
    pub primaries: Vec<Target>,
    pub zones: Vec<Name>,
    pub limits: ferrodns_transfer::client::TransferLimits,
}

/// The host name, for the default node id.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "ferrodns".to_string())
}

/// Flags of `ferrodns serve`. Each has a `FERRODNS_*` variable and a key of the
/// same name (with `_` for `-`) in the `--config` file.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below.
    #[arg(long, env = "FERRODNS_CONFIG")]
    pub config: Option<PathBuf>,
    /// DNS listen address, UDP and TCP (repeatable) [default: 127.0.0.1:5353].
    #[arg(long = "dns-listen", env = "FERRODNS_DNS_LISTEN", value_delimiter = ',')]
    pub dns_listen: Vec<SocketAddr>,
    /// REST API listen address, or `off` [default: 127.0.0.1:8053].
    #[arg(long = "api-listen", env = "FERRODNS_API_LISTEN")]
    pub api_listen: Option<String>,
    /// Data directory [default: ./ferrodns-data].
    #[arg(long = "data-dir", env = "FERRODNS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL [default: SQLite in the data directory].
    #[arg(long = "database-url", env = "FERRODNS_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Serve this RFC 1035 master file read-only (repeatable); a directory serves its *.zone files, NAME=FILE loads FILE as zone NAME (a BIND file without $ORIGIN).
    #[arg(long = "zone-file", env = "FERRODNS_ZONE_FILE", value_delimiter = ',')]
    pub zone_file: Vec<PathBuf>,
    /// Let zone files use $INCLUDE.
    #[arg(long = "allow-include", env = "FERRODNS_ALLOW_INCLUDE")]
    pub allow_include: bool,
    /// UDP worker threads per address [default: the CPUs this process may use].
    #[arg(long = "udp-workers", env = "FERRODNS_UDP_WORKERS")]
    pub udp_workers: Option<usize>,
    /// Microseconds a busy UDP worker may wait for a batch to fill; 0 turns it off [default: 100].
    #[arg(long = "udp-coalesce-us", env = "FERRODNS_UDP_COALESCE_US")]
    pub udp_coalesce_us: Option<u64>,
    /// Send a batch's replies to one client socket as one segmented (GSO) send [default: true].
    #[arg(long = "udp-gso", env = "FERRODNS_UDP_GSO")]
    pub udp_gso: Option<bool>,
    /// Microseconds a UDP worker under load (over ~10k queries/s) polls its socket before it sleeps; 0 turns it off [default: 0].
    #[arg(long = "udp-busy-poll-us", env = "FERRODNS_UDP_BUSY_POLL_US")]
    pub udp_busy_poll_us: Option<u64>,
    /// Keep each UDP worker to one CPU: none, allowed (the CPUs the process was started with) or online (every online CPU from 0, as Knot places its workers) [default: none].
    #[arg(long = "udp-cpu-pin", env = "FERRODNS_UDP_CPU_PIN")]
    pub udp_cpu_pin: Option<String>,
    /// How much lower (nice, 0-19) the async threads (TCP, API, replication, HA) run than the UDP workers [default: 10].
    #[arg(long = "async-nice", env = "FERRODNS_ASYNC_NICE")]
    pub async_nice: Option<i32>,
    /// Log a sample of queries and responses in dnstap: file:PATH (as dnstap-read reads it) or unix:PATH (a Frame Streams reader's socket) [default: off].
    #[arg(long = "query-log", env = "FERRODNS_QUERY_LOG")]
    pub query_log: Option<String>,
    /// Log one answered query in N (per UDP worker; over all TCP connections) [default: 1, every query].
    #[arg(long = "query-log-sample", env = "FERRODNS_QUERY_LOG_SAMPLE")]
    pub query_log_sample: Option<u32>,
    /// Count queries, responses and answer times for /metrics; false only to measure what counting costs [default: true].
    #[arg(long = "metrics", env = "FERRODNS_METRICS")]
    pub metrics: Option<bool>,
    /// Serve /metrics and the health probes on this address too, or off: for nodes without the API (secondaries, --api-listen off) [default: off].
    #[arg(long = "metrics-listen", env = "FERRODNS_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Per-zone series (serial, records) for at most this many zones; with more zones they are left out, so raise it to opt in [default: 1000].
    #[arg(long = "metrics-zone-limit", env = "FERRODNS_METRICS_ZONE_LIMIT")]
    pub metrics_zone_limit: Option<usize>,
    /// Seconds before an idle TCP connection is closed [default: 10].
    #[arg(long = "tcp-idle-timeout", env = "FERRODNS_TCP_IDLE_TIMEOUT")]
    pub tcp_idle_timeout: Option<u64>,
    /// Most TCP connections open at once [default: 512].
    #[arg(long = "tcp-max-connections", env = "FERRODNS_TCP_MAX_CONNECTIONS")]
    pub tcp_max_connections: Option<usize>,
    /// Most DNS TCP connections from one client, an IPv4 address or IPv6 /64 [default: an eighth of --tcp-max-connections].
    #[arg(long = "tcp-max-per-client", env = "FERRODNS_TCP_MAX_PER_CLIENT")]
    pub tcp_max_per_client: Option<usize>,
    /// Answer DNS cookies (RFC 7873, RFC 9018 server cookies) [default: true].
    #[arg(long = "cookies", env = "FERRODNS_COOKIES")]
    pub cookies: Option<bool>,
    /// Server cookie secret, 32 hex digits; give every node of an anycast group the same [default: random at start].
    #[arg(long = "cookie-secret", env = "FERRODNS_COOKIE_SECRET", hide_env_values = true)]
    pub cookie_secret: Option<String>,
    /// The secret before the current one, still accepted while cookies made with it age out (an hour).
    #[arg(long = "cookie-secret-previous", env = "FERRODNS_COOKIE_SECRET_PREVIOUS", hide_env_values = true)]
    pub cookie_secret_previous: Option<String>,
    /// Response rate limit: UDP responses a second per client network, kind and name; 0 turns RRL off [default: 0].
    #[arg(long = "rrl-rate", env = "FERRODNS_RRL_RATE")]
    pub rrl_rate: Option<u32>,
    /// Every Nth rate-limited response is sent truncated (TC) instead of dropped; 0 drops all [default: 2].
    #[arg(long = "rrl-slip", env = "FERRODNS_RRL_SLIP")]
    pub rrl_slip: Option<u32>,
    /// Bits of an IPv4 client address that make its RRL network [default: 24].
    #[arg(long = "rrl-ipv4-prefix", env = "FERRODNS_RRL_IPV4_PREFIX")]
    pub rrl_ipv4_prefix: Option<u8>,
    /// Bits of an IPv6 client address that make its RRL network [default: 56].
    #[arg(long = "rrl-ipv6-prefix", env = "FERRODNS_RRL_IPV6_PREFIX")]
    pub rrl_ipv6_prefix: Option<u8>,
    /// RRL buckets kept (8 octets each; a power of two) [default: 1048576].
    #[arg(long = "rrl-table-size", env = "FERRODNS_RRL_TABLE_SIZE")]
    pub rrl_table_size: Option<usize>,
    /// A client network never rate-limited, such as 192.0.2.0/24 (repeatable).
    #[arg(long = "rrl-exempt", env = "FERRODNS_RRL_EXEMPT", value_delimiter = ',')]
    pub rrl_exempt: Vec<String>,
    /// How each change moves SOA serials: increment, or date (YYYYMMDDnn) [default: increment].
    #[arg(long = "serial-policy", env = "FERRODNS_SERIAL_POLICY")]
    pub serial_policy: Option<String>,
    /// Journal entries kept per zone (the IXFR history) [default: 1000].
    #[arg(long = "journal-keep", env = "FERRODNS_JOURNAL_KEEP")]
    pub journal_keep: Option<u32>,
    /// Nameserver for the NS RRset of new zones (repeatable) [default: ns.invalid.].
    #[arg(long = "default-ns", env = "FERRODNS_DEFAULT_NS", value_delimiter = ',')]
    pub default_ns: Vec<String>,
    /// A zone name tenants may not create, such as a public suffix (repeatable; exact names).
    #[arg(long = "reserved-zone", env = "FERRODNS_RESERVED_ZONE", value_delimiter = ',')]
    pub reserved_zone: Vec<String>,
    /// Most records in one RRset [default: 1000].
    #[arg(long = "max-records-per-rrset", env = "FERRODNS_MAX_RECORDS_PER_RRSET")]
    pub max_records_per_rrset: Option<usize>,
    /// Serve the API over TLS with this certificate chain (PEM); read again on SIGHUP. Needs --api-tls-key.
    #[arg(long = "api-tls-cert", env = "FERRODNS_API_TLS_CERT")]
    pub api_tls_cert: Option<PathBuf>,
    /// The API certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1); read again on SIGHUP.
    #[arg(long = "api-tls-key", env = "FERRODNS_API_TLS_KEY")]
    pub api_tls_key: Option<PathBuf>,
    /// Seconds a client has to send an API request's headers; also closes idle keep-alive connections [default: 10].
    #[arg(long = "api-header-timeout", env = "FERRODNS_API_HEADER_TIMEOUT")]
    pub api_header_timeout: Option<u64>,
    /// Seconds an API request may take to be read and answered, else 408 [default: 60].
    #[arg(long = "api-request-timeout", env = "FERRODNS_API_REQUEST_TIMEOUT")]
    pub api_request_timeout: Option<u64>,
    /// Most API connections at once [default: 1024, fewer if descriptors are short].
    #[arg(long = "api-max-connections", env = "FERRODNS_API_MAX_CONNECTIONS")]
    pub api_max_connections: Option<usize>,
    /// Most API connections from one client, an IPv4 address or IPv6 /64 [default: an eighth of --api-max-connections].
    #[arg(long = "api-max-per-client", env = "FERRODNS_API_MAX_PER_CLIENT")]
    pub api_max_per_client: Option<usize>,
    /// Most API requests in flight at once; more get 503 [default: 256].
    #[arg(long = "api-max-in-flight", env = "FERRODNS_API_MAX_IN_FLIGHT")]
    pub api_max_in_flight: Option<usize>,
    /// Largest API request body in bytes [default: 33554432].
    #[arg(long = "max-body-bytes", env = "FERRODNS_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// This node's name in the API [default: the host name].
    #[arg(long = "node-id", env = "FERRODNS_NODE_ID")]
    pub node_id: Option<String>,
    /// NSID (RFC 5001) for queries that ask for it: `node-id` for this node's id, TEXT, or 0xHEX [default: off].
    #[arg(long = "nsid", env = "FERRODNS_NSID")]
    pub nsid: Option<String>,
    /// What CH TXT id.server and hostname.bind answer; empty refuses them [default: the node id].
    #[arg(long = "identity", env = "FERRODNS_IDENTITY")]
    pub identity: Option<String>,
    /// What CH TXT version.bind and version.server answer [default: none; they are refused].
    #[arg(long = "version-string", env = "FERRODNS_VERSION_STRING")]
    pub version_string: Option<String>,
    /// Send NOTIFY to this secondary on every serial change: ADDR or NAME, port 53 if omitted (repeatable).
    #[arg(long = "notify", env = "FERRODNS_NOTIFY", value_delimiter = ',')]
    pub notify: Vec<String>,
    /// Allow zone transfers from this address or CIDR without TSIG (repeatable).
    #[arg(long = "allow-transfer", env = "FERRODNS_ALLOW_TRANSFER", value_delimiter = ',')]
    pub allow_transfer: Vec<String>,
    /// primary (zones from the API and zone files) or secondary (zones from --primary) [default: primary].
    #[arg(long = "role", env = "FERRODNS_ROLE")]
    pub role: Option<String>,
    /// A primary to follow zones from, in order of preference: ADDR or NAME, port 53 if omitted (repeatable).
    #[arg(long = "primary", env = "FERRODNS_PRIMARY", value_delimiter = ',')]
    pub primary: Vec<String>,
    /// A zone to follow from the primaries besides the catalog's members (repeatable).
    #[arg(long = "secondary-zone", env = "FERRODNS_SECONDARY_ZONE", value_delimiter = ',')]
    pub secondary_zone: Vec<String>,
    /// Most records one incoming transfer may hold [default: 5000000].
    #[arg(long = "xfr-max-records", env = "FERRODNS_XFR_MAX_RECORDS")]
    pub xfr_max_records: Option<usize>,
    /// Most bytes one incoming transfer may hold [default: 536870912].
    #[arg(long = "xfr-max-bytes", env = "FERRODNS_XFR_MAX_BYTES")]
    pub xfr_max_bytes: Option<usize>,
    /// Seconds one incoming transfer may take [default: 300].
    #[arg(long = "xfr-timeout", env = "FERRODNS_XFR_TIMEOUT")]
    pub xfr_timeout: Option<u64>,
    /// Leader lease length in milliseconds (PostgreSQL control plane) [default: 2000].
    #[arg(long = "ha-lease-ms", env = "FERRODNS_HA_LEASE_MS")]
    pub ha_lease_ms: Option<u64>,
    /// How often the leader renews, and others try to take, the lease, in milliseconds [default: 500].
    #[arg(long = "ha-renew-ms", env = "FERRODNS_HA_RENEW_MS")]
    pub ha_renew_ms: Option<u64>,
    /// How often a node compares every zone with the database, besides LISTEN, in milliseconds [default: 1000].
    #[arg(long = "ha-poll-ms", env = "FERRODNS_HA_POLL_MS")]
    pub ha_poll_ms: Option<u64>,
    /// How often the leader checks every secondary's serials and re-NOTIFYs laggards, in milliseconds [default: 10000].
    #[arg(long = "drift-interval-ms", env = "FERRODNS_DRIFT_INTERVAL_MS")]
    pub drift_interval_ms: Option<u64>,
    /// Name of the RFC 9432 catalog zone (published as primary, followed as secondary), or off [default: catalog.ferrodns.invalid.].
    #[arg(long = "catalog-zone", env = "FERRODNS_CATALOG_ZONE")]
    pub catalog_zone: Option<String>,
    /// Forward a domain's queries to resolvers: NAME=ADDR[:PORT][,ADDR[:PORT]...], `.` for every name no zone holds (repeatable).
    #[arg(long = "forward-zone", env = "FERRODNS_FORWARD_ZONE")]
    pub forward_zone: Vec<String>,
    /// A client network whose queries may be forwarded, such as 10.0.0.0/8 (repeatable) [default: 127.0.0.0/8 and ::1].
    #[arg(long = "recursion-allow", env = "FERRODNS_RECURSION_ALLOW", value_delimiter = ',')]
    pub recursion_allow: Vec<String>,
    /// Memory for forwarded answers: bytes, or with K, M or G [default: 64M].
    #[arg(long = "cache-size", env = "FERRODNS_CACHE_SIZE")]
    pub cache_size: Option<String>,
    /// CA certificates (PEM) to trust for forwarders over TLS (tls://ADDR#NAME), besides the system's.
    #[arg(long = "forward-tls-ca", env = "FERRODNS_FORWARD_TLS_CA")]
    pub forward_tls_ca: Option<PathBuf>,
    /// How long past its TTL an answer may be served when every forwarder fails: seconds, or with s, m, h or d; 0 turns it off [default: 1d].
    #[arg(long = "serve-stale", env = "FERRODNS_SERVE_STALE")]
    pub serve_stale: Option<String>,
    /// TSIG key NAME:ALGORITHM:BASE64 (repeatable); transfers signed with one are allowed.
    #[arg(long = "tsig-key", env = "FERRODNS_TSIG_KEY", value_delimiter = ',')]
    pub tsig_key: Vec<String>,
}

/// The `--config` file. Unknown keys are errors, so a typo does not go unseen.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileSettings {
    dns_listen: Option<Vec<SocketAddr>>,
    api_listen: Option<String>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    zone_file: Option<Vec<PathBuf>>,
    allow_include: Option<bool>,
    udp_workers: Option<usize>,
    udp_coalesce_us: Option<u64>,
    udp_gso: Option<bool>,
    udp_busy_poll_us: Option<u64>,
    udp_cpu_pin: Option<String>,
    async_nice: Option<i32>,
    metrics: Option<bool>,
    metrics_listen: Option<String>,
    query_log: Option<String>,
    query_log_sample: Option<u32>,
    metrics_zone_limit: Option<usize>,
    tcp_idle_timeout: Option<u64>,
    tcp_max_connections: Option<usize>,
    tcp_max_per_client: Option<usize>,
    cookies: Option<bool>,
    cookie_secret: Option<String>,
    cookie_secret_previous: Option<String>,
    rrl_rate: Option<u32>,
    rrl_slip: Option<u32>,
    rrl_ipv4_prefix: Option<u8>,
    rrl_ipv6_prefix: Option<u8>,
    rrl_table_size: Option<usize>,
    rrl_exempt: Option<Vec<String>>,
    serial_policy: Option<String>,
    journal_keep: Option<u32>,
    default_ns: Option<Vec<String>>,
    reserved_zone: Option<Vec<String>>,
    max_records_per_rrset: Option<usize>,
    max_body_bytes: Option<usize>,
    api_tls_cert: Option<PathBuf>,
    api_tls_key: Option<PathBuf>,
    api_header_timeout: Option<u64>,
    api_request_timeout: Option<u64>,
    api_max_connections: Option<usize>,
    api_max_per_client: Option<usize>,
    api_max_in_flight: Option<usize>,
    node_id: Option<String>,
    nsid: Option<String>,
    identity: Option<String>,
    version_string: Option<String>,
    notify: Option<Vec<String>>,
    allow_transfer: Option<Vec<String>>,
    tsig_key: Option<Vec<String>>,
    catalog_zone: Option<String>,
    ha_lease_ms: Option<u64>,
    ha_renew_ms: Option<u64>,
    ha_poll_ms: Option<u64>,
    drift_interval_ms: Option<u64>,
    role: Option<String>,
    primary: Option<Vec<String>>,
    secondary_zone: Option<Vec<String>>,
    xfr_max_records: Option<usize>,
    xfr_max_bytes: Option<usize>,
    xfr_timeout: Option<u64>,
    forward_zone: Option<Vec<String>>,
    recursion_allow: Option<Vec<String>>,
    cache_size: Option<String>,
    serve_stale: Option<String>,
    forward_tls_ca: Option<PathBuf>,
    log_level: Option<String>,
}

/// The settings `serve` runs with, every default filled in.
#[derive(Debug)]
pub struct ServeSettings {
    pub dns_listen: Vec<SocketAddr>,
    pub api_listen: Option<SocketAddr>,
    /// Where the embedded database and the admin token live.
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub zone_files: Vec<PathBuf>,
    pub allow_include: bool,
    pub udp_workers: usize,
    pub udp_coalesce: Duration,
    pub udp_gso: bool,
    pub udp_busy_poll: Duration,
    pub udp_cpu_pin: CpuPin,
    pub async_nice: i32,
    /// Count DNS traffic for /metrics.
    pub metrics: bool,
    pub metrics_listen: Option<SocketAddr>,
    pub metrics_zone_limit: usize,
    /// Sampled queries to dnstap, when on.
    pub query_log: Option<ferrodns_server::dnstap::QueryLogSettings>,
    pub tcp_idle_timeout: Duration,
    pub tcp_max_connections: usize,
    pub tcp_max_per_client: usize,
    /// None when cookies are off.
    pub cookies: Option<CookieSecrets>,
    pub rrl: RrlSettings,
    pub serial_policy: SerialPolicy,
    pub journal_keep: u32,
    pub default_ns: Vec<Name>,
    /// Zone names only the operator may create (lowercase).
    pub reserved_zones: Vec<Name>,
    pub max_records_per_rrset: usize,
    pub max_body_bytes: usize,
    /// The API's certificate chain and key, when it speaks TLS.
    pub api_tls: Option<(PathBuf, PathBuf)>,
    pub api_header_timeout: Duration,
    pub api_request_timeout: Duration,
    pub api_max_connections: usize,
    pub api_max_per_client: usize,
    pub api_max_in_flight: usize,
    pub node_id: String,
    /// The NSID and the CH-class answers.
    pub server_identity: ServerIdentity,
    pub notify: Vec<Target>,
    pub transfer_access: Access,
    /// None when turned off.
    pub catalog_zone: Option<Name>,
    pub secondary: Option<SecondaryConfig>,
    pub ha_lease: Duration,
    pub ha_renew: Duration,
    pub ha_poll: Duration,
    pub drift_interval: Duration,
    /// The forward zones from flags and the file: apex, forwarders.
    pub forward_zones: Vec<(Name, Vec<ForwarderAddr>)>,
    pub recursion: RecursionSettings,
    /// The log level from the file, used when neither flag nor variable sets one.
    pub file_log_level: Option<String>,
}

impl ServeSettings {
    /// Whether this node runs the control plane (a database, zones of its
    /// own, the API): a primary with the API or a database. A secondary's
    /// zones come from its primaries.
    pub fn runs_control_plane(&self) -> bool {
        self.secondary.is_none() && (self.api_listen.is_some() || self.database_url.is_some())
    }
}

/// `NAME=ADDR[:PORT][,ADDR[:PORT]...]`, as `--forward-zone` takes it.
fn parse_forward_zone(text: &str) -> anyhow::Result<(Name, Vec<ForwarderAddr>)> {
    let bad = |why: String| anyhow::anyhow!("bad --forward-zone '{text}': {why}");
    let (name, forwarders) = text.split_once('=').ok_or_else(|| bad("want NAME=ADDR[,ADDR...]".into()))?;
    let name = name.trim();
    let absolute = if name.ends_with('.') { name.to_string() } else { format!("{name}.") };
    let apex = Name::parse(&absolute, None).map_err(|e| bad(e.to_string()))?.to_lowercase();
    let mut addresses = Vec::new();
    for forwarder in forwarders.split(',').filter(|f| !f.trim().is_empty()) {
        addresses.push(ForwarderAddr::parse(forwarder).map_err(bad)?);
    }
    if addresses.is_empty() {
        return Err(bad("no forwarder".into()));
    }
    if addresses.len() > ferrodns_forward::table::MAX_FORWARDERS {
        return Err(bad(format!("at most {} forwarders", ferrodns_forward::table::MAX_FORWARDERS)));
    }
    Ok((apex, addresses))
}

/// The NSID payload `--nsid` names: `node-id` for `node_id`, `0x` and hex
/// digits for raw octets (as Knot takes it), else the text itself.
fn parse_nsid(text: &str, node_id: &str) -> anyhow::Result<Vec<u8>> {
    let bad = |why: &str| anyhow::anyhow!("bad --nsid '{text}': {why}");
    if text == "node-id" {
        return Ok(node_id.as_bytes().to_vec());
    }
    let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) else {
        return Ok(text.as_bytes().to_vec());
    };
    if hex.len() % 2 != 0 {
        return Err(bad("an odd number of hex digits"));
    }
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&hex[at..at + 2], 16).map_err(|_| bad("not hex digits after 0x")))
        .collect()
}

/// Bytes, or a number with K, M or G (powers of 1024).
fn parse_size(text: &str) -> anyhow::Result<usize> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last() {
        Some((at, 'k' | 'K')) => (&text[..at], 10),
        Some((at, 'm' | 'M')) => (&text[..at], 20),
        Some((at, 'g' | 'G')) => (&text[..at], 30),
        _ => (text, 0),
    };
    let value: usize = digits.trim().parse().context("want bytes, or a number with K, M or G")?;
    value.checked_shl(shift).filter(|v| v >> shift == value).context("too large")
}

/// Seconds, or a number with s, m, h or d.
fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().last() {
        Some((at, 's')) => (&text[..at], 1),
        Some((at, 'm')) => (&text[..at], 60),
        Some((at, 'h')) => (&text[..at], 3600),
        Some((at, 'd')) => (&text[..at], 86_400),
        _ => (text, 1),
    };
    let value: u64 = digits.trim().parse().context("want seconds, or a number with s, m, h or d")?;
    Ok(Duration::from_secs(value.checked_mul(unit).context("too long")?))
}

fn read_file(path: &Path) -> anyhow::Result<FileSettings> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("bad config {}", path.display()))
}

impl ServeSettings {
    /// The settings `ferrodns serve` would run with, given these flags (and
    /// the `FERRODNS_*` variables and the config file they name), for a
    /// node started in process.
    pub fn from_flags<I, T>(flags: I) -> anyhow::Result<ServeSettings>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(clap::Parser)]
        struct Serve {
            #[command(flatten)]
            args: ServeArgs,
        }
        let flags = std::iter::once(std::ffi::OsString::from("serve")).chain(flags.into_iter().map(Into::into));
        <Serve as clap::Parser>::try_parse_from(flags)?.args.resolve()
    }
}

impl ServeArgs {
    /// Merges flags and environment over the config file over the defaults.
    pub fn resolve(self) -> anyhow::Result<ServeSettings> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileSettings::default(),
        };
        let dns_listen = if !self.dns_listen.is_empty() {
            self.dns_listen
        } else {
            file.dns_listen.unwrap_or_else(|| vec!["127.0.0.1:5353".parse().expect("valid literal")])
        };
        if dns_listen.is_empty() {
            bail!("no DNS listen address");
        }
        let api_text = self.api_listen.or(file.api_listen).unwrap_or_else(|| "127.0.0.1:8053".into());
        let api_listen = if api_text.eq_ignore_ascii_case("off") {
            None
        } else {
            Some(api_text.parse().with_context(|| format!("bad --api-listen '{api_text}': want ADDR:PORT or off"))?)
        };
        let metrics_text = self.metrics_listen.or(file.metrics_listen).unwrap_or_else(|| "off".into());
        let metrics_listen = if metrics_text.eq_ignore_ascii_case("off") {
            None
        } else {
            Some(
                metrics_text
                    .parse()
                    .with_context(|| format!("bad --metrics-listen '{metrics_text}': want ADDR:PORT or off"))?,
            )
        };
        let zone_files = if !self.zone_file.is_empty() { self.zone_file } else { file.zone_file.unwrap_or_default() };
        let serial_policy = match self.serial_policy.or(file.serial_policy).as_deref() {
            None | Some("increment") => SerialPolicy::Increment,
            Some("date") => SerialPolicy::Date,
            Some(other) => bail!("bad --serial-policy '{other}': want increment or date"),
        };
        let default_ns_text =
            if !self.default_ns.is_empty() { self.default_ns } else { file.default_ns.unwrap_or_default() };
        let mut default_ns = Vec::new();
        for text in &default_ns_text {
            let absolute = if text.ends_with('.') { text.clone() } else { format!("{text}.") };
            default_ns.push(Name::parse(&absolute, None).with_context(|| format!("bad --default-ns '{text}'"))?);
        }
        if default_ns.is_empty() {
            default_ns.push(Name::parse("ns.invalid.", None).expect("valid literal"));
        }
        let reserved_text =
            if !self.reserved_zone.is_empty() { self.reserved_zone } else { file.reserved_zone.unwrap_or_default() };
        let mut reserved_zones = Vec::new();
        for text in &reserved_text {
            let absolute = if text.ends_with('.') { text.clone() } else { format!("{text}.") };
            let name = Name::parse(&absolute, None).with_context(|| format!("bad --reserved-zone '{text}'"))?;
            reserved_zones.push(name.to_lowercase());
        }
        let tcp_max_connections = self.tcp_max_connections.or(file.tcp_max_connections).unwrap_or(512).max(1);
        let api_max_connections = self.api_max_connections.or(file.api_max_connections).unwrap_or(1024).max(1);
        let node_id = self.node_id.or(file.node_id).unwrap_or_else(host_name);
        let nsid = self.nsid.or(file.nsid).map(|text| parse_nsid(&text, &node_id)).transpose()?;
        let identity = self.identity.or(file.identity).unwrap_or_else(|| node_id.clone());
        let version = self.version_string.or(file.version_string);
        let server_identity = ServerIdentity::new(nsid.as_deref(), Some(&identity), version.as_deref())
            .map_err(|e| anyhow::anyhow!("bad --nsid, --identity or --version-string: {e}"))?;
        let query_log = match self.query_log.or(file.query_log).filter(|t| !t.eq_ignore_ascii_case("off")) {
            None => None,
            Some(text) => {
                let target = ferrodns_server::dnstap::Target::parse(&text)
                    .map_err(|e| anyhow::anyhow!("bad --query-log: {e}"))?;
                let sample = self.query_log_sample.or(file.query_log_sample).unwrap_or(1);
                if sample == 0 {
                    bail!("--query-log-sample must be at least 1 (1 logs every query)");
                }
                Some(ferrodns_server::dnstap::QueryLogSettings { target, sample, identity: node_id.clone() })
            }
        };
        // Blank items are no items: an empty FERRODNS_TSIG_KEY (a Secret's
        // empty key, an unset value in a unit file) or a trailing comma.
        let list = |flag: Vec<String>, key: Option<Vec<String>>| {
            let items = if !flag.is_empty() { flag } else { key.unwrap_or_default() };
            items.into_iter().filter(|item| !item.trim().is_empty()).collect::<Vec<_>>()
        };
        let mut notify = Vec::new();
        for text in list(self.notify, file.notify) {
            notify.push(Target::parse(&text).map_err(|e| anyhow::anyhow!("bad --notify: {e}"))?);
        }
        let catalog_text = self.catalog_zone.or(file.catalog_zone).unwrap_or_else(|| DEFAULT_CATALOG.to_string());
        let catalog_zone = if catalog_text.eq_ignore_ascii_case("off") {
            None
        } else {
            let absolute = if catalog_text.ends_with('.') { catalog_text.clone() } else { format!("{catalog_text}.") };
            Some(
                Name::parse(&absolute, None)
                    .with_context(|| format!("bad --catalog-zone '{catalog_text}'"))?
                    .to_lowercase(),
            )
        };
        let role = self.role.or(file.role).unwrap_or_else(|| "primary".to_string());
        let mut primaries = Vec::new();
        for text in list(self.primary, file.primary) {
            primaries.push(Target::parse(&text).map_err(|e| anyhow::anyhow!("bad --primary: {e}"))?);
        }
        let mut secondary_zones = Vec::new();
        for text in list(self.secondary_zone, file.secondary_zone) {
            let absolute = if text.ends_with('.') { text.clone() } else { format!("{text}.") };
            secondary_zones
                .push(Name::parse(&absolute, None).with_context(|| format!("bad --secondary-zone '{text}'"))?);
        }
        let secondary = match role.as_str() {
            "primary" => {
                if !primaries.is_empty() || !secondary_zones.is_empty() {
                    bail!("--primary and --secondary-zone need --role secondary");
                }
                None
            }
            "secondary" => {
                if primaries.is_empty() {
                    bail!("--role secondary needs at least one --primary");
                }
                let defaults = ferrodns_transfer::client::TransferLimits::default();
                Some(SecondaryConfig {
                    primaries,
                    zones: secondary_zones,
                    limits: ferrodns_transfer::client::TransferLimits {
                        max_records: self.xfr_max_records.or(file.xfr_max_records).unwrap_or(defaults.max_records),
                        max_bytes: self.xfr_max_bytes.or(file.xfr_max_bytes).unwrap_or(defaults.max_bytes),
                        timeout: self.xfr_timeout.or(file.xfr_timeout).map_or(defaults.timeout, Duration::from_secs),
                    },
                })
            }
            other => bail!("bad --role '{other}': want primary or secondary"),
        };
        let ha_lease_ms = self.ha_lease_ms.or(file.ha_lease_ms).unwrap_or(2000);
        let ha_renew_ms = self.ha_renew_ms.or(file.ha_renew_ms).unwrap_or(500);
        if ha_renew_ms == 0 || ha_renew_ms * 2 > ha_lease_ms {
            bail!("--ha-renew-ms ({ha_renew_ms}) must be above 0 and at most half of --ha-lease-ms ({ha_lease_ms})");
        }
        let mut transfer_access = Access::default();
        for text in list(self.allow_transfer, file.allow_transfer) {
            transfer_access
                .networks
                .push(Network::parse(&text).map_err(|e| anyhow::anyhow!("bad --allow-transfer: {e}"))?);
        }
        for text in list(self.tsig_key, file.tsig_key) {
            let key = Key::parse(&text).map_err(|e| anyhow::anyhow!("bad --tsig-key: {e}"))?;
            if transfer_access.key(&key.name).is_some() {
                bail!("--tsig-key {} is given twice", key.name);
            }
            transfer_access.keys.push(key);
        }
        let default_workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let cookies = if self.cookies.or(file.cookies).unwrap_or(true) {
            let secret = |value: Option<String>, flag: &str| {
                value
                    .map(|text| CookieSecrets::parse_hex(&text).map_err(|e| anyhow::anyhow!("bad --{flag}: {e}")))
                    .transpose()
            };
            let current = secret(self.cookie_secret.or(file.cookie_secret), "cookie-secret")?;
            let previous =
                secret(self.cookie_secret_previous.or(file.cookie_secret_previous), "cookie-secret-previous")?;
            Some(match current {
                Some(current) => CookieSecrets::new(current, previous),
                None if previous.is_some() => anyhow::bail!("--cookie-secret-previous needs --cookie-secret"),
                None => CookieSecrets::random().context("cannot make a cookie secret")?,
            })
        } else {
            None
        };
        let api_tls = match (self.api_tls_cert.or(file.api_tls_cert), self.api_tls_key.or(file.api_tls_key)) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => bail!("--api-tls-cert and --api-tls-key go together"),
        };
        let defaults = RrlSettings::default();
        let exempt = if self.rrl_exempt.is_empty() { file.rrl_exempt.unwrap_or_default() } else { self.rrl_exempt };
        let rrl = RrlSettings {
            rate: self.rrl_rate.or(file.rrl_rate).unwrap_or(0),
            slip: self.rrl_slip.or(file.rrl_slip).unwrap_or(defaults.slip),
            ipv4_prefix: self.rrl_ipv4_prefix.or(file.rrl_ipv4_prefix).unwrap_or(defaults.ipv4_prefix),
            ipv6_prefix: self.rrl_ipv6_prefix.or(file.rrl_ipv6_prefix).unwrap_or(defaults.ipv6_prefix),
            table_size: self.rrl_table_size.or(file.rrl_table_size).unwrap_or(defaults.table_size),
            exempt: exempt
                .iter()
                .map(|text| Network::parse(text).map_err(|e| anyhow::anyhow!("bad --rrl-exempt: {e}")))
                .collect::<anyhow::Result<_>>()?,
            // Set where the server is built, which knows whether the control plane runs.
            zone_limits: false,
        };
        if rrl.rate > MAX_RATE {
            anyhow::bail!("bad --rrl-rate: at most {MAX_RATE} responses a second");
        }
        if rrl.ipv4_prefix > 32 || rrl.ipv6_prefix > 128 {
            anyhow::bail!("bad --rrl-ipv4-prefix or --rrl-ipv6-prefix: at most 32 and 128 bits");
        }
        let mut forward_zones: Vec<(Name, Vec<ForwarderAddr>)> = Vec::new();
        for text in list(self.forward_zone, file.forward_zone) {
            let zone = parse_forward_zone(&text)?;
            if forward_zones.iter().any(|(apex, _)| *apex == zone.0) {
                bail!("bad --forward-zone '{text}': {} is given twice", zone.0);
            }
            forward_zones.push(zone);
        }
        let mut allow = Vec::new();
        for text in list(self.recursion_allow, file.recursion_allow) {
            allow.push(Network::parse(&text).map_err(|e| anyhow::anyhow!("bad --recursion-allow: {e}"))?);
        }
        let recursion = RecursionSettings {
            allow: if allow.is_empty() { ferrodns_forward::default_allow() } else { allow },
            cache_size: match self.cache_size.or(file.cache_size) {
                None => 64 << 20,
                Some(text) => parse_size(&text).with_context(|| format!("bad --cache-size '{text}'"))?,
            },
            serve_stale: match self.serve_stale.or(file.serve_stale) {
                None => Duration::from_secs(86_400),
                Some(text) => parse_duration(&text).with_context(|| format!("bad --serve-stale '{text}'"))?,
            },
            ttl_limits: Default::default(),
            tls_roots: self.forward_tls_ca.or(file.forward_tls_ca),
        };
        let udp_cpu_pin = match self.udp_cpu_pin.or(file.udp_cpu_pin) {
            None => CpuPin::None,
            Some(text) => CpuPin::parse(&text)
                .with_context(|| format!("bad --udp-cpu-pin '{text}': want none, allowed or online"))?,
        };
        Ok(ServeSettings {
            dns_listen,
            api_listen,
            data_dir: self.data_dir.or(file.data_dir).unwrap_or_else(|| PathBuf::from("./ferrodns-data")),
            database_url: self.database_url.or(file.database_url),
            zone_files,
            allow_include: self.allow_include || file.allow_include.unwrap_or(false),
            udp_workers: self.udp_workers.or(file.udp_workers).unwrap_or(default_workers).max(1),
            udp_coalesce: Duration::from_micros(self.udp_coalesce_us.or(file.udp_coalesce_us).unwrap_or(100).min(1000)),
            udp_gso: self.udp_gso.or(file.udp_gso).unwrap_or(true),
            udp_busy_poll: Duration::from_micros(
                self.udp_busy_poll_us.or(file.udp_busy_poll_us).unwrap_or(0).min(1000),
            ),
            udp_cpu_pin,
            forward_zones,
            recursion,
            async_nice: self.async_nice.or(file.async_nice).unwrap_or(10).clamp(0, 19),
            metrics: self.metrics.or(file.metrics).unwrap_or(true),
            metrics_listen,
            metrics_zone_limit: self.metrics_zone_limit.or(file.metrics_zone_limit).unwrap_or(1000),
            query_log,
            tcp_idle_timeout: Duration::from_secs(self.tcp_idle_timeout.or(file.tcp_idle_timeout).unwrap_or(10)),
            tcp_max_connections,
            tcp_max_per_client: self
                .tcp_max_per_client
                .or(file.tcp_max_per_client)
                .unwrap_or(tcp_max_connections / 8)
                .clamp(1, tcp_max_connections),
            cookies,
            rrl,
            serial_policy,
            journal_keep: self.journal_keep.or(file.journal_keep).unwrap_or(1000).max(1),
            default_ns,
            reserved_zones,
            max_records_per_rrset: self.max_records_per_rrset.or(file.max_records_per_rrset).unwrap_or(1000).max(1),
            max_body_bytes: self.max_body_bytes.or(file.max_body_bytes).unwrap_or(32 << 20).max(1024),
            api_tls,
            api_header_timeout: Duration::from_secs(
                self.api_header_timeout.or(file.api_header_timeout).unwrap_or(10).max(1),
            ),
            api_request_timeout: Duration::from_secs(
                self.api_request_timeout.or(file.api_request_timeout).unwrap_or(60).max(1),
            ),
            api_max_connections,
            api_max_per_client: self
                .api_max_per_client
                .or(file.api_max_per_client)
                .unwrap_or(api_max_connections / 8)
                .clamp(1, api_max_connections),
            api_max_in_flight: self.api_max_in_flight.or(file.api_max_in_flight).unwrap_or(256).max(1),
            node_id,
            server_identity,
            notify,
            transfer_access,
            catalog_zone,
            secondary,
            ha_lease: Duration::from_millis(ha_lease_ms),
            ha_renew: Duration::from_millis(ha_renew_ms),
            ha_poll: Duration::from_millis(self.ha_poll_ms.or(file.ha_poll_ms).unwrap_or(1000).max(50)),
            drift_interval: Duration::from_millis(
                self.drift_interval_ms.or(file.drift_interval_ms).unwrap_or(10_000).max(100),
            ),
            file_log_level: file.log_level,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nsid_is_the_node_id_raw_octets_or_text() {
        assert_eq!(parse_nsid("node-id", "dns-1").unwrap(), b"dns-1");
        assert_eq!(parse_nsid("0x00ff10", "dns-1").unwrap(), [0, 255, 16]);
        assert_eq!(parse_nsid("anycast west", "dns-1").unwrap(), b"anycast west");
        assert!(parse_nsid("0xabc", "dns-1").is_err());
        assert!(parse_nsid("0xzz", "dns-1").is_err());
    }

    #[test]
    fn cpu_pinning_is_named_and_a_typo_is_an_error() {
        let settings = ServeSettings::from_flags(["--udp-cpu-pin", "online"]).unwrap();
        assert_eq!(settings.udp_cpu_pin, CpuPin::Online);
        let error = ServeSettings::from_flags(["--udp-cpu-pin", "all"]).unwrap_err();
        assert!(format!("{error:#}").contains("want none, allowed or online"), "{error:#}");
    }

    #[test]
    fn forward_zones_and_recursion_settings_parse_and_bad_ones_are_named() {
        let settings = ServeSettings::from_flags([
            "--forward-zone",
            "Corp.Example=192.0.2.53,192.0.2.54:5300",
            "--forward-zone",
            ".=[2001:db8::53]:5300",
            "--recursion-allow",
            "10.0.0.0/8",
            "--cache-size",
            "16M",
            "--serve-stale",
            "2h",
        ])
        .unwrap();
        let zones: Vec<(String, Vec<String>)> = settings
            .forward_zones
            .iter()
            .map(|(apex, f)| (apex.to_string(), f.iter().map(|f| f.to_string()).collect()))
            .collect();
        assert_eq!(
            zones,
            [
                ("corp.example.".to_string(), vec!["192.0.2.53".to_string(), "192.0.2.54:5300".to_string()]),
                (".".to_string(), vec!["[2001:db8::53]:5300".to_string()]),
            ]
        );
        assert_eq!(settings.recursion.cache_size, 16 << 20);
        assert_eq!(settings.recursion.serve_stale, Duration::from_secs(7200));
        assert!(settings.recursion.allow[0].contains("10.1.2.3".parse().unwrap()));
        assert!(!settings.recursion.allow.iter().any(|n| n.contains("127.0.0.1".parse().unwrap())));
        let defaults = ServeSettings::from_flags(Vec::<String>::new()).unwrap();
        assert!(defaults.forward_zones.is_empty());
        assert!(defaults.recursion.allow.iter().any(|n| n.contains("127.0.0.1".parse().unwrap())));
        assert!(!defaults.recursion.allow.iter().any(|n| n.contains("192.0.2.1".parse().unwrap())), "not open");
        for (flags, message) in [
            (["--forward-zone", "corp.example"], "want NAME=ADDR"),
            (["--forward-zone", "corp.example="], "no forwarder"),
            (["--forward-zone", "corp.example=ns1.example"], "is not ADDR"),
            (["--cache-size", "12X"], "bad --cache-size"),
            (["--serve-stale", "forever"], "bad --serve-stale"),
            (["--recursion-allow", "10.0.0.0/33"], "bad --recursion-allow"),
        ] {
            let error = format!("{:#}", ServeSettings::from_flags(flags).unwrap_err());
            assert!(error.contains(message), "{flags:?}: {error}");
        }
    }

    /// The sample shipped for systemd must stay a valid config.
    #[test]
    fn the_systemd_sample_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/systemd/ferrodns.toml");
        let args = ServeArgs { config: Some(path), ..ServeArgs::default() };
        let settings = args.resolve().unwrap();
        assert_eq!(settings.node_id, "dns1");
        assert_eq!(settings.notify.len(), 2);
        assert_eq!(settings.ha_lease, Duration::from_millis(2000));
    }

    #[test]
    fn flags_win_over_the_file_and_defaults_fill_the_rest() {
        let dir = std::env::temp_dir().join(format!("ferrodns-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ferrodns.toml");
        std::fs::write(&path, "dns-listen = [\"127.0.0.1:5400\"]\napi-listen = \"off\"\ntcp-idle-timeout = 3\n")
            .unwrap();
        let args = ServeArgs { config: Some(path.clone()), tcp_idle_timeout: Some(7), ..ServeArgs::default() };
        let settings = args.resolve().unwrap();
        assert_eq!(settings.dns_listen, ["127.0.0.1:5400".parse::<SocketAddr>().unwrap()]);
        assert_eq!(settings.api_listen, None);
        assert_eq!(settings.tcp_idle_timeout, Duration::from_secs(7));
        assert_eq!(settings.data_dir, PathBuf::from("./ferrodns-data"));
        assert_eq!(settings.udp_busy_poll, Duration::ZERO, "busy polling is off unless asked for");
        assert_eq!(settings.udp_cpu_pin, CpuPin::None, "workers keep to the CPUs they were given");
        std::fs::write(&path, "udp-busy-poll-us = 5000\n").unwrap();
        let args = ServeArgs { config: Some(path.clone()), ..ServeArgs::default() };
        assert_eq!(args.resolve().unwrap().udp_busy_poll, Duration::from_micros(1000), "capped at 1 ms");
        std::fs::write(&path, "dns-listn = []\n").unwrap();
        let args = ServeArgs { config: Some(path), ..ServeArgs::default() };
        assert!(format!("{:#}", args.resolve().unwrap_err()).contains("unknown field `dns-listn`"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// An empty FERRODNS_TSIG_KEY, as a Helm Secret's empty key gives it,
    /// is no key (every pod exited with "bad --tsig-key" before).
    #[test]
    fn blank_list_items_are_none() {
        let args = ServeArgs { tsig_key: vec![String::new()], notify: vec![" ".into()], ..ServeArgs::default() };
        let settings = args.resolve().unwrap();
        assert!(settings.transfer_access.keys.is_empty());
        assert!(settings.notify.is_empty());
    }
}
