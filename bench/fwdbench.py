#!/usr/bin/env python3
"""Forwarding and the cache: ferrodns's forward zones against Unbound, dnsdist, PowerDNS
Recursor and Knot Resolver, each forwarding one zone to the same Knot upstream.

Knot serves authbench's zone (bench/authbench.py, --records hosts) on the client's CPU;
each subject forwards bench.test. to it, runs pinned to --server-cpu with one worker where
it has the setting, and answers dnsperf on --client-cpu. Only the subject's CPU is
counted.

  hit   asks --names names once to fill the cache (90 % hosts that exist, 10 % names that
        do not), then for --duration seconds only those: the cache's answer path.
  miss  asks names never asked before (each a new name under the zone's wildcard, so
        every one exists upstream): the forwarding path.

  bench/fwdbench.py --mode hit                  # unbound,dnsdist,pdns-recursor,kresd,ferrodns
  bench/fwdbench.py --mode miss --servers unbound,ferrodns
  bench/fwdbench.py --mode hit --max-qps 20000  # the same offered load for every subject

`ferrodns` runs FERRODNS_BINARY (default target/release/ferrodns); `custom` runs
--custom-cmd with {port}, {upstream} (ADDR:PORT), {zone} (the forwarded zone) and
{workdir} filled in.

Needs (Debian): dnsperf bind9-dnsutils knot, and the subjects: unbound dnsdist
pdns-recursor knot-resolver.
"""
import argparse, os, random, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import authbench  # noqa: E402

ORIGIN = authbench.ORIGIN


def unbound(d, port, upstream):
    with open(f"{d}/unbound.conf", "w") as f:
        f.write(f"""server:
    interface: 127.0.0.1@{port}
    num-threads: 1
    do-daemonize: no
    username: ""
    chroot: ""
    directory: "{d}"
    pidfile: "{d}/unbound.pid"
    use-syslog: no
    logfile: ""
    verbosity: 0
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    module-config: "iterator"
    do-not-query-localhost: no
    qname-minimisation: no
    msg-cache-size: 128m
    rrset-cache-size: 256m
    # test. is special-use (RFC 6761): Unbound answers it itself unless told.
    local-zone: "test." nodefault
forward-zone:
    name: "{ORIGIN}"
    forward-addr: {upstream.replace(':', '@')}
""")
    return ["unbound", "-d", "-c", f"{d}/unbound.conf"]


def dnsdist(d, port, upstream):
    with open(f"{d}/dnsdist.conf", "w") as f:
        f.write(f"""setSecurityPollSuffix("")
setLocal("127.0.0.1:{port}")
setACL({{"127.0.0.0/8"}})
newServer({{address="{upstream}"}})
getPool(""):setCache(newPacketCache(1000000, {{maxTTL=86400}}))
""")
    return ["dnsdist", "--supervised", "--disable-syslog", "-C", f"{d}/dnsdist.conf"]


def pdns_recursor(d, port, upstream):
    with open(f"{d}/recursor.conf", "w") as f:
        f.write(f"""local-address=127.0.0.1
local-port={port}
forward-zones={ORIGIN}={upstream}
threads=1
pdns-distributes-queries=no
socket-dir={d}
daemon=no
allow-from=127.0.0.0/8
dnssec=off
security-poll-suffix=
disable-syslog=yes
loglevel=3
""")
    return ["pdns_recursor", f"--config-dir={d}"]


def kresd(d, port, upstream):
    address, upstream_port = upstream.rsplit(":", 1)
    with open(f"{d}/kresd.conf", "w") as f:
        f.write(f"""net.listen('127.0.0.1', {port}, {{ kind = 'dns' }})
trust_anchors.remove('.')
cache.open(256 * MB, 'lmdb://{d}/cache')
policy.add(policy.suffix(policy.FORWARD({{'{address}@{upstream_port}'}}), {{todname('{ORIGIN}')}}))
""")
    return ["kresd", "-n", "-c", f"{d}/kresd.conf", d]


def ferrodns(d, port, upstream):
    return [authbench.BINARY, "serve", "--dns-listen", f"127.0.0.1:{port}", "--api-listen", "off",
            "--data-dir", d, "--forward-zone", f"{ORIGIN}={upstream}"]


