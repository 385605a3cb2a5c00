#!/usr/bin/env python3
"""Replication benchmarks for ferrodns.

  propagate  one ferrodns primary (SQLite) and three ferrodns secondaries on
             loopback, following the primary's catalog with TSIG and NOTIFY.
             N single-record changes through the API, one after another; for
             each, the time from the API's 2xx until all three secondaries
             answer with the new record. p50, p99, max.
  axfr       the 100k-record authbench zone imported into the primary, then
             (a) AXFR with kdig: time, messages, bytes; (b) a Knot secondary
             configured for the zone: Knot's own log line for the transfer
             (time, messages, bytes) and the time until it serves the serial.

  bench/replbench.py --changes 1000 --json results.json

Needs: a release build, knot, knot-dnsutils (kdig).
"""
import argparse, base64, http.client, importlib.util, json, os, re, shutil, socket, struct, subprocess
import tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, "target", "release", "ferrodns")
AUTHBENCH = os.path.join(ROOT, "bench", "authbench.py")
SECRET = base64.b64encode(b"replbench-tsig-secret-0123456789").decode()
KEY = f"xfr:hmac-sha256:{SECRET}"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dns_query(sock, port, name, qtype, qid):
    wire = b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"
    sock.sendto(struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0) + wire + struct.pack(">HH", qtype, 1), ("127.0.0.1", port))
    while True:
        data, _ = sock.recvfrom(65535)
        if struct.unpack(">H", data[:2])[0] == qid:
            return data


def start(args, log):
    return subprocess.Popen([BINARY, "serve", *args, "--log-level", "warn"], stdout=subprocess.DEVNULL, stderr=open(log, "w"))


def wait_http(port, deadline=60):
    end = time.time() + deadline
    while time.time() < end:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/v1/health/ready")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit("primary did not start")


class Api:
    def __init__(self, port, token):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method, path, body=None, content_type="application/json"):
        headers = dict(self.headers, **{"Content-Type": content_type})
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        self.conn.request(method, path, body=body, headers=headers)
        r = self.conn.getresponse()
        data = r.read()
        if r.status >= 300:
            raise SystemExit(f"{method} {path}: {r.status} {data[:300]!r}")
        return json.loads(data) if data.startswith(b"{") else data


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def answer_has(reply, address_bytes):
    return reply.endswith(address_bytes)


def bench_propagate(changes):
    work = tempfile.mkdtemp(prefix="ferrodns-replbench-")
    procs = []
    try:
        api_port, dns_port = free_port(), free_port()
        secondary_ports = [free_port() for _ in range(3)]
        args = ["--dns-listen", f"127.0.0.1:{dns_port}", "--api-listen", f"127.0.0.1:{api_port}",
                "--data-dir", os.path.join(work, "primary"), "--tsig-key", KEY, "--udp-workers", "1"]
        for port in secondary_ports:
            args += ["--notify", f"127.0.0.1:{port}"]
        procs.append(start(args, os.path.join(work, "primary.log")))
        wait_http(api_port)
        for i, port in enumerate(secondary_ports):
            procs.append(start(["--role", "secondary", "--primary", f"127.0.0.1:{dns_port}", "--dns-listen", f"127.0.0.1:{port}",
                                "--data-dir", os.path.join(work, f"s{i}"), "--tsig-key", KEY, "--udp-workers", "1"],
                               os.path.join(work, f"s{i}.log")))
        token = open(os.path.join(work, "primary", "admin.token")).read().strip()
        api = Api(api_port, token)
        api.call("POST", "/v1/zones", {"name": "prop.test"})
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(2)

        def all_serve(address, qid):
            want = socket.inet_aton(address)
            for port in secondary_ports:
                try:
                    if not answer_has(dns_query(sock, port, "www.prop.test.", 1, qid), want):
                        return False
                except (socket.timeout, OSError):
                    return False
            return True

        api.call("PUT", "/v1/zones/prop.test/rrsets/www/A", {"ttl": 60, "records": ["10.255.255.255"]})
        end = time.time() + 60
        while not all_serve("10.255.255.255", 1):
            if time.time() > end:
                raise SystemExit("secondaries never got the zone; see " + work)
            time.sleep(0.05)
        delays = []
        for i in range(changes):
            address = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
            api.call("PUT", "/v1/zones/prop.test/rrsets/www/A", {"ttl": 60, "records": [address]})
            acked = time.perf_counter()
            while not all_serve(address, (i + 2) & 0xffff):
                if time.perf_counter() - acked > 30:
                    raise SystemExit(f"change {i} did not propagate; see {work}")
                time.sleep(0.0005)
            delays.append(time.perf_counter() - acked)
        return {"changes": changes, "secondaries": 3, "p50_ms": round(percentile(delays, 50) * 1000, 2),
                "p99_ms": round(percentile(delays, 99) * 1000, 2), "max_ms": round(max(delays) * 1000, 2)}
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


