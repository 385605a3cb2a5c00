#!/usr/bin/env python3
"""A slow-client attack on the API at full size, against a release build.

Starts `ferrodns serve` (zone-file mode plus the API) with --nofile
descriptors, then opens --connections half-sent HTTP requests to the API from
--attackers processes (each holds its share of the sockets, so no one process
needs more descriptors than this machine allows), spread over 16 loopback
source addresses. From the start of the attack until --seconds after every
attacker has its connections, a legitimate client asks the API's liveness
probe and a DNS query over TCP every 100 ms; the worst and the median latency
of each are printed. --header-timeout sets the server's --api-header-timeout
(60 s holds every attack connection at once; the default, 10 s, closes the
oldest while the attack is still opening more).

  bench/slowclients.py --connections 20000 --attackers 2

Needs a release build (FERRODNS_BINARY=path runs another) and prlimit.
"""
import argparse, multiprocessing, os, re, socket, statistics, struct, subprocess, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.environ.get("FERRODNS_BINARY", os.path.join(ROOT, "target", "release", "ferrodns"))


def attacker(api_port, count, index, ready, stop):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    held = []
    for i in range(count):
        s = socket.socket()
        try:
            s.bind((f"127.0.0.{2 + (index * count + i) % 16}", 0))
            s.settimeout(1)
            s.connect(("127.0.0.1", api_port))
            s.sendall(b"GET /v1/zones HTTP/1.1\r\nHost: slow\r\n")
            held.append(s)
        except OSError:
            s.close()
    ready.put(len(held))
    stop.wait()


def probe_api(port):
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(b"GET /v1/health/live HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
        reply = s.recv(64)
    if not reply.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"API answered {reply!r}")
    return time.perf_counter() - start


def probe_dns(port):
    query = struct.pack(">HHHHHH", 7, 0, 1, 0, 0, 0) + b"\x04slow\x04test\x00" + struct.pack(">HH", 6, 1)
    start = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
        s.sendall(struct.pack(">H", len(query)) + query)
        if len(s.recv(2)) != 2:
            raise RuntimeError("no DNS answer")
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=20000)
    ap.add_argument("--attackers", type=int, default=2)
    ap.add_argument("--nofile", type=int, default=20000, help="the server's descriptor limit")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--header-timeout", type=int, default=60)
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="slowclients-")
    zone = os.path.join(d, "slow.test.zone")
    open(zone, "w").write("$ORIGIN slow.test.\n@ 300 IN SOA ns hostmaster 1 60 60 600 60\n@ NS ns\nns A 192.0.2.1\n")
    log = open(os.path.join(d, "log"), "w")
    server = subprocess.Popen(["prlimit", f"--nofile={a.nofile}:{a.nofile}", "--", BINARY, "serve",
                               "--dns-listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0", "--data-dir", d,
                               "--zone-file", zone, "--udp-workers", "1", "--api-header-timeout",
                               str(a.header_timeout)], stdout=log, stderr=log)
    try:
        deadline = time.time() + 30
        while True:
            text = open(os.path.join(d, "log")).read()
            dns = re.search(r"serving DNS[^\n]*? dns=\[127\.0\.0\.1:(\d+)", text)
            api = re.search(r"serving the API api=127\.0\.0\.1:(\d+)", text)
            if dns and api:
                dns_port, api_port = int(dns.group(1)), int(api.group(1))
                break
            if time.time() > deadline or server.poll() is not None:
                raise SystemExit("ferrodns did not start:\n" + text)
            time.sleep(0.05)
        time.sleep(0.5)
        ready, stop = multiprocessing.Queue(), multiprocessing.Event()
        share = a.connections // a.attackers
        attackers = [multiprocessing.Process(target=attacker, args=(api_port, share, k, ready, stop))
                     for k in range(a.attackers)]
        started = time.time()
        for p in attackers:
            p.start()
        api_latencies, dns_latencies, failures = [], [], []
        held, reported, end = 0, 0, None
        while end is None or time.time() < end:
            for probe, port, out in ((probe_api, api_port, api_latencies), (probe_dns, dns_port, dns_latencies)):
                try:
                    out.append(probe(port))
                except Exception as e:  # noqa: BLE001 - every failure is reported
                    failures.append(f"{probe.__name__}: {e}")
            while not ready.empty():
                held += ready.get()
                reported += 1
            if end is None and reported == len(attackers):
                opened_in = time.time() - started
                end = time.time() + a.seconds
            time.sleep(0.1)
        stop.set()
        for p in attackers:
            p.join()
        ms = lambda xs: f"median {statistics.median(xs) * 1000:.2f} ms, worst {max(xs) * 1000:.2f} ms" if xs else "none"
        print(f"{a.connections} attack connections from {a.attackers} processes, {held} connected in {opened_in:.1f} s; "
              f"server descriptors {a.nofile}, header timeout {a.header_timeout} s; probes from the first "
              f"connection to {a.seconds} s after the last")
        print(f"API liveness, {len(api_latencies)} probes: {ms(api_latencies)}")
        print(f"DNS over TCP, {len(dns_latencies)} probes: {ms(dns_latencies)}")
        print(f"failed probes: {len(failures)} {failures[:5]}")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
