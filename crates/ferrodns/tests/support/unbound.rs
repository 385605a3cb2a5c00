//! A real Unbound as a peer: forwarding zones to an upstream, validation
//! off, optionally with a DNS-over-TLS listener.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{build_query, free_port, query_udp, temp_dir};

/// A running Unbound; killed when dropped.
pub struct Unbound {
    pub addr: SocketAddr,
    pub dir: PathBuf,
    child: Child,
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Unbound forwarding each of `zones` (origins) to `upstream`.
/// With `tls` (certificate and key files), it listens for DNS over TLS
/// instead of plain DNS.
pub fn start_unbound(zones: &[&str], upstream: SocketAddr, tls: Option<(PathBuf, PathBuf)>) -> Unbound {
    let binary = ["/usr/sbin/unbound", "/usr/bin/unbound"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("unbound is not installed; .ci/run installs it (apt-get install unbound)");
    let dir = temp_dir("unbound");
    let port = free_port();
    let mut config = format!(
        "server:\n    interface: 127.0.0.1@{port}\n    port: {port}\n    do-daemonize: no\n    num-threads: 1\n\
         \x20   username: \"\"\n    chroot: \"\"\n    directory: \"{d}\"\n    pidfile: \"{d}/unbound.pid\"\n\
         \x20   use-syslog: no\n    logfile: \"{d}/unbound.log\"\n    verbosity: 1\n    access-control: 127.0.0.0/8 allow\n\
         \x20   do-not-query-localhost: no\n    module-config: \"iterator\"\n    qname-minimisation: no\n\
         \x20   minimal-responses: yes\n    max-udp-size: 1232\n    edns-buffer-size: 1232\n",
        d = dir.display()
    );
    if let Some((cert, key)) = &tls {
        config.push_str(&format!(
            "    tls-port: {port}\n    tls-service-pem: \"{}\"\n    tls-service-key: \"{}\"\n",
            cert.display(),
            key.display()
        ));
    }
    config.push_str("remote-control:\n    control-enable: no\n");
    for zone in zones {
        config.push_str(&format!(
            "forward-zone:\n    name: \"{zone}\"\n    forward-addr: {}@{}\n",
            upstream.ip(),
            upstream.port()
        ));
    }
    std::fs::write(dir.join("unbound.conf"), config).unwrap();
    let child = Command::new(binary)
        .args(["-d", "-c"])
        .arg(dir.join("unbound.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(20);
    if tls.is_some() {
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "unbound did not listen in 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    } else {
        let probe = ferrodns_proto::Name::parse(zones[0], None).unwrap();
        while query_udp(addr, &build_query(1, probe.as_wire(), 6, Some(1232), false), Duration::from_millis(300))
            .is_none()
        {
            assert!(Instant::now() < deadline, "unbound did not answer in 20 s");
        }
    }
    Unbound { addr, dir, child }
}
