//! The API over TLS: served with the configured certificate, refused to a
//! client that does not trust it, reached by the CLI with `--ca-file`, and
//! given a new certificate on SIGHUP without a restart; a bad certificate at
//! start or at reload is a clear error, and a failed reload keeps the old one.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use support::{logged_addresses, send_signal, temp_dir};

/// A CA, and a server certificate for 127.0.0.1 it signed: (CA PEM, cert PEM, key PEM).
fn issue(name: &str) -> (String, String, String) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca_cert, &ca_key).unwrap();
    (ca_cert.pem(), cert.pem(), key.serialize_pem())
}

fn client(ca_pem: Option<&str>) -> reqwest::blocking::Client {
    let mut builder = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5));
    if let Some(pem) = ca_pem {
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

fn serve(dir: &Path, cert: &Path, key: &Path) -> std::process::Child {
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    Command::new(env!("CARGO_BIN_EXE_ferrodns"))
        .args(["serve", "--dns-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--udp-workers", "1"])
        .arg("--data-dir")
        .arg(dir)
        .arg("--api-tls-cert")
        .arg(cert)
        .arg("--api-tls-key")
        .arg(key)
        .env_remove("FERRODNS_ADMIN_TOKEN")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn the_api_speaks_tls_and_reloads_its_certificate() {
    let dir = temp_dir("api-tls");
    let (first_ca, first_cert, first_key) = issue("first");
    let (cert, key) = (dir.join("api.crt"), dir.join("api.key"));
    std::fs::write(&cert, &first_cert).unwrap();
    std::fs::write(&key, &first_key).unwrap();
    let mut child = serve(&dir, &cert, &key);
    let (_, api) = logged_addresses(&dir.join("server.log"), &mut child, true);
    let base = format!("https://127.0.0.1:{}", api.unwrap().port());
    let live = format!("{base}/v1/health/live");
    let deadline = Instant::now() + Duration::from_secs(20);
    while client(Some(&first_ca)).get(&live).send().is_err() {
        assert!(Instant::now() < deadline, "the API did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(client(Some(&first_ca)).get(&live).send().unwrap().status(), 200);
    // A client that does not trust the CA is refused the handshake, and
    // plain HTTP gets no answer.
    let untrusted = client(None).get(&live).send().unwrap_err();
    assert!(format!("{untrusted:?}").contains("UnknownIssuer"), "{untrusted:?}");
    assert!(client(None).get(format!("http://127.0.0.1:{}/v1/health/live", api.unwrap().port())).send().is_err());

    // The CLI, trusting the CA with --ca-file.
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &first_ca).unwrap();
    let cli = |ca: &Path| {
        Command::new(env!("CARGO_BIN_EXE_ferrodns"))
            .args(["--api", &base, "--ca-file"])
            .arg(ca)
            .args(["zone", "create", "tls.test."])
            .env("FERRODNS_DATA_DIR", &dir)
            .env_remove("FERRODNS_TOKEN")
            .output()
            .unwrap()
    };
    let created = cli(&ca_file);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));

    // A reload that fails keeps the certificate in use.
    std::fs::write(&key, "not a key").unwrap();
    send_signal(child.id(), 1);
    wait_for_log(&dir, "API certificate not reloaded");
    assert_eq!(client(Some(&first_ca)).get(&live).send().unwrap().status(), 200);

    // A new certificate from another CA, on SIGHUP.
    let (second_ca, second_cert, second_key) = issue("second");
    std::fs::write(&cert, &second_cert).unwrap();
    std::fs::write(&key, &second_key).unwrap();
    send_signal(child.id(), 1);
    wait_for_log(&dir, "API certificate reloaded");
    assert_eq!(client(Some(&second_ca)).get(&live).send().unwrap().status(), 200);
    assert!(client(Some(&first_ca)).get(&live).send().is_err(), "the old certificate is gone");
    let old_ca = cli(&ca_file);
    assert!(!old_ca.status.success());
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_bad_certificate_stops_the_start_with_a_clear_error() {
    let dir = temp_dir("api-tls-bad");
    let (_, cert_pem, _) = issue("one");
    let (_, _, other_key) = issue("other");
    let (cert, key) = (dir.join("api.crt"), dir.join("api.key"));
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, other_key).unwrap();
    let output = serve(&dir, &cert, &key).wait_with_output().unwrap();
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap();
    assert!(!output.status.success());
    assert!(log.contains("does not go with the certificate"), "{log}");

    std::fs::write(&cert, "no certificate here").unwrap();
    let output = serve(&dir, &cert, &key).wait_with_output().unwrap();
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap();
    assert!(!output.status.success());
    assert!(log.contains("no certificate in"), "{log}");

    let lone = Command::new(env!("CARGO_BIN_EXE_ferrodns"))
        .args(["serve", "--dns-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--data-dir"])
        .arg(&dir)
        .arg("--api-tls-cert")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&lone.stderr).contains("--api-tls-cert and --api-tls-key go together"));
}

fn wait_for_log(dir: &Path, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        if log.contains(text) {
            return;
        }
        assert!(Instant::now() < deadline, "no '{text}' in the log:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
