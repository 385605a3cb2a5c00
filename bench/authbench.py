#!/usr/bin/env python3
"""Authoritative serving, ferrodns against Knot, NSD, BIND and PowerDNS: one zone, one
query mix, one run.

Each server loads the same generated zone (--records hosts and the usual apex, wildcard,
delegation and CNAME records), is started under taskset on --server-cpu with one UDP
worker where it has the setting, and answers dnsperf, which runs on --client-cpu with the
same query file for --duration seconds. Per server it prints the answers, the server's
CPU time (user and kernel, every thread and child), answers per CPU-second and that
relative to Knot (`eff/knot`), the memory (PSS), and the time from start to the first
answer. The machine is shared: compare ratios within one run, not absolute figures.

  bench/authbench.py                                  # knot,nsd,bind,pdns,ferrodns
  bench/authbench.py --servers knot,ferrodns --duration 8
  bench/authbench.py --servers knot,custom --custom-name other \\
      --custom-cmd '/path/to/ferrodns serve --dns-listen 127.0.0.1:{port} --api-listen off --zone-file {zone}'

`ferrodns` runs FERRODNS_BINARY (default target/release/ferrodns) with
--udp-cpu-pin online: Knot keeps its UDP worker on online CPU 0 whatever taskset says,
and ferrodns places its own the same way (docs/benchmarks.md says why). A custom
command's placeholders: {zone} the zone file, {origin} its origin, {port} the DNS port,
{workdir} a directory of its own.

Other scripts here import this one for its zone, queries and measurement
(controlbench.py, protectbench.py, axfrmem.py).

Needs (Debian): dnsperf bind9-dnsutils (dig), and the peers to run: knot nsd bind9
pdns-server pdns-backend-bind.
"""
import argparse, json, os, random, re, signal, socket, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.environ.get("FERRODNS_BINARY", os.path.join(ROOT, "target", "release", "ferrodns"))
ORIGIN = "bench.test."


def gen_zone(path, records, seed=1):
    """Writes the bench zone: host i has an A record; every 4th an AAAA, every 10th a
    CNAME pointing at a random host, every 20th TXT and MX; plus a wildcard, a
    delegation with glue, and the apex's SOA, NS, MX and TXT."""
    rnd = random.Random(seed)
    lines = [
        f"$ORIGIN {ORIGIN}",
        "$TTL 3600",
        "@ SOA ns1 hostmaster 1 7200 3600 1209600 300",
        "@ NS ns1",
        "@ NS ns2",
        "@ MX 10 mail",
        '@ TXT "v=spf1 mx -all"',
        "ns1 A 192.0.2.1",
        "ns2 A 192.0.2.2",
        "mail A 192.0.2.25",
        "*.wild A 192.0.2.99",
        "sub NS ns.sub",
        "ns.sub A 192.0.2.53",
    ]
    with open(path, "w") as out:
        out.write("\n".join(lines) + "\n")
        for i in range(records):
            out.write(f"h{i} A 10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}\n")
            if i % 4 == 0:
                out.write(f"h{i} AAAA 2001:db8::{(i >> 16):x}:{(i & 0xFFFF):x}\n")
            if i % 10 == 0:
                out.write(f"c{i} CNAME h{rnd.randrange(records)}\n")
            if i % 20 == 0:
                out.write(f'h{i} TXT "host {i}"\n')
                out.write(f"h{i} MX 10 mail\n")


# The query mix: (share, how to make one). Answers, CNAME chains, wildcards, a
# referral, NXDOMAIN and the SOA, as an authoritative server sees them.
MIX = [
    (0.55, lambda r, n: f"h{r.randrange(n)}.{ORIGIN} A"),
    (0.10, lambda r, n: f"h{r.randrange(0, n, 4)}.{ORIGIN} AAAA"),
    (0.07, lambda r, n: f"c{r.randrange(0, n, 10)}.{ORIGIN} A"),
    (0.05, lambda r, n: f"h{r.randrange(0, n, 20)}.{ORIGIN} MX"),
    (0.03, lambda r, n: f"h{r.randrange(0, n, 20)}.{ORIGIN} TXT"),
    (0.05, lambda r, n: f"w{r.randrange(1 << 20)}.wild.{ORIGIN} A"),
    (0.02, lambda r, n: f"www.sub.{ORIGIN} A"),
    (0.10, lambda r, n: f"no{r.randrange(1 << 20)}.{ORIGIN} A"),
    (0.03, lambda r, n: f"h{r.randrange(n)}.{ORIGIN} SOA"),
]


def gen_queries(path, records, count=200_000, seed=2):
    """Writes `count` dnsperf queries drawn from MIX."""
    rnd = random.Random(seed)
    bounds, total = [], 0.0
    for share, make in MIX:
        total += share
        bounds.append((total, make))
    with open(path, "w") as out:
        for _ in range(count):
            x = rnd.random() * total
            make = next(make for bound, make in bounds if x < bound)
            out.write(make(rnd, records) + "\n")


