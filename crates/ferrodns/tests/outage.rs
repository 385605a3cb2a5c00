//! The database goes away: DNS keeps answering from memory, the API answers
//! 503 with a clear problem, and writes work again once it is back.
//!
//! The node reaches PostgreSQL through a TCP relay that the test can cut,
//! which is what a failed database host or a network partition looks like
//! to ferrodns (connections reset, new ones refused).

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;
use support::control::{dns_lookup, json, Database, Node, POSTGRES};

/// A TCP relay to PostgreSQL that can be cut and restored.
struct Relay {
    port: u16,
    open: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<TcpStream>>>,
}

impl Relay {
    fn start() -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let relay = Relay { port, open: Arc::new(AtomicBool::new(true)), connections: Arc::default() };
        relay.serve(listener);
        relay
    }

    fn serve(&self, listener: TcpListener) {
        listener.set_nonblocking(true).unwrap();
        let (open, connections) = (self.open.clone(), self.connections.clone());
        std::thread::spawn(move || {
            while open.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let Ok(upstream) = TcpStream::connect("127.0.0.1:5432") else { continue };
                        let mut list = connections.lock().unwrap();
                        list.push(client.try_clone().unwrap());
                        list.push(upstream.try_clone().unwrap());
                        pipe(client.try_clone().unwrap(), upstream.try_clone().unwrap());
                        pipe(upstream, client);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            // Dropping the listener refuses new connections.
        });
    }

    /// Resets every relayed connection and refuses new ones.
    fn cut(&self) {
        self.open.store(false, Ordering::Relaxed);
        for stream in self.connections.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    /// Accepts connections again on the same port.
    fn restore(&self) {
        self.open.store(true, Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("cannot rebind the relay: {e}"),
            }
        };
        self.serve(listener);
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16384];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}

#[test]
fn dns_answers_and_api_says_503_while_postgres_is_away() {
    let database = Database::postgres();
    let relay = Relay::start();
    let Database::Postgres { name, .. } = &database else { unreachable!() };
    let url = format!("{}/{name}", POSTGRES.replace(":5432", &format!(":{}", relay.port)));
    let node = Node::start_with_url(&url, &[]);
    let put = |address: &str| {
        node.request(Method::PUT, "/v1/zones/outage.test/rrsets/www/A")
            .json(&json!({"ttl": 60, "records": [address]}))
            .send()
            .unwrap()
    };
    assert_eq!(
        json(node.request(Method::POST, "/v1/zones").json(&json!({"name": "outage.test"})).send().unwrap()).0,
        201
    );
    assert_eq!(json(put("192.0.2.1")).0, 200);

    relay.cut();
    assert_eq!(dns_lookup(node.dns, "www.outage.test.", 1), ("NoError".into(), vec!["192.0.2.1".into()]));
    let started = Instant::now();
    let (status, problem, _) = json(put("192.0.2.2"));
    assert_eq!(status, 503, "{problem}");
    assert!(problem["type"].as_str().unwrap().ends_with("/database-unavailable"), "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("DNS keeps answering"), "{problem}");
    assert!(started.elapsed() < Duration::from_secs(10), "the 503 took {:?}", started.elapsed());
    assert_eq!(json(node.anonymous(Method::GET, "/v1/health/ready").send().unwrap()).0, 503);
    assert_eq!(json(node.anonymous(Method::GET, "/v1/health/live").send().unwrap()).0, 200);
    assert_eq!(json(node.request(Method::GET, "/v1/zones/outage.test").send().unwrap()).0, 503);
    for _ in 0..50 {
        assert_eq!(dns_lookup(node.dns, "www.outage.test.", 1).1, ["192.0.2.1"], "DNS stopped during the outage");
    }

    relay.restore();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body, _) = json(put("192.0.2.3"));
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "writes did not come back: {status} {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(dns_lookup(node.dns, "www.outage.test.", 1).1, ["192.0.2.3"]);
    assert_eq!(json(node.anonymous(Method::GET, "/v1/health/ready").send().unwrap()).0, 200);
}
