//! Wildcard and not-yet-local binds (issue 16), across a veth pair between
//! two network namespaces, as a host with several addresses and a VIP:
//!
//! - with `--dns-listen 0.0.0.0:53` (and `[::]:53`) a query to the host's
//!   second address is answered from that address, so the client takes it
//!   (it came from the route's preferred address before, and `dig` dropped
//!   it as a reply from an unexpected source);
//! - a node binds an address it does not hold yet (a keepalived VIP) and
//!   answers on it once the address arrives.
//!
//! Needs root and `ip` (iproute2), as CI runs; `dig` from bind9-dnsutils.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::temp_dir;

const ZONE: &str = "$ORIGIN wild.test.
$TTL 300
@    SOA ns hostmaster 1 3600 600 86400 300
@    NS  ns
ns   A   10.231.0.1
www  A   192.0.2.80
";

/// Two namespaces joined by a veth pair, removed on drop.
struct Link {
    server: String,
    client: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip (iproute2) runs");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

impl Link {
    fn new() -> Link {
        let tag = std::process::id() % 100_000;
        let link = Link { server: format!("fdws{tag}"), client: format!("fdwc{tag}") };
        let (veth_server, veth_client) = (format!("fdvs{tag}"), format!("fdvc{tag}"));
        ip(&["netns", "add", &link.server]);
        ip(&["netns", "add", &link.client]);
        ip(&["link", "add", &veth_server, "type", "veth", "peer", "name", &veth_client]);
        ip(&["link", "set", &veth_server, "netns", &link.server]);
        ip(&["link", "set", &veth_client, "netns", &link.client]);
        for (ns, dev, addresses) in [
            (&link.server, &veth_server, &["10.231.0.1/24", "10.231.0.2/24"][..]),
            (&link.client, &veth_client, &["10.231.0.9/24"][..]),
        ] {
            for address in addresses {
                ip(&["-n", ns, "addr", "add", address, "dev", dev]);
            }
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        for (ns, dev, address) in [
            (&link.server, &veth_server, "fd00:231::1/64"),
            (&link.server, &veth_server, "fd00:231::2/64"),
            (&link.client, &veth_client, "fd00:231::9/64"),
        ] {
            ip(&["-n", ns, "addr", "add", address, "dev", dev, "nodad"]);
        }
        link
    }

    /// Starts ferrodns in the server namespace, listening on `listen`.
    fn serve(&self, zone: &Path, data_dir: &Path, listen: &[&str]) -> Child {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.server, env!("CARGO_BIN_EXE_ferrodns"), "serve", "--api-listen", "off"]);
        for address in listen {
            command.args(["--dns-listen", address]);
        }
        command.arg("--zone-file").arg(zone).arg("--data-dir").arg(data_dir).args(["--udp-workers", "1"]);
        let log = std::fs::File::create(data_dir.join("server.log")).unwrap();
        command.stdout(log.try_clone().unwrap()).stderr(log).stdin(Stdio::null()).spawn().unwrap()
    }

    /// `dig` from the client namespace: its status line and answer, and
    /// whether it saw a reply from an unexpected source.
    fn dig(&self, server: &str, tcp: bool) -> String {
        let at = format!("@{server}");
        let mut args = vec!["netns", "exec", &self.client, "dig", &at, "www.wild.test.", "A", "+time=1", "+tries=1"];
        if tcp {
            args.push("+tcp");
        }
        let out = Command::new("ip").args(&args).output().expect("dig (bind9-dnsutils) runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.server]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.client]).status();
    }
}

fn answered(output: &str) -> bool {
    output.contains("status: NOERROR") && output.contains("192.0.2.80") && !output.contains("unexpected source")
}

/// Waits until `dig` answers, or says what it last saw.
fn wait_answered(link: &Link, server: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let output = link.dig(server, false);
        if answered(&output) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no answer from {server}:\n{output}\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn wildcard_binds_answer_from_the_address_asked_and_vips_bind_before_they_arrive() {
    let link = Link::new();
    let dir = temp_dir("wildcard");
    let zone = dir.join("wild.zone");
    std::fs::write(&zone, ZONE).unwrap();

    let wildcard_dir = dir.join("wildcard");
    std::fs::create_dir_all(&wildcard_dir).unwrap();
    let mut wildcard = link.serve(&zone, &wildcard_dir, &["0.0.0.0:53", "[::]:53"]);
    let log = wildcard_dir.join("server.log");
    for server in ["10.231.0.1", "10.231.0.2", "fd00:231::1", "fd00:231::2"] {
        wait_answered(&link, server, &log);
        // A few more, so that replies to one client go out in one batch.
        for _ in 0..5 {
            let output = link.dig(server, false);
            assert!(answered(&output), "{server}: {output}");
        }
        assert!(answered(&link.dig(server, true)), "{server} over TCP");
    }
    let _ = wildcard.kill();
    let _ = wildcard.wait();

    // A VIP this node does not hold yet: the bind succeeds (IP_FREEBIND),
    // and answers come once the address is added.
    let vip_dir = dir.join("vip");
    std::fs::create_dir_all(&vip_dir).unwrap();
    let mut vip = link.serve(&zone, &vip_dir, &["10.231.0.7:53"]);
    let vip_log = vip_dir.join("server.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&vip_log).unwrap_or_default().contains("serving DNS") {
        assert!(vip.try_wait().unwrap().is_none(), "{}", std::fs::read_to_string(&vip_log).unwrap_or_default());
        assert!(Instant::now() < deadline, "{}", std::fs::read_to_string(&vip_log).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(50));
    }
    let veth = format!("fdvs{}", std::process::id() % 100_000);
    ip(&["-n", &link.server, "addr", "add", "10.231.0.7/24", "dev", &veth]);
    wait_answered(&link, "10.231.0.7", &vip_log);
    let _ = vip.kill();
    let _ = vip.wait();
    let _ = std::fs::remove_dir_all(dir);
}