def free_port():
    """A free UDP port on loopback (for servers that take a port in their config)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def knot(workdir, zone, port):
    d = os.path.join(workdir, "knot")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "knot.conf"), "w") as f:
        f.write(f"""server:
    rundir: "{d}"
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "{d}"
log:
  - target: stderr
    any: warning
zone:
  - domain: {ORIGIN}
    file: "{zone}"
    journal-content: none
    zonefile-sync: -1
""")
    return ["knotd", "-c", os.path.join(d, "knot.conf")]


def nsd(workdir, zone, port):
    d = os.path.join(workdir, "nsd")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "nsd.conf"), "w") as f:
        f.write(f"""server:
    ip-address: 127.0.0.1@{port}
    server-count: 1
    username: ""
    chroot: ""
    zonesdir: "{d}"
    database: ""
    pidfile: "{d}/nsd.pid"
    xfrdfile: "{d}/xfrd.state"
    zonelistfile: "{d}/zone.list"
    verbosity: 0
    # Debian's NSD limits responses per client network by default (200 a
    # second); every query here comes from one address.
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
zone:
    name: {ORIGIN}
    zonefile: "{zone}"
""")
    return ["nsd", "-d", "-c", os.path.join(d, "nsd.conf")]


def bind(workdir, zone, port):
    d = os.path.join(workdir, "bind")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "named.conf"), "w") as f:
        f.write(f"""options {{
    directory "{d}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    pid-file none;
    recursion no;
    dnssec-validation no;
}};
zone "{ORIGIN}" {{ type primary; file "{zone}"; }};
""")
    return ["named", "-g", "-4", "-n", "1", "-U", "1", "-c", os.path.join(d, "named.conf")]


def pdns(workdir, zone, port):
    d = os.path.join(workdir, "pdns")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "named.conf"), "w") as f:
        f.write(f'zone "{ORIGIN}" {{ type master; file "{zone}"; }};\n')
    with open(os.path.join(d, "pdns.conf"), "w") as f:
        f.write(f"""launch=bind
bind-config={d}/named.conf
bind-check-interval=0
local-address=127.0.0.1
local-port={port}
socket-dir={d}
receiver-threads=1
distributor-threads=1
daemon=no
guardian=no
disable-syslog=yes
loglevel=3
""")
    return ["pdns_server", f"--config-dir={d}"]


def ferrodns(workdir, zone, port):
    return [BINARY, "serve", "--dns-listen", f"127.0.0.1:{port}", "--api-listen", "off",
            "--zone-file", zone, "--udp-cpu-pin", "online"]


SERVERS = {"knot": knot, "nsd": nsd, "bind": bind, "pdns": pdns, "ferrodns": ferrodns}


def wait_ready(port, timeout=120, proc=None):
    """Seconds until the server answers a host's A query, or None if it exits or
    does not answer within `timeout`."""
    started = time.time()
    while time.time() - started < timeout:
        if proc is not None and proc.poll() is not None:
            return None
        out = subprocess.run(["dig", "+short", "+time=1", "+tries=1", "-p", str(port), "@127.0.0.1",
                              f"h1.{ORIGIN}", "A"], capture_output=True, text=True).stdout.strip()
        if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", out.split("\n")[0]):
            return time.time() - started
        time.sleep(0.2)
    return None


def session_procs(sid):
    """The pids of session `sid`: the server and whatever it started."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            pids.append(int(entry))
    return pids


