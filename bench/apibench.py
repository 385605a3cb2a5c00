#!/usr/bin/env python3
"""Write latency through the API: ferrodns against PowerDNS, in one run.

Each server gets one zone and the same 300 one-record replacements of
www.<zone> A, one at a time, each with a new address:

  PowerDNS 4.x  PATCH /api/v1/servers/localhost/zones/<zone>  (changetype REPLACE),
                gsqlite3 backend, its API and webserver on loopback, its packet
                and query caches off (so that "served" means the new data)
  ferrodns      PUT /v1/zones/<zone>/rrsets/www/A, on SQLite (or --db postgres)

For each change it measures the API latency (request sent to response read)
and the write-to-served time (request sent until a UDP query to the server
answers with the new address; queries go out every 0.5 ms from a second
process of this script, so that its polling does not share the
interpreter with the timed request). It prints p50, p90 and p99 of both.

  bench/apibench.py                      # both servers, SQLite
  bench/apibench.py --db postgres        # ferrodns on PostgreSQL (127.0.0.1:5432, trust)
  bench/apibench.py --changes 1000 --servers ferrodns
  bench/apibench.py --writers 8 --changes 200 [--db postgres]

With --writers N it measures throughput instead: N clients at once, each a
process of its own doing one change at a time (over a kept-alive connection,
with bench/leanhttp.py), first each on a zone of its own, then all on one
zone (each on its own owner), and checks afterwards that every client's last
acknowledged change is stored and served.

Needs: a release build, pdns-server and pdns-backend-sqlite3 (Debian), and
for --db postgres a PostgreSQL server where a database may be created.
"""
import argparse, http.client, json, multiprocessing, os, random, socket, statistics, struct, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import leanhttp  # noqa: E402  (beside this script)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.environ.get("FERRODNS_BINARY", os.path.join(ROOT, "target", "release", "ferrodns"))
ZONE = "bench.test."
PDNS_KEY = "apibench-key"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query(port, qname, timeout=0.5):
    """One UDP A query; the A addresses of the answer."""
    qid = random.randrange(65536)
    labels = b"".join(bytes([len(l)]) + l.encode() for l in qname.rstrip(".").split(".")) + b"\0"
    packet = struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0) + labels + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, ("127.0.0.1", port))
        data, _ = s.recvfrom(4096)
    (_, _, qd, an, _, _) = struct.unpack(">HHHHHH", data[:12])
    at = 12
    for _ in range(qd):
        at = skip_name(data, at) + 4
    addresses = []
    for _ in range(an):
        at = skip_name(data, at)
        rtype, _, _, length = struct.unpack(">HHIH", data[at:at + 10])
        at += 10
        if rtype == 1 and length == 4:
            addresses.append(".".join(str(b) for b in data[at:at + 4]))
        at += length
    return addresses


def skip_name(data, at):
    while True:
        length = data[at]
        if length == 0:
            return at + 1
        if length & 0xC0 == 0xC0:
            return at + 2
        at += 1 + length


def wait_until(check, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.05)
    sys.exit(f"timed out: {what}")


def watch(port, jobs):
    """The write-to-served side, in a process of its own so that its polling
    does not hold this interpreter's lock while the API request is timed.
    For each (address, started) it is sent, polls DNS every 0.5 ms until www
    answers with the address, and sends back the time since `started`
    (perf_counter is CLOCK_MONOTONIC, one clock for both processes), or None
    after 5 s."""
    while True:
        job = jobs.recv()
        if job is None:
            return
        expected, started = job
        seen = None
        while time.perf_counter() - started < 5.0:
            try:
                if expected in query(port, "www." + ZONE, timeout=0.2):
                    seen = time.perf_counter() - started
                    break
            except OSError:
                pass
            time.sleep(0.0005)
        jobs.send(seen)


