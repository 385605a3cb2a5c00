#!/usr/bin/env python3
"""Many-zones mode for bench/authbench.py: N small zones instead of one big one.

Every zone z<i>.test. holds an SOA, an NS, an A and an AAAA at its apex. Each server is
configured with all N zones, pinned and measured exactly as authbench does (its run_one:
same dnsperf flags, CPU accounting and PSS), and is counted as loaded only when the first,
the middle and the last zone all answer. The query mix spreads over every zone:

  50 % A at an apex, 25 % AAAA, 10 % NS, 5 % SOA, 10 % names under an apex that do not exist.

  python3 bench/manyzones.py --zones 100000 --servers knot,nsd,custom --custom-name ferrodns \\
      --custom-cmd 'target/release/ferrodns serve --dns-listen 127.0.0.1:{port} --api-listen off --zone-file {zones}'

{zones} is the directory of zone files (one `<name>.zone` each), {port} the port.
"""
import argparse, json, os, random, shutil, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import authbench  # noqa: E402


def zone_name(i):
    return f"z{i}.test."


def gen_zones(d, n):
    os.makedirs(d, exist_ok=True)
    for i in range(n):
        name = zone_name(i)
        with open(f"{d}/{name}zone", "w") as f:
            f.write(f"$ORIGIN {name}\n$TTL 3600\n")
            f.write("@ IN SOA ns1.bench-dns.net. hostmaster.bench-dns.net. 1 7200 3600 1209600 300\n")
            f.write("@ IN NS ns1.bench-dns.net.\n")
            f.write(f"@ IN A 10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}\n")
            f.write(f"@ IN AAAA 2001:db8::{i >> 16:x}:{i & 0xffff:x}\n")


def gen_queries(path, n, count=200000, seed=2):
    rnd = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(count):
            r, z = rnd.random(), zone_name(rnd.randrange(n))
            if r < 0.50:
                f.write(f"{z} A\n")
            elif r < 0.75:
                f.write(f"{z} AAAA\n")
            elif r < 0.85:
                f.write(f"{z} NS\n")
            elif r < 0.90:
                f.write(f"{z} SOA\n")
            else:
                f.write(f"nx{rnd.randrange(10**6)}.{z} A\n")


def cfg_knot(d, zones, n, port):
    os.makedirs(f"{d}/knot", exist_ok=True)
    with open(f"{d}/knot/knot.conf", "w") as f:
        f.write(f"""server:
    rundir: "{d}/knot"
    listen: 127.0.0.1@{port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: "{d}/knot"
log:
  - target: stderr
    any: warning
template:
  - id: default
    storage: "{zones}"
    file: "%s.zone"
    zonefile-sync: -1
    journal-content: none
zone:
""")
        for i in range(n):
            f.write(f"  - domain: {zone_name(i)}\n")
    return ["knotd", "-c", f"{d}/knot/knot.conf"]


def cfg_nsd(d, zones, n, port):
    os.makedirs(f"{d}/nsd", exist_ok=True)
    with open(f"{d}/nsd/nsd.conf", "w") as f:
        f.write(f"""server:
    ip-address: 127.0.0.1@{port}
    server-count: 1
    username: ""
    zonesdir: "{zones}"
    database: ""
    pidfile: "{d}/nsd/nsd.pid"
    xfrdfile: "{d}/nsd/xfrd.state"
    zonelistfile: "{d}/nsd/zone.list"
    verbosity: 0
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0
remote-control:
    control-enable: no
""")
        for i in range(n):
            f.write(f'zone:\n    name: "{zone_name(i)}"\n    zonefile: "{zone_name(i)}zone"\n')
    return ["nsd", "-d", "-c", f"{d}/nsd/nsd.conf"]


def cfg_bind(d, zones, n, port):
    os.makedirs(f"{d}/bind", exist_ok=True)
    with open(f"{d}/bind/named.conf", "w") as f:
        f.write(f"""options {{
    directory "{d}/bind";
    pid-file "{d}/bind/named.pid";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
}};
""")
        for i in range(n):
            f.write(f'zone "{zone_name(i)}" {{ type primary; file "{zones}/{zone_name(i)}zone"; }};\n')
    return ["named", "-g", "-n", "1", "-U", "1", "-c", f"{d}/bind/named.conf"]


