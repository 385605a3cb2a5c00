//! The API client subcommands: `zone`, `rrset` and `token`.
//!
//! They print tables by default and the API's JSON with `--output json`. An
//! API error prints the problem's title, detail and each pointed error, and
//! the command exits non-zero.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Flags every client command takes.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// API base URL (http:// or https://).
    #[arg(long, env = "FERRODNS_API", default_value = "http://127.0.0.1:8053", global = true)]
    pub api: String,
    /// Trust the API's certificate if this CA (PEM) signed it, beside the system's CAs.
    #[arg(long = "ca-file", env = "FERRODNS_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
    /// API token [default: FERRODNS_TOKEN, then <data-dir>/admin.token].
    #[arg(long, global = true)]
    pub token: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table", global = true)]
    pub output: Output,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum ZoneCommand {
    /// Create a zone: hosted, or with --forward a forward zone (`.` for the default upstream).
    Create {
        name: String,
        /// Nameservers for the apex NS RRset (repeatable) [default: the server's].
        #[arg(long = "ns", conflicts_with = "forwarders")]
        nameservers: Vec<String>,
        /// TTL of the SOA and NS.
        #[arg(long, conflicts_with = "forwarders")]
        ttl: Option<u32>,
        /// Make a forward zone whose queries go to this resolver, ADDR or ADDR:PORT (repeatable).
        #[arg(long = "forward", conflicts_with = "primaries")]
        forwarders: Vec<String>,
        /// Make a secondary zone transferred from this primary (BIND, PowerDNS, Knot), ADDR[:PORT] (repeatable).
        #[arg(long = "secondary-of", conflicts_with_all = ["nameservers", "ttl"])]
        primaries: Vec<String>,
        /// Tenant (operator tokens only).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// List zones.
    List {
        /// Only zones whose name contains this.
        #[arg(long)]
        name: Option<String>,
    },
    /// Show one zone.
    Show { name: String },
    /// Delete a zone and all its records.
    Delete { name: String },
    /// Import a master file into a zone.
    Import {
        name: String,
        file: PathBuf,
        /// replace: the zone becomes the file; merge: the file's RRsets replace the zone's.
        #[arg(long, default_value = "replace")]
        mode: String,
    },
    /// Print the zone as a master file.
    Export { name: String },
    /// Replace a forward zone's forwarders, ADDR or ADDR:PORT each.
    Forwarders {
        name: String,
        #[arg(required = true)]
        forwarders: Vec<String>,
    },
    /// Replace a secondary zone's primaries, ADDR[:PORT] each.
    Primaries {
        name: String,
        #[arg(required = true)]
        primaries: Vec<String>,
    },
    /// Make a secondary zone a primary: it stops following its primaries and
    /// takes API writes from its current data and serial (the last step of a migration).
    Promote { name: String },
    /// Give a zone a response rate limit of its own (admins; tenants may
    /// only tighten the server's), or return it to the server's.
    RateLimit {
        name: String,
        /// Responses a second per client network, kind and name; 0 for none (operator only).
        #[arg(long, required_unless_present = "server")]
        rate: Option<u32>,
        /// Every N-th limited response goes out truncated, 0 to 10 [default: the server's].
        #[arg(long, conflicts_with = "server")]
        slip: Option<u32>,
        /// Follow the server's --rrl-rate and --rrl-slip again.
        #[arg(long, conflicts_with = "rate")]
        server: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum RRsetCommand {
    /// List a zone's RRsets.
    List {
        zone: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long = "type")]
        rtype: Option<String>,
    },
    /// Show one RRset.
    Get { zone: String, name: String, rtype: String },
    /// Create or replace an RRset, e.g. `rrset set example.com www A 192.0.2.1 --ttl 300`.
    Set {
        zone: String,
        name: String,
        rtype: String,
        /// Records in presentation format, one argument each.
        #[arg(required = true)]
        records: Vec<String>,
        #[arg(long, default_value_t = 300)]
        ttl: u32,
    },
    /// Delete an RRset.
    Delete { zone: String, name: String, rtype: String },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once.
    Create {
        name: String,
        /// admin, editor or viewer.
        #[arg(long)]
        role: String,
        #[arg(long)]
        tenant: Option<String>,
        /// Limit the token to this zone (repeatable).
        #[arg(long = "zone")]
        zones: Vec<String>,
    },
    /// List tokens.
    List,
    /// Revoke a token by id.
    Revoke { id: String },
    /// Make a new operator admin token straight in the node's database,
    /// without the API: the way back when every admin token is lost. Run it
    /// on the node's host, as the account that runs the node.
    CreateAdmin {
        /// The node's data directory (its SQLite database) [default: ./ferrodns-data].
        #[arg(long = "data-dir", env = "FERRODNS_DATA_DIR", default_value = "./ferrodns-data")]
        data_dir: PathBuf,
        /// The node's PostgreSQL URL, instead of the data directory.
        #[arg(long = "database-url", env = "FERRODNS_DATABASE_URL")]
        database_url: Option<String>,
        /// The token's name, shown as the actor in change history.
        #[arg(long, default_value = "recovered-admin")]
        name: String,
    },
}

/// An API client.
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
    output: Output,
}