def bench_axfr(records):
    spec = importlib.util.spec_from_file_location("authbench", AUTHBENCH)
    authbench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(authbench)
    work = tempfile.mkdtemp(prefix="ferrodns-axfrbench-")
    procs = []
    try:
        api_port, dns_port, knot_port = free_port(), free_port(), free_port()
        procs.append(start(["--dns-listen", f"127.0.0.1:{dns_port}", "--api-listen", f"127.0.0.1:{api_port}",
                            "--data-dir", os.path.join(work, "primary"), "--tsig-key", KEY, "--udp-workers", "1"],
                           os.path.join(work, "primary.log")))
        wait_http(api_port)
        token = open(os.path.join(work, "primary", "admin.token")).read().strip()
        api = Api(api_port, token)
        path = os.path.join(work, "bench.zone")
        authbench.gen_zone(path, records)
        origin = authbench.ORIGIN
        api.call("POST", "/v1/zones", {"name": origin})
        api.call("POST", f"/v1/zones/{origin}/import?mode=replace", open(path, "rb").read(), content_type="text/dns")
        serial = api.call("GET", f"/v1/zones/{origin}")["serial"]
        result = {"records": sum(1 for l in open(path) if l.strip() and not l.startswith("$"))}
        start_t = time.perf_counter()
        out = subprocess.run(["kdig", "@127.0.0.1", "-p", str(dns_port), "-y", f"hmac-sha256:xfr:{SECRET}", origin, "AXFR",
                              "+noall", "+stats"], capture_output=True, text=True).stdout
        result["kdig_seconds"] = round(time.perf_counter() - start_t, 3)
        m = re.search(r"Received (\d+) B \((\d+) messages, (\d+) records\)", out)
        if m:
            result.update(kdig_bytes=int(m.group(1)), kdig_messages=int(m.group(2)), kdig_records=int(m.group(3)))
        kdir = os.path.join(work, "knot")
        os.makedirs(kdir)
        conf = (f"server:\n    rundir: \"{kdir}\"\n    listen: 127.0.0.1@{knot_port}\n    background-workers: 1\n"
                f"database:\n    storage: \"{kdir}\"\nlog:\n  - target: stderr\n    any: info\n"
                f"key:\n  - id: xfr\n    algorithm: hmac-sha256\n    secret: {SECRET}\n"
                f"remote:\n  - id: primary\n    address: 127.0.0.1@{dns_port}\n    key: xfr\n"
                f"zone:\n  - domain: {origin}\n    master: primary\n    storage: \"{kdir}\"\n    zonefile-sync: -1\n"
                f"    zonefile-load: none\n    journal-content: none\n")
        open(os.path.join(kdir, "knot.conf"), "w").write(conf)
        klog = os.path.join(kdir, "log")
        start_t = time.perf_counter()
        procs.append(subprocess.Popen(["knotd", "-c", os.path.join(kdir, "knot.conf")], stdout=subprocess.DEVNULL,
                                      stderr=open(klog, "w")))
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(0.5)
        end = time.time() + 120
        while time.time() < end:
            try:
                reply = dns_query(sock, knot_port, origin, 6, 99)
                if len(reply) > 12 and reply[3] & 0x0f == 0 and struct.unpack(">H", reply[6:8])[0] > 0:
                    break
            except (socket.timeout, OSError):
                pass
            time.sleep(0.02)
        result["knot_serving_after_start_seconds"] = round(time.perf_counter() - start_t, 3)
        log = open(klog).read()
        m = re.search(r"AXFR, incoming.*?finished, ([0-9.]+) seconds, (\d+) messages, (\d+) bytes", log)
        if m:
            result.update(knot_axfr_seconds=float(m.group(1)), knot_messages=int(m.group(2)), knot_bytes=int(m.group(3)))
        else:
            result["knot_log_tail"] = log[-600:]
        result["serial"] = serial
        return result
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--changes", type=int, default=1000)
    ap.add_argument("--records", type=int, default=100000)
    ap.add_argument("--only", choices=["propagate", "axfr"])
    ap.add_argument("--json")
    a = ap.parse_args()
    results = {}
    if a.only in (None, "propagate"):
        results["propagate"] = bench_propagate(a.changes)
        print("propagate", json.dumps(results["propagate"]), flush=True)
    if a.only in (None, "axfr"):
        results["axfr"] = bench_axfr(a.records)
        print("axfr", json.dumps(results["axfr"]), flush=True)
    if a.json:
        json.dump(results, open(a.json, "w"), indent=2)


if __name__ == "__main__":
    main()