SUBJECTS = {"unbound": unbound, "dnsdist": dnsdist, "pdns-recursor": pdns_recursor, "kresd": kresd,
            "ferrodns": ferrodns}


def hit_names(path, records, names, seed=3):
    """`names` queries, 90 % hosts of the zone and 10 % names it does not have."""
    rnd = random.Random(seed)
    with open(path, "w") as out:
        for _ in range(names):
            if rnd.random() < 0.9:
                out.write(f"h{rnd.randrange(records)}.{ORIGIN} A\n")
            else:
                out.write(f"no{rnd.randrange(1 << 30)}.{ORIGIN} A\n")


def miss_names(path, count):
    """`count` names, each asked once, all under the zone's wildcard."""
    with open(path, "w") as out:
        for i in range(count):
            out.write(f"m{i}.wild.{ORIGIN} A\n")


def warm(port, qfile, settings):
    """Asks every name of `qfile` once, at a pace the subject can take."""
    subprocess.run(["taskset", "-c", settings.client_cpu, "dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", qfile,
                    "-n", "1", "-c", "1", "-q", "64", "-T", "1"], capture_output=True, text=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default="unbound,dnsdist,pdns-recursor,kresd,ferrodns",
                    help="comma-separated: " + ", ".join(SUBJECTS) + ", custom")
    ap.add_argument("--mode", choices=["hit", "miss"], default="hit")
    ap.add_argument("--custom-cmd")
    ap.add_argument("--custom-name", default="custom")
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--names", type=int, default=50_000, help="hit mode: the names the cache holds")
    # Its --mode is hit or miss; dnsperf always asks over UDP.
    authbench.add_measurement_args(ap, start_timeout=120, transport=False)
    a = ap.parse_args()
    workdir = a.workdir or tempfile.mkdtemp(prefix="fwdbench-")
    zone = os.path.join(workdir, "bench.zone")
    authbench.gen_zone(zone, a.records)
    qfile = os.path.join(workdir, "queries.txt")
    if a.mode == "hit":
        hit_names(qfile, a.records, a.names)
    else:
        # More names than the fastest subject answers in --duration seconds.
        miss_names(qfile, 400_000 * a.duration)

    # The upstream: Knot on the client's CPU, for as long as the run lasts.
    up_port = authbench.free_port()
    up_cmd = authbench.knot(workdir, zone, up_port)
    upstream = subprocess.Popen(["taskset", "-c", a.client_cpu] + up_cmd, stdout=subprocess.DEVNULL,
                                stderr=subprocess.STDOUT, start_new_session=True)
    results = []
    try:
        if authbench.wait_ready(up_port, a.start_timeout, upstream) is None:
            sys.exit("the Knot upstream does not answer")
        for name in a.servers.split(","):
            port = authbench.free_port()
            own = os.path.join(workdir, name if name != "custom" else a.custom_name)
            os.makedirs(own, exist_ok=True)
            if name == "custom":
                if not a.custom_cmd:
                    sys.exit("--servers custom needs --custom-cmd")
                cmd = a.custom_cmd.format(port=port, upstream=f"127.0.0.1:{up_port}", zone=ORIGIN,
                                          workdir=own).split()
                name = a.custom_name
            elif name in SUBJECTS:
                cmd = SUBJECTS[name](own, port, f"127.0.0.1:{up_port}")
            else:
                sys.exit(f"unknown subject {name}")
            print(f"{name}: running", file=sys.stderr)
            settings = argparse.Namespace(server_cpu=a.server_cpu, client_cpu=a.client_cpu,
                                          start_timeout=a.start_timeout, duration=a.duration, clients=a.clients,
                                          outstanding=a.outstanding, mode="udp", max_qps=a.max_qps)
            before = (lambda p: warm(p, qfile, settings)) if a.mode == "hit" else None
            results.append(authbench.run_one(name, cmd, port, qfile, settings, workdir, before=before))
    finally:
        os.killpg(upstream.pid, 15)
        upstream.wait()
    print(f"{a.mode}: {a.records} records upstream, {a.duration} s of dnsperf ({a.clients} clients, "
          f"{a.outstanding} outstanding), subject on CPU {a.server_cpu}, client and upstream on CPU {a.client_cpu}")
    print(authbench.table(results, reference="unbound"))


if __name__ == "__main__":
    main()