/// Finds the token: `--token`, `FERRODNS_TOKEN`, then the admin token file.
fn find_token(flag: Option<String>) -> anyhow::Result<String> {
    if let Some(token) = flag {
        return Ok(token);
    }
    if let Ok(token) = std::env::var("FERRODNS_TOKEN") {
        if !token.trim().is_empty() {
            return Ok(token.trim().to_string());
        }
    }
    let dir = std::env::var_os("FERRODNS_DATA_DIR").map_or_else(|| PathBuf::from("./ferrodns-data"), PathBuf::from);
    let path = dir.join("admin.token");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("no token: pass --token, set FERRODNS_TOKEN, or run where {} exists", path.display())
    })?;
    Ok(text.trim().to_string())
}

fn segment(text: &str) -> String {
    // The root zone: a `.` segment would be taken as a relative path.
    if text == "." {
        return "=2E".to_string();
    }
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' | b'*' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

impl Client {
    fn new(args: &ClientArgs) -> anyhow::Result<Client> {
        let mut builder = reqwest::Client::builder();
        if let Some(path) = &args.ca_file {
            let pem = std::fs::read(path).with_context(|| format!("cannot read the CA file {}", path.display()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("no PEM certificate in the CA file {}", path.display()))?;
            if certificates.is_empty() {
                anyhow::bail!("no certificate in the CA file {}", path.display());
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        Ok(Client {
            http: builder.build()?,
            base: args.api.trim_end_matches('/').to_string(),
            token: find_token(args.token.clone())?,
            output: args.output,
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<RequestBody>,
    ) -> anyhow::Result<(StatusCode, String)> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(&self.token);
        match body {
            Some(RequestBody::Json(value)) => request = request.json(&value),
            Some(RequestBody::Text(text)) => request = request.header("content-type", "text/dns").body(text),
            None => {}
        }
        let response = request.send().await.with_context(|| format!("cannot reach the API at {}", self.base))?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!(describe_problem(status, &text));
        }
        Ok((status, text))
    }

    async fn json(&self, method: Method, path: &str, body: Option<RequestBody>) -> anyhow::Result<Value> {
        let (_, text) = self.send(method, path, body).await?;
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).context("the API sent invalid JSON")
    }

    /// Every item of a paged listing.
    async fn all_pages(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let separator = if path.contains('?') { '&' } else { '?' };
            let url = match &cursor {
                Some(c) => format!("{path}{separator}limit=1000&cursor={}", segment(c)),
                None => format!("{path}{separator}limit=1000"),
            };
            let page = self.json(Method::GET, &url, None).await?;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => return Ok(items),
            }
        }
    }

    fn print(&self, value: &Value, columns: &[&str]) {
        if self.output == Output::Json {
            println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
            return;
        }
        let rows: Vec<&Value> = match value {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        print_table(&rows, columns);
    }
}

enum RequestBody {
    Json(Value),
    Text(String),
}

/// One line per problem part: title and status, detail, then pointers.
fn describe_problem(status: StatusCode, body: &str) -> String {
    let Ok(problem) = serde_json::from_str::<Value>(body) else {
        return format!("{status}: {}", body.trim());
    };
    let mut text = format!(
        "{} ({}): {}",
        problem["title"].as_str().unwrap_or("error"),
        status.as_u16(),
        problem["detail"].as_str().unwrap_or("")
    );
    for error in problem["errors"].as_array().into_iter().flatten() {
        let pointer = error["pointer"].as_str().unwrap_or("");
        let message = error["message"].as_str().unwrap_or("");
        if pointer.is_empty() {
            text.push_str(&format!("\n  {message}"));
        } else {
            text.push_str(&format!("\n  {pointer}: {message}"));
        }
    }
    text
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

fn print_table(rows: &[&Value], columns: &[&str]) {
    let cells: Vec<Vec<String>> = rows.iter().map(|row| columns.iter().map(|c| cell(&row[*c])).collect()).collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| cells.iter().map(|r| r[i].chars().count()).max().unwrap_or(0).max(c.len()))
        .collect();
    let line = |values: Vec<String>| {
        let parts: Vec<String> = values.iter().zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(columns.iter().map(|c| c.to_uppercase()).collect());
    for row in cells {
        line(row);
    }
}

const ZONE_COLUMNS: &[&str] = &["name", "kind", "tenant", "serial", "version", "rrset_count", "updated_at"];
const ZONE_DETAIL_COLUMNS: &[&str] =
    &["name", "kind", "tenant", "serial", "version", "rrset_count", "forwarders", "updated_at"];
const RRSET_COLUMNS: &[&str] = &["name", "type", "ttl", "records"];
const TOKEN_COLUMNS: &[&str] = &["id", "name", "tenant", "role", "zones", "created_at", "revoked_at"];

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the async runtime")
}

pub fn zone(args: &ClientArgs, command: ZoneCommand) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    runtime()?.block_on(async {
        match command {
            ZoneCommand::Create { name, nameservers, ttl, forwarders, primaries, tenant } => {
                let mut body = json!({"name": name, "kind": "primary"});
                if !forwarders.is_empty() {
                    body = json!({"name": name, "kind": "forward", "forwarders": forwarders});
                }
                if !primaries.is_empty() {
                    body = json!({"name": name, "kind": "secondary", "primaries": primaries});
                }
                if !nameservers.is_empty() {
                    body["nameservers"] = json!(nameservers);
                }
                if let Some(ttl) = ttl {
                    body["ttl"] = json!(ttl);
                }
                if let Some(tenant) = tenant {
                    body["tenant"] = json!(tenant);
                }
                let zone = client.json(Method::POST, "/v1/zones", Some(RequestBody::Json(body))).await?;
                client.print(&zone, ZONE_DETAIL_COLUMNS);
            }
            ZoneCommand::List { name } => {
                let path = match name {
                    Some(name) => format!("/v1/zones?name={}", segment(&name)),
                    None => "/v1/zones".to_string(),
                };
                let zones = client.all_pages(&path).await?;
                client.print(&Value::Array(zones), ZONE_COLUMNS);
            }
            ZoneCommand::Show { name } => {
                let zone = client.json(Method::GET, &format!("/v1/zones/{}", segment(&name)), None).await?;
                client.print(&zone, ZONE_DETAIL_COLUMNS);
            }
            ZoneCommand::Delete { name } => {
                client.send(Method::DELETE, &format!("/v1/zones/{}", segment(&name)), None).await?;
                if client.output == Output::Table {
                    println!("deleted {name}");
                }
            }
            ZoneCommand::Import { name, file, mode } => {
                let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
                let path = format!("/v1/zones/{}/import?mode={}", segment(&name), segment(&mode));
                let change = client.json(Method::POST, &path, Some(RequestBody::Text(text))).await?;
                client.print(&change, &["zone", "id", "serial", "status", "changes"]);
            }
            ZoneCommand::RateLimit { name, rate, slip, server } => {
                let limit = match (server, rate) {
                    (true, _) | (false, None) => Value::Null,
                    (false, Some(rate)) => match slip {
                        Some(slip) => json!({"rate": rate, "slip": slip}),
                        None => json!({"rate": rate}),
                    },
                };
                let body = RequestBody::Json(json!({"rate_limit": limit}));
                let zone = client.json(Method::PATCH, &format!("/v1/zones/{}", segment(&name)), Some(body)).await?;
                client.print(&zone, &["name", "version", "rate_limit"]);
            }
            ZoneCommand::Primaries { name, primaries } => {
                let body = RequestBody::Json(json!({"primaries": primaries}));
                let zone = client.json(Method::PATCH, &format!("/v1/zones/{}", segment(&name)), Some(body)).await?;
                client.print(&zone, &["name", "version", "primaries"]);
            }
            ZoneCommand::Promote { name } => {
                let body = RequestBody::Json(json!({"kind": "primary"}));
                let zone = client.json(Method::PATCH, &format!("/v1/zones/{}", segment(&name)), Some(body)).await?;
                client.print(&zone, &["name", "kind", "serial", "version"]);
            }
            ZoneCommand::Forwarders { name, forwarders } => {
                let body = RequestBody::Json(json!({"forwarders": forwarders}));
                let zone = client.json(Method::PATCH, &format!("/v1/zones/{}", segment(&name)), Some(body)).await?;
                client.print(&zone, &["name", "version", "forwarders"]);
            }
            ZoneCommand::Export { name } => {
                let (_, text) = client.send(Method::GET, &format!("/v1/zones/{}/export", segment(&name)), None).await?;
                print!("{text}");
            }
        }
        Ok(())
    })
}

pub fn rrset(args: &ClientArgs, command: RRsetCommand) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    runtime()?.block_on(async {
        match command {
            RRsetCommand::List { zone, name, rtype } => {
                let mut path = format!("/v1/zones/{}/rrsets", segment(&zone));
                let mut filters = Vec::new();
                if let Some(name) = name {
                    filters.push(format!("name={}", segment(&name)));
                }
                if let Some(rtype) = rtype {
                    filters.push(format!("type={}", segment(&rtype)));
                }
                if !filters.is_empty() {
                    path = format!("{path}?{}", filters.join("&"));
                }
                let sets = client.all_pages(&path).await?;
                client.print(&Value::Array(sets), RRSET_COLUMNS);
            }
            RRsetCommand::Get { zone, name, rtype } => {
                let path = format!("/v1/zones/{}/rrsets/{}/{}", segment(&zone), segment(&name), segment(&rtype));
                let set = client.json(Method::GET, &path, None).await?;
                client.print(&set, RRSET_COLUMNS);
            }
            RRsetCommand::Set { zone, name, rtype, records, ttl } => {
                let path = format!("/v1/zones/{}/rrsets/{}/{}", segment(&zone), segment(&name), segment(&rtype));
                let body = json!({"ttl": ttl, "records": records});
                let set = client.json(Method::PUT, &path, Some(RequestBody::Json(body))).await?;
                client.print(&set, RRSET_COLUMNS);
            }
            RRsetCommand::Delete { zone, name, rtype } => {
                let path = format!("/v1/zones/{}/rrsets/{}/{}", segment(&zone), segment(&name), segment(&rtype));
                client.send(Method::DELETE, &path, None).await?;
                if client.output == Output::Table {
                    println!("deleted {name} {rtype}");
                }
            }
        }
        Ok(())
    })
}