def session_cpu(sid):
    """(user, kernel) CPU seconds the session has used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    user = kernel = 0
    for pid in session_procs(sid):
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])
        kernel += int(fields[12])
    return user / ticks, kernel / ticks


def session_pss_kib(sid):
    """Proportional set size of the session (pages its processes share count once)."""
    total = 0
    for pid in session_procs(sid):
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += sum(int(line.split()[1]) for line in f if line.startswith("Pss:"))
        except OSError:
            pass
    return total


def dnsperf_figures(text):
    def find(pattern, default):
        m = re.search(pattern, text)
        return m.group(1) if m else default
    return {
        "qps": float(find(r"Queries per second:\s+([\d.]+)", 0)),
        "completed": int(find(r"Queries completed:\s+(\d+)", 0)),
        "lost_pct": float(find(r"Queries lost:\s+\d+ \(([\d.]+)%\)", 100)),
        "avg_latency_ms": float(find(r"Average Latency \(s\):\s+([\d.]+)", 0)) * 1000,
        "rcodes": find(r"Response codes:\s+(.*)", "").strip(),
    }


def run_one(name, cmd, port, qfile, settings, workdir, before=None):
    """Starts `cmd` on the server CPU, waits for its first answer, calls
    `before(port)` if given (fwdbench fills a cache with it), runs dnsperf
    against it and returns the figures (or {"name", "error"})."""
    log = open(os.path.join(workdir, f"{name}.log"), "w")
    started = time.time()
    proc = subprocess.Popen(["taskset", "-c", settings.server_cpu] + cmd, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        if wait_ready(port, settings.start_timeout, proc) is None:
            return {"name": name, "error": f"not answering within {settings.start_timeout} s; see {log.name}"}
        load_s = time.time() - started
        if before is not None:
            before(port)
        cpu_before = session_cpu(proc.pid)
        perf = subprocess.run(
            ["taskset", "-c", settings.client_cpu, "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", qfile,
             "-l", str(settings.duration), "-c", str(settings.clients), "-q", str(settings.outstanding), "-T", "1",
             "-m", settings.mode] + (["-Q", str(settings.max_qps)] if settings.max_qps else []),
            capture_output=True, text=True)
        after = session_cpu(proc.pid)
        user, kernel = after[0] - cpu_before[0], after[1] - cpu_before[1]
        figures = dnsperf_figures(perf.stdout)
        answers = max(figures["completed"], 1)
        figures.update(
            name=name, load_s=round(load_s, 2), mem_mib=round(session_pss_kib(proc.pid) / 1024, 1),
            server_cpu_s=round(user + kernel, 2),
            answers_per_cpu_s=round(figures["completed"] / (user + kernel)) if user + kernel > 0 else None,
            user_us_per_answer=round(user / answers * 1e6, 2), sys_us_per_answer=round(kernel / answers * 1e6, 2))
        return figures
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def table(results, reference="knot"):
    """The figures as a Markdown table, efficiency relative to `reference`."""
    base = next((r for r in results if r["name"] == reference and r.get("answers_per_cpu_s")), None)
    rows = [f"| server | qps | lost % | answers/CPU-s | eff/{reference} | usr us | sys us | mem MiB | load s | "
            "rcodes |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            rows.append(f"| {r['name']} | error: {r['error']} |")
            continue
        eff = f"{r['answers_per_cpu_s'] / base['answers_per_cpu_s']:.2f}" if base and r["answers_per_cpu_s"] else ""
        rows.append(f"| {r['name']} | {r['qps']:.0f} | {r['lost_pct']:.2f} | {r['answers_per_cpu_s']} | {eff} | "
                    f"{r['user_us_per_answer']} | {r['sys_us_per_answer']} | {r['mem_mib']} | {r['load_s']} | "
                    f"{r['rcodes']} |")
    return "\n".join(rows)


def add_measurement_args(ap, start_timeout, transport=True):
    """The options of run_one's measurement, which every bench built on it
    takes: dnsperf's load, the CPUs, how long a server may take to start,
    the work directory; with `transport`, dnsperf's --mode (udp or tcp)."""
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--outstanding", type=int, default=256)
    ap.add_argument("--max-qps", type=int, help="dnsperf -Q: the same offered load for every server")
    if transport:
        ap.add_argument("--mode", choices=["udp", "tcp"], default="udp")
    ap.add_argument("--server-cpu", default="1")
    ap.add_argument("--client-cpu", default="0")
    ap.add_argument("--start-timeout", type=int, default=start_timeout)
    ap.add_argument("--workdir")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="knot,nsd,bind,pdns,ferrodns",
                    help="comma-separated: " + ", ".join(SERVERS) + ", custom")
    ap.add_argument("--custom-cmd", help="the custom server's command, with placeholders (above)")
    ap.add_argument("--custom-name", default="custom")
    ap.add_argument("--records", type=int, default=100_000)
    add_measurement_args(ap, start_timeout=300)
    ap.add_argument("--json", help="also write the figures here")
    a = ap.parse_args()
    workdir = a.workdir or tempfile.mkdtemp(prefix="authbench-")
    os.makedirs(workdir, exist_ok=True)
    zone, qfile = os.path.join(workdir, "bench.zone"), os.path.join(workdir, "queries.txt")
    gen_zone(zone, a.records)
    gen_queries(qfile, a.records)
    results = []
    for name in a.servers.split(","):
        port = free_port()
        if name == "custom":
            if not a.custom_cmd:
                sys.exit("--servers custom needs --custom-cmd")
            own = os.path.join(workdir, a.custom_name)
            os.makedirs(own, exist_ok=True)
            cmd = a.custom_cmd.format(zone=zone, origin=ORIGIN, port=port, workdir=own).split()
            name = a.custom_name
        elif name in SERVERS:
            cmd = SERVERS[name](workdir, zone, port)
        else:
            sys.exit(f"unknown server {name}")
        print(f"{name}: running", file=sys.stderr)
        results.append(run_one(name, cmd, port, qfile, a, workdir))
    print(f"{a.records} records, {a.duration} s of dnsperf ({a.clients} clients, {a.outstanding} outstanding), "
          f"{a.mode}, server on CPU {a.server_cpu}, client on CPU {a.client_cpu}")
    print(table(results))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
