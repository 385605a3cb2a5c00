#!/usr/bin/env python3
"""Control-plane benchmarks for ferrodns, on SQLite and on PostgreSQL.

Starts `ferrodns serve` (release build) on a fresh data directory or a fresh
PostgreSQL database, and measures, through the REST API:

  batch1     change batches of 1 record (one client, then 8 clients), batches/s
  batch1000  change batches of 1,000 records, batches/s and records/s
  import     import of the 100k-record authbench zone (the same generator)
  list       listing 10,000 zones page by page (limit 100 and 1000)
  delay      API response to DNS answer: after each 2xx, UDP queries until the
             answer shows the write; p50 and p99 of that delay
  update     on the imported --records zone: 1,000 one-record updates one after
             another, time per update (p50, p99) and the server's memory (PSS)
             before and after
  underload  on the imported --records zone, the server pinned to CPU 1 and dnsperf
             to CPU 0 (as authbench does), one 20-second dnsperf run: QPS in
             the seconds while 100 change batches a second go through the API
             (from two clients, with a lean HTTP client that leaves dnsperf's
             CPU alone) against QPS in the seconds with none, the two in
             blocks of --underload-block seconds (idle, busy, busy, idle,
             repeated) so that the host's drift falls on both alike; with
             each, how busy dnsperf kept its CPU (near 1.0: dnsperf, not the
             server, set the QPS) and the answers per CPU-second of the
             server's DNS threads
  publish    one-record changes (--writes of them) to one API zone while the server
             also serves --zones small zones from files, against the same with no
             other zone: p50 and p99 per change, and the ratio (a change must cost
             the same however many zones are served)
  startup    --zones stored zones (inserted by SQL) at start: seconds from the
             process start to DNS answering for the first and the last zone, and
             to the API ready
  exports    memory (RSS, sampled every 10 ms) through the import of the --records
             zone, then through four concurrent exports of it by a viewer token
             while a fifth is refused with 503, and some seconds after
  cost       the server's CPU per one-record PUT at 100 a second and nothing else,
             on the imported --records zone and on a zone that starts empty;
             with each, the server's context switches per PUT and (PostgreSQL)
             its backends' CPU per PUT
  poll       (PostgreSQL) the follower's catch-up with --zones stored zones: the
             server's CPU per poll (--ha-poll-ms 1000) beyond the same node's with
             no zones, while nothing changes and while a change comes every 0.5 s

  bench/controlbench.py --db sqlite --db postgres --json results.json

Needs: a release build (cargo build --release; FERRODNS_BINARY=path runs another
binary), PostgreSQL at 127.0.0.1:5432 with trust auth for --db postgres, and psql.
"""
import argparse, http.client, importlib.util, json, os, random, shutil, socket, struct, subprocess
import sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import leanhttp  # noqa: E402  (beside this script)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.environ.get("FERRODNS_BINARY", os.path.join(ROOT, "target", "release", "ferrodns"))
AUTHBENCH = os.path.join(ROOT, "bench", "authbench.py")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def psql(sql):
    subprocess.run(["psql", "-h", "127.0.0.1", "-d", "postgres", "-q", "-c", sql], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Server:
    def __init__(self, db, extra=(), cpu=None, start_timeout=60):
        self.dir = tempfile.mkdtemp(prefix="ferrodns-bench-")
        self.dns_port, self.api_port = free_port(), free_port()
        cmd = [BINARY, "serve", "--dns-listen", f"127.0.0.1:{self.dns_port}",
               "--api-listen", f"127.0.0.1:{self.api_port}", "--data-dir", self.dir,
               "--journal-keep", "100000", *(extra or ("--log-level", "warn"))]
        self.pg = None
        if db == "postgres":
            self.pg = f"ferrodns_bench_{os.getpid()}"
            psql(f"DROP DATABASE IF EXISTS {self.pg} WITH (FORCE)")
            psql(f"CREATE DATABASE {self.pg}")
            cmd += ["--database-url", f"postgres://root@127.0.0.1:5432/{self.pg}"]
        if cpu is not None:
            cmd = ["taskset", "-c", str(cpu)] + cmd
        self.cmd = cmd
        self.launch(start_timeout)

    def launch(self, start_timeout):
        log = open(os.path.join(self.dir, "log"), "a")
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.time() + start_timeout
        while True:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.api_port, timeout=2)
                c.request("GET", "/v1/health/ready")
                if c.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline or self.proc.poll() is not None:
                raise SystemExit("ferrodns did not start:\n" + open(os.path.join(self.dir, "log")).read())
            time.sleep(0.05)
        self.token = open(os.path.join(self.dir, "admin.token")).read().strip()

    def restart(self, start_timeout=60):
        """Stops the process and starts it again on the same data and database."""
        self.proc.terminate()
        self.proc.wait()
        self.launch(start_timeout)

    def client(self):
        return Client(self.api_port, self.token)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.pg:
            psql(f"DROP DATABASE IF EXISTS {self.pg} WITH (FORCE)")


