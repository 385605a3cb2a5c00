//! A ferrodns secondary (`serve --role secondary`) as a test process: its
//! own data directory and log, started and restarted, stopped on drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::control::dns_lookup;

/// A `ferrodns serve --role secondary` process.
pub struct SecondaryNode {
    pub dns: SocketAddr,
    pub data_dir: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
}

impl SecondaryNode {
    /// Starts a secondary on `port`; 0 lets the kernel choose (for tests
    /// whose primaries need not know the port before it starts).
    pub fn start(port: u16, primaries: &[SocketAddr], extra: &[&str]) -> SecondaryNode {
        let data_dir = super::temp_dir("secondary");
        let dns = SocketAddr::from(([127, 0, 0, 1], port));
        let mut args: Vec<String> =
            vec!["serve".into(), "--role".into(), "secondary".into(), "--dns-listen".into(), dns.to_string()];
        for primary in primaries {
            args.extend(["--primary".to_string(), primary.to_string()]);
        }
        args.extend(["--data-dir".to_string(), data_dir.display().to_string(), "--udp-workers".into(), "1".into()]);
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut node = SecondaryNode { dns, data_dir, args, child: None };
        node.launch();
        node
    }

    pub fn launch(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.data_dir.join("server.log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ferrodns"))
            .args(&self.args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        if self.dns.port() == 0 {
            // Port 0: the kernel's choice, from the log; restarts ask for it again.
            self.dns =
                super::logged_addresses(&self.data_dir.join("server.log"), self.child.as_mut().unwrap(), false).0;
            let listen = self.args.iter().position(|a| a == "--dns-listen").expect("--dns-listen") + 1;
            self.args[listen] = self.dns.to_string();
        }
        // Wait until DNS answers (REFUSED is fine: no zone yet).
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::panic::catch_unwind(|| dns_lookup(self.dns, "probe.invalid.", 6)).is_err() {
            assert!(Instant::now() < deadline, "secondary did not start:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a signal (SIGSTOP 19, SIGCONT 18).
    pub fn signal(&self, signal: i32) {
        extern "C" {
            fn kill(pid: i32, signal: i32) -> i32;
        }
        if let Some(child) = &self.child {
            // SAFETY: signals a child process of this test.
            unsafe {
                kill(child.id() as i32, signal);
            }
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default()
    }
}

impl Drop for SecondaryNode {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}