def measure(name, dns_port, change, changes):
    api, served = [], []
    ours, theirs = multiprocessing.Pipe()
    watcher = multiprocessing.Process(target=watch, args=(dns_port, theirs), daemon=True)
    watcher.start()
    try:
        for i in range(changes):
            address = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
            started = time.perf_counter()
            ours.send((address, started))
            change(address)
            api.append(time.perf_counter() - started)
            seen = ours.recv()
            if seen is None:
                sys.exit(f"{name}: change {i} ({address}) was not served within 5 s")
            served.append(seen)
    finally:
        ours.send(None)
        watcher.join(5)
    return api, served


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def run_pdns(workdir, changes):
    db = os.path.join(workdir, "pdns.sqlite3")
    schema = "/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql"
    subprocess.run(["sqlite3", db], stdin=open(schema), check=True)
    dns_port, web_port = free_port(), free_port()
    conf = os.path.join(workdir, "pdns.conf")
    with open(conf, "w") as f:
        f.write(f"""launch=gsqlite3
gsqlite3-database={db}
local-address=127.0.0.1
local-port={dns_port}
api=yes
api-key={PDNS_KEY}
webserver=yes
webserver-address=127.0.0.1
webserver-port={web_port}
webserver-allow-from=127.0.0.0/8
socket-dir={workdir}
guardian=no
daemon=no
disable-syslog=yes
loglevel=3
cache-ttl=0
query-cache-ttl=0
negquery-cache-ttl=0
""")
    log = open(os.path.join(workdir, "pdns.log"), "w")
    process = subprocess.Popen(["pdns_server", f"--config-dir={workdir}", "--config-name="], stdout=log, stderr=log)
    # pdns reads pdns.conf from --config-dir when --config-name is empty.
    http_conn = lambda: http.client.HTTPConnection("127.0.0.1", web_port, timeout=10)
    headers = {"X-API-Key": PDNS_KEY, "Content-Type": "application/json"}
    wait_until(lambda: http_conn().request("GET", "/api/v1/servers", headers=headers) or True, 20, "PowerDNS API")
    conn = http_conn()
    body = {"name": ZONE, "kind": "Native", "nameservers": ["ns1." + ZONE],
            "rrsets": [{"name": "www." + ZONE, "type": "A", "ttl": 60, "changetype": "REPLACE",
                        "records": [{"content": "10.255.255.255", "disabled": False}]}]}
    conn.request("POST", "/api/v1/servers/localhost/zones", json.dumps(body), headers)
    response = conn.getresponse()
    response.read()
    if response.status != 201:
        sys.exit(f"PowerDNS zone create: {response.status}")
    wait_until(lambda: "10.255.255.255" in query(dns_port, "www." + ZONE), 10, "PowerDNS serving the zone")

    def change(address):
        patch = {"rrsets": [{"name": "www." + ZONE, "type": "A", "ttl": 60, "changetype": "REPLACE",
                             "records": [{"content": address, "disabled": False}]}]}
        conn.request("PATCH", f"/api/v1/servers/localhost/zones/{ZONE}", json.dumps(patch), headers)
        r = conn.getresponse()
        r.read()
        if r.status != 204:
            sys.exit(f"PowerDNS PATCH: {r.status}")

    try:
        return measure("PowerDNS", dns_port, change, changes)
    finally:
        process.terminate()
        process.wait()


class Ferrodns:
    """A ferrodns server on SQLite (its data directory under `workdir`) or
    on a new PostgreSQL database, with its admin token read."""

    def __init__(self, workdir, db, binary=BINARY):
        self.dns_port, self.api_port = free_port(), free_port()
        data = os.path.join(workdir, "ferrodns")
        cmd = [binary, "serve", "--dns-listen", f"127.0.0.1:{self.dns_port}",
               "--api-listen", f"127.0.0.1:{self.api_port}", "--data-dir", data, "--log-level", "warn"]
        self.database = None
        if db == "postgres":
            self.database = f"ferrodns_apibench_{os.getpid()}"
            psql(f"DROP DATABASE IF EXISTS {self.database}")
            psql(f"CREATE DATABASE {self.database}")
            cmd += ["--database-url", f"postgres://root@127.0.0.1:5432/{self.database}"]
        os.makedirs(workdir, exist_ok=True)
        log = open(os.path.join(workdir, "ferrodns.log"), "w")
        self.process = subprocess.Popen(cmd, stdout=log, stderr=log)
        token_file = os.path.join(data, "admin.token")
        wait_until(lambda: os.path.exists(token_file) and open(token_file).read().strip(), 30, "the admin token")
        token = open(token_file).read().strip()
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn = self.connect()
        wait_until(lambda: conn.request("GET", "/v1/health/ready") or conn.getresponse().read() is not None, 30, "the API")

    def connect(self):
        return http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=10)

    def request(self, conn, method, path, body=None):
        conn.request(method, path, None if body is None else json.dumps(body), self.headers)
        r = conn.getresponse()
        return r.status, r.read()

    def create_zone(self, conn, name):
        status, _ = self.request(conn, "POST", "/v1/zones", {"name": name})
        if status != 201:
            sys.exit(f"ferrodns zone create {name}: {status}")

    def stop(self):
        self.process.terminate()
        self.process.wait()
        if self.database:
            psql(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)", check=False)


def psql(sql, check=True):
    subprocess.run(["psql", "-h", "127.0.0.1", "-d", "postgres", "-qc", sql], check=check)


def run_ferrodns(workdir, changes, db):
    server = Ferrodns(workdir, db)
    try:
        conn = server.connect()
        server.create_zone(conn, ZONE)

        def change(address):
            status, _ = server.request(conn, "PUT", f"/v1/zones/{ZONE}/rrsets/www/A", {"ttl": 60, "records": [address]})
            if status != 200:
                sys.exit(f"ferrodns PUT: {status}")

        return measure("ferrodns", dns_port=server.dns_port, change=change, changes=changes)
    finally:
        server.stop()