class Client:
    def __init__(self, port, token):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method, path, body=None, content_type="application/json", expect=(200, 201, 204)):
        headers = dict(self.headers)
        if body is not None:
            if not isinstance(body, (bytes, str)):
                body = json.dumps(body)
            headers["Content-Type"] = content_type
        self.conn.request(method, path, body=body, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status not in expect:
            raise SystemExit(f"{method} {path}: {response.status} {data[:500]!r}")
        return json.loads(data) if data and response.getheader("content-type", "").startswith("application/json") else data


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def bench_batch1(server, n_single, n_per_client, clients=8):
    c = server.client()
    c.call("POST", "/v1/zones", {"name": "batch1.test"})
    start = time.perf_counter()
    for i in range(n_single):
        c.call("POST", "/v1/zones/batch1.test/changes",
               {"changes": [{"action": "create", "name": f"s{i}", "type": "A", "ttl": 60, "records": ["192.0.2.1"]}]})
    single = n_single / (time.perf_counter() - start)

    def worker(k):
        w = server.client()
        for i in range(n_per_client):
            w.call("POST", "/v1/zones/batch1.test/changes",
                   {"changes": [{"action": "create", "name": f"p{k}-{i}", "type": "A", "ttl": 60, "records": ["192.0.2.1"]}]})

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    parallel = clients * n_per_client / (time.perf_counter() - start)
    zone = c.call("GET", "/v1/zones/batch1.test")
    return {"one_client_batches_per_s": round(single, 1), f"{clients}_clients_batches_per_s": round(parallel, 1),
            "zone_rrsets_at_end": zone["rrset_count"]}


def bench_batch1000(server, batches):
    c = server.client()
    c.call("POST", "/v1/zones", {"name": "batch1000.test"})
    times = []
    for b in range(batches):
        changes = [{"action": "create", "name": f"b{b}-{i}", "type": "A", "ttl": 60,
                    "records": [f"10.{b}.{i >> 8}.{i & 255}"]} for i in range(1000)]
        start = time.perf_counter()
        c.call("POST", "/v1/zones/batch1000.test/changes", {"changes": changes})
        times.append(time.perf_counter() - start)
    total = sum(times)
    return {"batches": batches, "batches_per_s": round(batches / total, 2), "records_per_s": round(batches * 1000 / total),
            "first_batch_ms": round(times[0] * 1000, 1), "last_batch_ms": round(times[-1] * 1000, 1)}


def load_authbench():
    spec = importlib.util.spec_from_file_location("authbench", AUTHBENCH)
    authbench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(authbench)
    return authbench


def pss_mib(pid):
    for line in open(f"/proc/{pid}/smaps_rollup"):
        if line.startswith("Pss:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def bench_zone(server, records):
    """authbench's zone of `records` records as master-file text, and a client
    for which its (empty) zone is created: (authbench, text, client)."""
    authbench = load_authbench()
    path = os.path.join(server.dir, "bench.zone")
    authbench.gen_zone(path, records)
    c = server.client()
    c.call("POST", "/v1/zones", {"name": authbench.ORIGIN})
    return authbench, open(path, "rb").read(), c


def import_bench_zone(server, records):
    authbench, text, c = bench_zone(server, records)
    c.call("POST", f"/v1/zones/{authbench.ORIGIN}/import?mode=replace", text, content_type="text/dns")
    return authbench, c


def update_one(c, origin, i):
    address = f"198.51.{(i >> 8) & 255}.{i & 255}"
    c.call("PUT", f"/v1/zones/{origin}/rrsets/h{i}/A", {"ttl": 3600, "records": [address]})


def bench_update(server, records, updates=1000):
    authbench, c = import_bench_zone(server, records)
    c.call("GET", f"/v1/zones/{authbench.ORIGIN}")
    before = pss_mib(server.proc.pid)
    rnd = random.Random(5)
    times = []
    for _ in range(updates):
        start = time.perf_counter()
        update_one(c, authbench.ORIGIN, rnd.randrange(records))
        times.append(time.perf_counter() - start)
    after = pss_mib(server.proc.pid)
    return {"records": records, "updates": updates, "p50_ms": round(percentile(times, 50) * 1000, 2),
            "p99_ms": round(percentile(times, 99) * 1000, 2), "max_ms": round(max(times) * 1000, 2),
            "pss_before_mib": before, "pss_after_mib": after}


def run_time(pid, prefix=""):
    """CPU seconds used so far by the threads of process `pid` whose names
    start with `prefix` (ferrodns names its DNS workers `dns-…`), from
    schedstat (nanoseconds, where /proc's stat counts 10 ms ticks)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
            if name.startswith(prefix):
                total += int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0])
        except OSError:
            continue
    return total / 1e9


class LeanUpdater:
    """One-record PUTs over a kept-alive connection (`leanhttp`), for the
    underload measure: the updater shares CPU 0 with dnsperf, which sets the
    pace of the QPS figure, and http.client cost enough per request there to
    lower dnsperf's own rate and charge it to the server."""

    def __init__(self, port, token, origin):
        self.client = leanhttp.KeptAlive(port, {"Authorization": f"Bearer {token}",
                                                "Content-Type": "application/json"})
        self.origin = origin

    def update(self, i):
        body = b'{"ttl":3600,"records":["198.51.%d.%d"]}' % ((i >> 8) & 255, i & 255)
        status, answer = self.client.request("PUT", f"/v1/zones/{self.origin}/rrsets/h{i}/A", body)
        if status != 200:
            raise SystemExit(f"PUT h{i}: {status} {answer[:200]!r}")


def bench_underload(server, records, seconds=20, block=1, rate=100, clients=2):
    """QPS while `rate` one-record PUTs a second go through the API, against
    QPS with none, over `seconds` seconds of one dnsperf run: the updates run
    for half the seconds, in blocks of `block` seconds in the order idle,
    busy, busy, idle, repeated. `block` 5 is one idle-busy-idle pass (5, 10
    and 5 seconds), the layout this measure had before 2026-12-04.

    Why blocks: on a shared host dnsperf's rate moves by 10-20 % over a few
    seconds with nothing changing in the server (per-second figures of an
    idle server: 152k-201k within one minute), so a ratio of one ten-second
    stretch to the ten around it reads the host as much as the server. In
    blocks of a second, a slow stretch of the host falls on idle and busy
    seconds alike. Each second's figure comes from dnsperf's own interval
    statistics (-S 1), and the updaters turn on and off on those ticks."""
    authbench, _ = import_bench_zone(server, records)
    qfile = os.path.join(server.dir, "queries.txt")
    authbench.gen_queries(qfile, records)
    pattern = [False, True, True, False]
    busy_at = [pattern[(i // block) % 4] for i in range(seconds)]
    state = {"since": None}  # perf_counter() when the busy block began
    on, stop = threading.Event(), threading.Event()
    done = []

    # `clients` connections share the rate, each sending on its own schedule,
    # so that one batch waiting for its commit does not hold the next back
    # (as changes from several API clients would arrive). Each busy block
    # starts the schedule afresh: no burst to catch up on the idle one.
    def updater(k):
        c = LeanUpdater(server.api_port, server.token, authbench.ORIGIN)
        rnd = random.Random(6 + k)
        epoch, sent = None, 0
        while True:
            on.wait()
            since = state["since"]
            if stop.is_set():
                return
            if since is None:
                continue
            if since != epoch:
                epoch, sent = since, 0
            pause = epoch + (sent * clients + k) / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            if state["since"] != epoch:
                continue
            t = time.perf_counter()
            c.update(rnd.randrange(records))
            done.append(time.perf_counter() - t)
            sent += 1

    # A failed PUT ends its thread; the round then fails, not reads as fewer updates.
    failures = []

    def guarded(k):
        try:
            updater(k)
        except BaseException as error:  # SystemExit from LeanUpdater too
            failures.append(f"updater {k}: {error}")

    os.sched_setaffinity(0, {0})
    threads = [threading.Thread(target=guarded, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    # One second of warm-up, idle, before the measured seconds.
    warmup = 1
    proc = subprocess.Popen(["stdbuf", "-oL", "taskset", "-c", "0", "dnsperf", "-s", "127.0.0.1",
                             "-p", str(server.dns_port), "-d", qfile, "-l", str(warmup + seconds + 1),
                             "-c", "8", "-q", "256", "-T", "1", "-S", "1"],
                            stdout=subprocess.PIPE, text=True)
    qps = {False: [], True: []}
    client = {False: 0.0, True: 0.0}
    dns = {False: 0.0, True: 0.0}
    tick = -warmup
    last = (run_time(proc.pid), run_time(server.proc.pid, "dns-"))
    output = []
    for line in proc.stdout:
        output.append(line)
        head, _, rate_text = line.partition(": ")
        if not head.replace(".", "").isdigit() or not 0 <= tick + 1 <= seconds:
            continue
        # The interval that just ended was `tick`; the next is `tick + 1`.
        now = (run_time(proc.pid), run_time(server.proc.pid, "dns-"))
        if tick >= 0:
            phase = busy_at[tick]
            qps[phase].append(float(rate_text))
            client[phase] += now[0] - last[0]
            dns[phase] += now[1] - last[1]
        last = now
        tick += 1
        if tick == seconds:
            on.clear()
            state["since"] = None
        elif busy_at[tick] != (state["since"] is not None):
            if busy_at[tick]:
                state["since"] = time.perf_counter()
                on.set()
            else:
                on.clear()
                state["since"] = None
    proc.wait()
    stop.set()
    on.set()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit("; ".join(failures))
    if len(qps[False]) + len(qps[True]) != seconds:
        raise SystemExit("dnsperf gave too few interval figures:\n" + "".join(output))
    idle, busy = (sum(qps[p]) / len(qps[p]) for p in (False, True))
    answered = {p: sum(qps[p]) for p in (False, True)}
    return {"records": records, "seconds": seconds, "block_s": block, "idle_qps": round(idle),
            "idle_qps_range": [round(min(qps[False])), round(max(qps[False]))],
            "qps_under_updates": round(busy), "busy_qps_range": [round(min(qps[True])), round(max(qps[True]))],
            "ratio": round(busy / idle, 3), "lost_pct": authbench.dnsperf_figures("".join(output))["lost_pct"],
            "clients": clients,
            "batches": len(done), "batches_per_busy_s": round(len(done) / len(qps[True]), 1),
            "batch_p50_ms": round(percentile(done, 50) * 1000, 2), "batch_p99_ms": round(percentile(done, 99) * 1000, 2),
            "dnsperf_cpu_idle": round(client[False] / len(qps[False]), 3),
            "dnsperf_cpu_busy": round(client[True] / len(qps[True]), 3),
            "dns_answers_per_cpu_s_idle": round(answered[False] / dns[False]) if dns[False] else None,
            "dns_answers_per_cpu_s_busy": round(answered[True] / dns[True]) if dns[True] else None}


def bench_import(server, records):
    authbench, text, c = bench_zone(server, records)
    start = time.perf_counter()
    result = c.call("POST", f"/v1/zones/{authbench.ORIGIN}/import?mode=replace", text, content_type="text/dns")
    elapsed = time.perf_counter() - start
    zone = c.call("GET", f"/v1/zones/{authbench.ORIGIN}")
    # One write on the imported zone: today each change rebuilds the zone it touches.
    start = time.perf_counter()
    c.call("POST", f"/v1/zones/{authbench.ORIGIN}/changes",
           {"changes": [{"action": "create", "name": "after-import", "type": "A", "ttl": 60, "records": ["192.0.2.1"]}]})
    one_change = time.perf_counter() - start
    return {"records_in_file": sum(1 for line in text.splitlines() if line and not line.startswith(b"$")),
            "seconds": round(elapsed, 2), "rrsets": zone["rrset_count"], "change_id": result.get("id"),
            "one_record_batch_after_import_ms": round(one_change * 1000, 1)}


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler(threading.Thread):
    """Samples a process's RSS every 10 ms from its start; `peak()` is the largest."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.top, self.running = pid, 0.0, True
        self.began, self.samples = time.perf_counter(), []
        self.start()

    def run(self):
        while self.running:
            try:
                rss = rss_mib(self.pid)
            except OSError:
                return
            self.top = max(self.top, rss)
            self.samples.append((time.perf_counter() - self.began, rss))
            time.sleep(0.01)

    def timeline(self, step=0.5):
        """The largest RSS in each `step` seconds, as (seconds, MiB) pairs."""
        buckets = {}
        for at, rss in self.samples:
            k = int(at / step)
            buckets[k] = max(buckets.get(k, 0.0), rss)
        return [(round(k * step, 1), round(v)) for k, v in sorted(buckets.items())]

    def stop(self):
        self.running = False
        self.join()

    def peak(self):
        return round(self.top, 1)


def bench_exports(server, records, exporters=4):
    authbench, text, c = bench_zone(server, records)
    zone_file_mib = round(len(text) / 2**20, 1)
    pid = server.proc.pid
    before_import = round(rss_mib(pid), 1)
    sampler = RssSampler(pid)
    start = time.perf_counter()
    c.call("POST", f"/v1/zones/{authbench.ORIGIN}/import?mode=replace", text, content_type="text/dns")
    import_seconds = time.perf_counter() - start
    sampler.stop()
    import_peak = sampler.peak()
    print(f"import RSS (s, MiB): {sampler.timeline(0.1)}", file=sys.stderr)
    del text
    time.sleep(3)
    settled = round(rss_mib(pid), 1)
    viewer = c.call("POST", "/v1/tokens", {"name": "export-viewer", "role": "viewer"})["token"]
    sizes, statuses, refused = [0] * exporters, [None] * exporters, []
    started = threading.Barrier(exporters + 1)

    def export(k):
        conn = http.client.HTTPConnection("127.0.0.1", server.api_port, timeout=600)
        conn.request("GET", f"/v1/zones/{authbench.ORIGIN}/export", headers={"Authorization": f"Bearer {viewer}"})
        response = conn.getresponse()
        statuses[k] = response.status
        first = response.read(65536)
        started.wait()
        sizes[k] = len(first) + len(response.read())

    sampler = RssSampler(pid)
    start = time.perf_counter()
    threads = [threading.Thread(target=export, args=(k,)) for k in range(exporters)]
    for t in threads:
        t.start()
    started.wait()
    # All four are streaming: one more is turned away.
    conn = http.client.HTTPConnection("127.0.0.1", server.api_port, timeout=60)
    conn.request("GET", f"/v1/zones/{authbench.ORIGIN}/export", headers={"Authorization": f"Bearer {viewer}"})
    response = conn.getresponse()
    refused.append(response.status)
    response.read()
    for t in threads:
        t.join()
    export_seconds = time.perf_counter() - start
    sampler.stop()
    export_peak = sampler.peak()
    time.sleep(3)
    after = round(rss_mib(pid), 1)
    return {"records": records, "zone_file_mib": zone_file_mib,
            "rss_before_import_mib": before_import, "import_peak_rss_mib": import_peak,
            "import_seconds": round(import_seconds, 2), "rss_after_import_mib": settled,
            "exporters": exporters, "export_statuses": statuses, "export_mib_each": [round(x / 2**20, 1) for x in sizes],
            "fifth_export_status": refused[0], "exports_seconds": round(export_seconds, 2),
            "exports_peak_rss_mib": export_peak, "rss_3s_after_exports_mib": after}


def bench_list(server, zones):
    c = server.client()
    start = time.perf_counter()
    for i in range(zones):
        c.call("POST", "/v1/zones", {"name": f"z{i:05}.list.test"})
    create = time.perf_counter() - start
    result = {"zones": zones, "create_zones_per_s": round(zones / create, 1)}
    for limit in (100, 1000):
        start, seen, pages, cursor = time.perf_counter(), 0, 0, None
        while True:
            path = f"/v1/zones?limit={limit}&name=list.test" + (f"&cursor={cursor}" if cursor else "")
            page = c.call("GET", path)
            seen += len(page["items"])
            pages += 1
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == zones, (seen, zones)
        result[f"limit_{limit}_seconds"] = round(time.perf_counter() - start, 3)
        result[f"limit_{limit}_pages"] = pages
    return result


def dns_query(sock, port, name, qid):
    wire = b"".join(bytes([len(label)]) + label.encode() for label in name.rstrip(".").split(".")) + b"\0"
    sock.sendto(struct.pack(">HHHHHH", qid, 0, 1, 0, 0, 0) + wire + struct.pack(">HH", 1, 1), ("127.0.0.1", port))
    while True:
        data, _ = sock.recvfrom(4096)
        if struct.unpack(">H", data[:2])[0] == qid:
            return data


def bench_delay(server, writes):
    c = server.client()
    c.call("POST", "/v1/zones", {"name": "delay.test"})
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(2)
    delays, first_try = [], 0
    for i in range(writes):
        address = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
        c.call("PUT", "/v1/zones/delay.test/rrsets/www/A", {"ttl": 60, "records": [address]})
        acked = time.perf_counter()
        want = socket.inet_aton(address)
        tries = 0
        while True:
            tries += 1
            reply = dns_query(sock, server.dns_port, "www.delay.test.", i & 0xffff)
            if reply.endswith(want):
                break
        delays.append(time.perf_counter() - acked)
        first_try += tries == 1
    return {"writes": writes, "p50_ms": round(percentile(delays, 50) * 1000, 3),
            "p99_ms": round(percentile(delays, 99) * 1000, 3), "max_ms": round(max(delays) * 1000, 3),
            "answered_right_on_first_query": first_try}


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def context_switches(pid):
    """Context switches so far, voluntary and not, of every thread of `pid`."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            for line in open(f"/proc/{pid}/task/{tid}/status"):
                if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def postgres_cpu_seconds(database):
    """CPU seconds used so far by PostgreSQL's backends connected to `database`."""
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            title = open(f"/proc/{pid}/cmdline", "rb").read()
            if title.startswith(b"postgres: ") and f" {database} ".encode() in title:
                total += cpu_seconds(int(pid))
        except OSError:
            continue
    return total


def bench_cost(db, records, changes=1000, rate=100):
    """The server's CPU (every thread, user and system) per one-record PUT at
    `rate` a second with nothing else to do: on the imported --records zone,
    and on a zone that starts empty and gains the names the PUTs create. A
    change should cost the same on both. With each, the server's context
    switches per change and, on PostgreSQL, the CPU of its backends."""
    result = {"records": records, "changes": changes, "rate": rate}
    for label in ("empty", "imported"):
        server = Server(db, cpu=1)
        try:
            if label == "imported":
                origin = import_bench_zone(server, records)[0].ORIGIN
            else:
                origin = "cost.example."
                server.client().call("POST", "/v1/zones", {"name": origin})
            updater = LeanUpdater(server.api_port, server.token, origin)
            rnd = random.Random(6)
            time.sleep(1)
            before, switches, start = cpu_seconds(server.proc.pid), context_switches(server.proc.pid), time.perf_counter()
            pg = postgres_cpu_seconds(server.pg) if server.pg else 0.0
            for n in range(changes):
                pause = start + n / rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                updater.update(rnd.randrange(records if label == "imported" else 1000))
            used = cpu_seconds(server.proc.pid) - before
            switches = context_switches(server.proc.pid) - switches
            if server.pg:
                result[f"{label}_zone_postgres_ms_per_change"] = round(
                    (postgres_cpu_seconds(server.pg) - pg) / changes * 1000, 3)
        finally:
            server.stop()
        result[f"{label}_zone_ms_per_change"] = round(used / changes * 1000, 3)
        result[f"{label}_zone_switches_per_change"] = round(switches / changes, 2)
    return result


def bench_publish(db, zones, writes):
    """One-record changes with and without `zones` file zones beside the changed one."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    import manyzones  # noqa: E402
    result = {"zones": zones, "writes": writes}
    for label, count in (("one_zone", 0), ("many_zones", zones)):
        extra = ["--log-level", "warn"]
        zone_dir = None
        if count:
            zone_dir = tempfile.mkdtemp(prefix="ferrodns-zones-")
            manyzones.gen_zones(zone_dir, count)
            extra += ["--zone-file", zone_dir]
        server = Server(db, extra=extra, start_timeout=300)
        try:
            c = server.client()
            c.call("POST", "/v1/zones", {"name": "publish.test"})
            for i in range(50):  # warm up
                update = {"ttl": 60, "records": [f"10.9.{(i >> 8) & 255}.{i & 255}"]}
                c.call("PUT", "/v1/zones/publish.test/rrsets/www/A", update)
            times = []
            for i in range(writes):
                update = {"ttl": 60, "records": [f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"]}
                start = time.perf_counter()
                c.call("PUT", "/v1/zones/publish.test/rrsets/www/A", update)
                times.append(time.perf_counter() - start)
            result[label] = {"p50_ms": round(percentile(times, 50) * 1000, 3),
                             "p99_ms": round(percentile(times, 99) * 1000, 3)}
        finally:
            server.stop()
            if zone_dir:
                shutil.rmtree(zone_dir, ignore_errors=True)
    result["p50_ratio"] = round(result["many_zones"]["p50_ms"] / result["one_zone"]["p50_ms"], 2)
    return result


# Packed as the rrsets table keeps RDATA: each record's length, then the record.
SOA_HEX = "0034026e7307696e76616c6964000a686f73746d617374657207696e76616c696400" + \
    "00000001" + "00000e10" + "00000258" + "00093a80" + "0000012c"
NS_HEX = "000c026e7307696e76616c696400"


def insert_zones(server, db, count, suffix):
    """Stores `count` zones `pN.<suffix>` (SOA and NS) by SQL, behind the server's back."""
    if db == "postgres":
        sql = f"""
            INSERT INTO zones (name, tenant, kind, serial, version, rrset_count, catalog_id, created_at, updated_at)
              SELECT 'p' || i || '.{suffix}', 'system', 'primary', 1, 1, 2, md5(i::text), 0, 0
              FROM generate_series(0, {count - 1}) AS i;
            INSERT INTO rrsets (zone_id, owner, rtype, ttl, rdata)
              SELECT id, name, 6, 3600, '\\x{SOA_HEX}'::bytea FROM zones WHERE name LIKE '%.{suffix}';
            INSERT INTO rrsets (zone_id, owner, rtype, ttl, rdata)
              SELECT id, name, 2, 3600, '\\x{NS_HEX}'::bytea FROM zones WHERE name LIKE '%.{suffix}';
        """
        subprocess.run(["psql", "-h", "127.0.0.1", "-d", server.pg, "-q", "-c", sql], check=True)
        return
    import sqlite3
    conn = sqlite3.connect(os.path.join(server.dir, "ferrodns.db"))
    conn.executemany(
        "INSERT INTO zones (name, tenant, kind, serial, version, rrset_count, catalog_id, created_at, updated_at) "
        "VALUES (?, 'system', 'primary', 1, 1, 2, ?, 0, 0)",
        ((f"p{i}.{suffix}", f"{i:032x}") for i in range(count)))
    conn.execute(f"INSERT INTO rrsets (zone_id, owner, rtype, ttl, rdata) SELECT id, name, 6, 3600, X'{SOA_HEX}' "
                 f"FROM zones WHERE name LIKE '%.{suffix}'")
    conn.execute(f"INSERT INTO rrsets (zone_id, owner, rtype, ttl, rdata) SELECT id, name, 2, 3600, X'{NS_HEX}' "
                 f"FROM zones WHERE name LIKE '%.{suffix}'")
    conn.commit()
    conn.close()


def bench_startup(db, zones):
    """Seconds from the process start to DNS answering for the last of `zones` stored zones."""
    server = Server(db, extra=("--log-level", "warn"))
    try:
        server.proc.terminate()
        server.proc.wait()
        insert_zones(server, db, zones, "start.test.")
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.settimeout(0.05)
        log = open(os.path.join(server.dir, "log"), "a")
        started = time.time()
        server.proc = subprocess.Popen(server.cmd, stdout=subprocess.DEVNULL, stderr=log)
        # The first stored zone answers as soon as DNS listens and it is
        # loaded; the last once every zone is.
        first_s, dns_s = None, None
        for name in ("p0.start.test.", f"p{zones - 1}.start.test."):
            while time.time() - started < 600:
                try:
                    reply = dns_query(sock, server.dns_port, name, 6)
                    if reply[3] & 15 == 0:
                        break
                except OSError:
                    pass
            if first_s is None:
                first_s = time.time() - started
            else:
                dns_s = time.time() - started
        api_s = None
        while time.time() - started < 600:
            try:
                c = http.client.HTTPConnection("127.0.0.1", server.api_port, timeout=2)
                c.request("GET", "/v1/health/ready")
                if c.getresponse().status == 200:
                    api_s = time.time() - started
                    break
            except OSError:
                pass
            time.sleep(0.01)
        return {"zones": zones, "first_zone_answers_s": round(first_s, 2),
                "dns_answers_s": round(dns_s, 2) if dns_s else None,
                "api_ready_s": round(api_s, 2) if api_s else None}
    finally:
        server.stop()


def bench_poll(zones, seconds=20):
    """CPU per follower poll with `zones` stored zones (inserted by SQL), against none."""
    result = {"zones": zones, "seconds": seconds}
    ha = ["--log-level", "warn", "--ha-poll-ms", "1000", "--node-id", "bench"]
    for label, count in (("no_zones", 0), ("many_zones", zones)):
        server = Server("postgres", extra=ha, start_timeout=300)
        try:
            if count:
                insert_zones(server, "postgres", count, "poll.test.")
                # Loaded at start-up (one query per zone today), then served.
                server.restart(start_timeout=900)
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                sock.settimeout(1)
                deadline = time.time() + 600
                while time.time() < deadline:
                    try:
                        reply = dns_query(sock, server.dns_port, f"p{count - 1}.poll.test.", 7)
                        if reply[3] & 15 == 0 and struct.unpack(">H", reply[6:8])[0] == 0:
                            break
                    except OSError:
                        pass
                    time.sleep(1)
                else:
                    raise SystemExit("the follower did not load the zones in 10 minutes")
                time.sleep(3)
            # Quiet: nothing changes, so a poll finds the zones' fingerprint
            # unchanged. Then a change every 0.5 s (on a zone of its own), so
            # every poll compares every zone's serial with the database.
            start = cpu_seconds(server.proc.pid)
            time.sleep(seconds)
            quiet = cpu_seconds(server.proc.pid) - start
            c = server.client()
            c.call("POST", "/v1/zones", {"name": "writes.poll.test"})
            start, i = cpu_seconds(server.proc.pid), 0
            until = time.time() + seconds
            while time.time() < until:
                c.call("PUT", "/v1/zones/writes.poll.test/rrsets/www/A", {"ttl": 60, "records": [f"10.0.0.{i % 250}"]})
                i += 1
                time.sleep(0.5)
            busy = cpu_seconds(server.proc.pid) - start
            result[label] = {"quiet_cpu_s": round(quiet, 3), "changing_cpu_s": round(busy, 3), "changes": i}
        finally:
            server.stop()
    many, none = result["many_zones"], result["no_zones"]
    # --ha-poll-ms 1000: `seconds` polls in each window.
    result["quiet_cpu_ms_per_poll"] = round((many["quiet_cpu_s"] - none["quiet_cpu_s"]) / seconds * 1000, 1)
    result["changing_cpu_ms_per_poll"] = round((many["changing_cpu_s"] - none["changing_cpu_s"]) / seconds * 1000, 1)
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", action="append", choices=["sqlite", "postgres"])
    ap.add_argument("--only", action="append",
                    choices=["batch1", "batch1000", "import", "list", "delay", "update", "underload", "publish", "poll",
                             "startup", "exports", "cost"])
    ap.add_argument("--batch1", type=int, default=2000, help="single-client 1-record batches")
    ap.add_argument("--batch1-per-client", type=int, default=250)
    ap.add_argument("--batch1000", type=int, default=20)
    ap.add_argument("--records", type=int, default=100000)
    ap.add_argument("--zones", type=int, default=10000)
    ap.add_argument("--writes", type=int, default=1000)
    ap.add_argument("--underload-block", type=int, default=1, choices=[1, 2, 5],
                    help="seconds a block of the underload measure (5: idle 5 s, busy 10 s, idle 5 s)")
    ap.add_argument("--json")
    a = ap.parse_args()
    if not os.path.exists(BINARY):
        raise SystemExit("build first: cargo build --release")
    results = {}
    for db in a.db or ["sqlite", "postgres"]:
        results[db] = {}
        for name in a.only or ["batch1", "batch1000", "import", "list", "delay", "update", "underload"]:
            if name in ("publish", "poll", "startup", "cost"):
                if name == "poll" and db != "postgres":
                    continue
                if name == "startup":
                    r = bench_startup(db, a.zones)
                elif name == "cost":
                    r = bench_cost(db, a.records)
                else:
                    r = bench_publish(db, a.zones, a.writes) if name == "publish" else bench_poll(a.zones)
                results[db][name] = r
                print(f"{db:8} {name:9} {json.dumps(r)}", flush=True)
                continue
            # Room for importing the 1M-record zone (about 40 MB of text).
            extra = ("--log-level", "warn", "--max-body-bytes", str(256 << 20))
            server = Server(db, extra=extra, cpu=1 if name == "underload" else None)
            try:
                if name == "batch1":
                    r = bench_batch1(server, a.batch1, a.batch1_per_client)
                elif name == "batch1000":
                    r = bench_batch1000(server, a.batch1000)
                elif name == "import":
                    r = bench_import(server, a.records)
                elif name == "exports":
                    r = bench_exports(server, a.records)
                elif name == "list":
                    r = bench_list(server, a.zones)
                elif name == "update":
                    r = bench_update(server, a.records)
                elif name == "underload":
                    r = bench_underload(server, a.records, block=a.underload_block)
                else:
                    r = bench_delay(server, a.writes)
            finally:
                server.stop()
            results[db][name] = r
            print(f"{db:8} {name:9} {json.dumps(r)}", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