def cfg_pdns(d, zones, n, port):
    os.makedirs(f"{d}/pdns", exist_ok=True)
    with open(f"{d}/pdns/named.conf", "w") as f:
        for i in range(n):
            f.write(f'zone "{zone_name(i)}" {{ type master; file "{zones}/{zone_name(i)}zone"; }};\n')
    open(f"{d}/pdns/pdns.conf", "w").write(f"""launch=bind
bind-config={d}/pdns/named.conf
local-address=127.0.0.1
local-port={port}
socket-dir={d}/pdns
receiver-threads=1
distributor-threads=1
loglevel=3
""")
    return ["pdns_server", f"--config-dir={d}/pdns", "--daemon=no", "--guardian=no", "--disable-syslog"]


SERVERS = {"knot": cfg_knot, "nsd": cfg_nsd, "bind": cfg_bind, "pdns": cfg_pdns}


def ready_when_all_answer(n):
    """authbench's readiness check, over the first, middle and last zone."""
    probes = [zone_name(0), zone_name(n // 2), zone_name(n - 1)]

    def wait_ready(port, timeout=120, proc=None):
        t0 = time.time()
        pending = list(probes)
        while time.time() - t0 < timeout:
            if proc is not None and proc.poll() is not None:
                return None
            r = subprocess.run(["dig", "+short", "+time=1", "+tries=1", "-p", str(port), "@127.0.0.1", pending[0], "A"],
                               capture_output=True, text=True)
            if r.stdout.strip().startswith("10."):
                pending.pop(0)
                if not pending:
                    return time.time() - t0
                continue
            time.sleep(0.2)
        return None

    return wait_ready


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zones", type=int, default=100000)
    ap.add_argument("--servers", default="knot,nsd,bind,pdns")
    ap.add_argument("--custom-cmd", help="command with {zones} {port} {workdir} placeholders")
    ap.add_argument("--custom-name", default="custom")
    authbench.add_measurement_args(ap, start_timeout=600)
    ap.add_argument("--json", help="write results here")
    a = ap.parse_args()
    d = a.workdir or tempfile.mkdtemp(prefix="manyzones-")
    zones, qfile = f"{d}/zones", f"{d}/queries.txt"
    t0 = time.time()
    gen_zones(zones, a.zones)
    gen_queries(qfile, a.zones)
    print(f"generated {a.zones} zones in {time.time() - t0:.1f} s under {zones}", flush=True)
    authbench.wait_ready = ready_when_all_answer(a.zones)
    results = []
    for name in [s for s in a.servers.split(",") if s]:
        port = authbench.free_port()
        if name in (a.custom_name, "custom"):
            if not a.custom_cmd:
                sys.exit("manyzones: --custom-cmd is required for a custom server")
            cmd = ["sh", "-c", "exec " + a.custom_cmd.format(zones=zones, port=port, workdir=d)]
            name = a.custom_name
        elif name in SERVERS:
            cmd = SERVERS[name](d, zones, a.zones, port)
            if not shutil.which(cmd[0]):
                results.append({"name": name, "error": "not installed"})
                continue
        else:
            sys.exit(f"manyzones: unknown server {name}")
        r = authbench.run_one(name, cmd, port, qfile, a, d)
        results.append(r)
        print(json.dumps(r), flush=True)
    base = next((r["answers_per_cpu_s"] for r in results if r.get("name") == "knot" and r.get("answers_per_cpu_s")), None)
    print(f"\n{a.zones} zones")
    print(f"{'server':10} {'qps':>10} {'eff/knot':>8} {'ans/cpu-s':>10} {'usr us':>7} {'sys us':>7} {'lost%':>6} {'lat ms':>7} {'mem MiB':>8} {'load s':>7}  rcodes")
    for r in results:
        if "error" in r:
            print(f"{r['name']:10} error: {r['error']}")
            continue
        ratio = f"{(r['answers_per_cpu_s'] or 0) / base:.2f}" if base else "-"
        print(f"{r['name']:10} {r['qps']:10.0f} {ratio:>8} {r['answers_per_cpu_s'] or 0:10} {r['user_us_per_answer']:7.2f} {r['sys_us_per_answer']:7.2f} {r['lost_pct']:6.2f} {r['avg_latency_ms']:7.3f} {r['mem_mib']:8.1f} {r['load_s']:7.2f}  {r['rcodes']}")
    if a.json:
        json.dump({"zones": a.zones, "duration": a.duration, "results": results}, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