def writer(api_port, headers, zone, owner, changes, start, results):
    """One throughput client: `changes` PUTs of `owner` in `zone`, one at a
    time, from `start` on; reports the last address acknowledged. It sends
    them with `leanhttp`: with http.client, eight such clients took a
    quarter of this machine's two vCPUs."""
    client = leanhttp.KeptAlive(api_port, headers)
    path = f"/v1/zones/{zone}/rrsets/{owner}/A"
    start.wait()
    last = None
    for i in range(changes):
        address = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        status, _ = client.request("PUT", path, f'{{"ttl":60,"records":["{address}"]}}'.encode())
        if status != 200:
            results.put((zone, owner, None, f"status {status}"))
            return
        last = address
    client.close()
    results.put((zone, owner, last, None))


def throughput(workdir, db, writers, changes, layout, binary):
    """Changes a second with `writers` clients at once, each in a process
    of its own: each on a zone of its own (`zones`) or all on one zone, each
    on its own owner (`zone`). Then checks that every client's last
    acknowledged change is what the API and DNS give."""
    server = Ferrodns(workdir, db, binary)
    try:
        conn = server.connect()
        zones = [f"z{k}.{ZONE}" for k in range(writers)] if layout == "zones" else [ZONE]
        for zone in zones:
            server.create_zone(conn, zone)
        start = multiprocessing.Event()
        results = multiprocessing.Queue()
        clients = []
        for k in range(writers):
            zone = zones[k % len(zones)]
            owner = "www" if layout == "zones" else f"w{k}"
            clients.append(multiprocessing.Process(
                target=writer, args=(server.api_port, server.headers, zone, owner, changes, start, results)))
        for client in clients:
            client.start()
        time.sleep(0.5)
        began = time.perf_counter()
        start.set()
        outcomes = [results.get(timeout=300) for _ in clients]
        elapsed = time.perf_counter() - began
        for client in clients:
            client.join()
        # A new connection: the server closes keep-alive connections left
        # idle as long as a long run takes.
        conn = server.connect()
        for zone, owner, last, error in outcomes:
            if error:
                sys.exit(f"{owner}.{zone}: {error}")
            status, body = server.request(conn, "GET", f"/v1/zones/{zone}/rrsets/{owner}/A")
            stored = json.loads(body)["records"] if status == 200 else None
            served = query(server.dns_port, f"{owner}.{zone}")
            if stored != [last] or served != [last]:
                sys.exit(f"{owner}.{zone}: acknowledged {last}, stored {stored}, served {served}")
        return writers * changes / elapsed
    finally:
        server.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--changes", type=int, default=300)
    ap.add_argument("--servers", default="pdns,ferrodns")
    ap.add_argument("--db", default="sqlite", choices=["sqlite", "postgres"], help="ferrodns's database")
    ap.add_argument("--writers", type=int, default=0,
                    help="measure throughput instead: this many clients at once (8 in the docs)")
    ap.add_argument("--layout", default="zones,zone",
                    help="with --writers: 'zones' (a zone per client), 'zone' (one zone), or both")
    ap.add_argument("--binary", default=BINARY, help="the ferrodns binary (to compare builds)")
    a = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="apibench-")
    if a.writers:
        print(f"{a.writers} writers, {a.changes} one-record replacements each, ferrodns on {a.db}")
        print("| layout | changes/s |")
        print("|---|---|")
        for layout in a.layout.split(","):
            rate = throughput(os.path.join(workdir, layout), a.db, a.writers, a.changes, layout, a.binary)
            print(f"| {'a zone per writer' if layout == 'zones' else 'one zone'} | {rate:.0f} |")
        return
    rows = []
    for server in a.servers.split(","):
        if server == "pdns":
            api, served = run_pdns(workdir, a.changes)
            rows.append(("PowerDNS (gsqlite3)", api, served))
        elif server == "ferrodns":
            api, served = run_ferrodns(workdir, a.changes, a.db)
            rows.append((f"ferrodns ({a.db})", api, served))
        else:
            sys.exit(f"unknown server {server}")
    ms = lambda v: f"{v * 1000:.2f}"
    print(f"{a.changes} one-record replacements, one at a time")
    print("| server | API p50 ms | API p90 ms | API p99 ms | served p50 ms | served p90 ms | served p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for name, api, served in rows:
        print(f"| {name} | {ms(percentile(api, 50))} | {ms(percentile(api, 90))} | {ms(percentile(api, 99))} "
              f"| {ms(percentile(served, 50))} | {ms(percentile(served, 90))} | {ms(percentile(served, 99))} |")


if __name__ == "__main__":
    main()
