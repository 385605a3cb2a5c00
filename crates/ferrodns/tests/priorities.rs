//! The answer path outranks the control plane on a shared core: UDP workers
//! run at the default priority, every other thread (the async runtime with
//! TCP, the API, replication and HA, and the database threads it starts) at
//! the lower one `--async-nice` sets.

mod support;

use support::control::{Database, Node};

/// (thread name, nice) of every thread of a process.
fn thread_priorities(pid: u32) -> Vec<(String, i64)> {
    let mut threads = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let task = task.unwrap().path();
        let name = std::fs::read_to_string(task.join("comm")).unwrap().trim().to_string();
        let stat = std::fs::read_to_string(task.join("stat")).unwrap();
        // Fields after the parenthesized name; nice is the 19th field overall.
        let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
        threads.push((name, fields[16].parse().unwrap()));
    }
    threads
}

#[test]
fn udp_workers_keep_the_default_priority_and_the_rest_run_lower() {
    for (nice, extra) in [(10, vec![]), (3, vec!["--async-nice", "3"])] {
        let node = Node::start(&Database::sqlite(), &extra);
        let threads = thread_priorities(node.pid().unwrap());
        // Relative to the priority the server was started with (its main thread's).
        let base = threads.iter().find(|(name, _)| name == "ferrodns").map(|(_, n)| *n).unwrap();
        let workers: Vec<_> = threads.iter().filter(|(name, _)| name.starts_with("dns-udp")).collect();
        assert!(!workers.is_empty(), "{threads:?}");
        assert!(workers.iter().all(|(_, n)| *n == base), "UDP workers at the starting priority: {threads:?}");
        let lower: Vec<_> =
            threads.iter().filter(|(name, _)| name.starts_with("tokio") || name.starts_with("sqlx")).collect();
        assert!(lower.len() >= 2, "{threads:?}");
        let expected = (base + nice).min(19);
        assert!(lower.iter().all(|(_, n)| *n == expected), "async and database threads {nice} lower: {threads:?}");
    }
}