pub fn token(args: &ClientArgs, command: TokenCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        match command {
            TokenCommand::Create { name, role, tenant, zones } => {
                let client = Client::new(args)?;
                let mut body = json!({"name": name, "role": role});
                if let Some(tenant) = tenant {
                    body["tenant"] = json!(tenant);
                }
                if !zones.is_empty() {
                    body["zones"] = json!(zones);
                }
                let token = client.json(Method::POST, "/v1/tokens", Some(RequestBody::Json(body))).await?;
                client.print(&token, &["id", "name", "tenant", "role", "zones", "token"]);
            }
            TokenCommand::List => {
                let client = Client::new(args)?;
                let tokens = client.json(Method::GET, "/v1/tokens", None).await?;
                client.print(&tokens, TOKEN_COLUMNS);
            }
            TokenCommand::Revoke { id } => {
                let client = Client::new(args)?;
                client.send(Method::DELETE, &format!("/v1/tokens/{}", segment(&id)), None).await?;
                if client.output == Output::Table {
                    println!("revoked {id}");
                }
            }
            TokenCommand::CreateAdmin { data_dir, database_url, name } => {
                // No API and no token: the database itself, as the node opens it.
                let (id, secret) = ferrodns::create_admin_offline(&data_dir, database_url.as_deref(), &name).await?;
                eprintln!("created the operator admin token {id} ({name}); its secret, shown once:");
                println!("{secret}");
            }
        }
        Ok(())
    })
}

/// `ferrodns status`: the cluster as one picture.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Another control node's API base URL, beside --api (repeatable): its role and term.
    #[arg(long = "node")]
    pub nodes: Vec<String>,
    /// A secondary's --metrics-listen base URL (repeatable): its zones, readiness and expiry.
    #[arg(long = "secondary")]
    pub secondaries: Vec<String>,
}

/// Prints the control nodes (role, term, leader), every secondary the
/// node at --api knows with the zones it lags in, and the given
/// secondaries' own view of their zones.
pub fn status(args: &ClientArgs, status: StatusArgs) -> anyhow::Result<()> {
    let client = Client::new(args)?;
    runtime()?.block_on(async {
        let mut nodes = Vec::new();
        for base in std::iter::once(client.base.clone()).chain(status.nodes.iter().map(|n| n.trim_end_matches('/').to_string())) {
            let state = match client.http.get(format!("{base}/v1/ha")).send().await {
                Ok(response) if response.status().is_success() => response.json::<Value>().await.unwrap_or(Value::Null),
                Ok(response) => json!({"error": format!("{}", response.status())}),
                Err(e) => json!({"error": format!("unreachable: {e}")}),
            };
            let mut row = json!({"api": base, "node": state["node"], "role": state["role"], "term": state["term"], "leader": state["leader"]});
            if let Some(error) = state.get("error") {
                row["role"] = error.clone();
            }
            nodes.push(row);
        }
        let secondaries = client.json(Method::GET, "/v1/secondaries", None).await?;
        let mut views = Vec::new();
        for base in &status.secondaries {
            let base = base.trim_end_matches('/');
            let zones = match client.http.get(format!("{base}/v1/secondary/zones?limit=10000")).send().await {
                Ok(response) if response.status().is_success() => response.json::<Value>().await.unwrap_or(Value::Null),
                Ok(response) => json!({"error": format!("{}", response.status())}),
                Err(e) => json!({"error": format!("unreachable: {e}")}),
            };
            let list = zones["zones"].as_array().cloned().unwrap_or_default();
            let count = |test: &dyn Fn(&Value) -> bool| list.iter().filter(|z| test(z)).count();
            let soonest = list.iter().filter_map(|z| z["expires_in_seconds"].as_u64()).min();
            views.push(json!({
                "secondary": base,
                "zones": list.len(),
                "ready": count(&|z| z["ready"] == true),
                "expired": count(&|z| z["expired"] == true),
                "failing": count(&|z| !z["last_error"].is_null()),
                "soonest_expiry_s": soonest,
                "error": zones.get("error"),
            }));
        }
        if client.output == Output::Json {
            let all = json!({"nodes": nodes, "secondaries": secondaries, "secondary_views": views});
            println!("{}", serde_json::to_string_pretty(&all).unwrap_or_default());
            return Ok(());
        }
        println!("Control nodes");
        print_table(&nodes.iter().collect::<Vec<_>>(), &["node", "role", "term", "leader", "api"]);
        println!();
        println!("Secondaries, as {} sees them", client.base);
        let rows: Vec<Value> = secondaries
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let worst = s["behind"].as_array().and_then(|b| b.first()).cloned().unwrap_or(Value::Null);
                json!({
                    "address": s["address"],
                    "zones": s["zones"],
                    "behind": s["zones_behind"],
                    "worst zone": worst["zone"],
                    "lag": worst["lag"],
                    "lag s": worst["seconds"],
                    "last contact": s["last_contact"],
                })
            })
            .collect();
        print_table(&rows.iter().collect::<Vec<_>>(), &["address", "zones", "behind", "worst zone", "lag", "lag s", "last contact"]);
        for s in secondaries.as_array().into_iter().flatten() {
            for behind in s["behind"].as_array().into_iter().flatten() {
                println!(
                    "  {} holds {} at {}, current {} ({} behind, {} s)",
                    cell(&s["address"]),
                    cell(&behind["zone"]),
                    cell(&behind["serial"]),
                    cell(&behind["current"]),
                    cell(&behind["lag"]),
                    cell(&behind["seconds"])
                );
            }
        }
        if !views.is_empty() {
            println!();
            println!("Secondaries, as they see themselves");
            print_table(
                &views.iter().collect::<Vec<_>>(),
                &["secondary", "zones", "ready", "expired", "failing", "soonest_expiry_s", "error"],
            );
        }
        Ok(())
    })
}
