#!/usr/bin/env python3
"""Memory of a server while it sends a big zone by AXFR to several clients at once.

The zone is authbench's (bench/authbench.py, gen_zone): --records 1000000 gives
1.45 million records. The server loads it, settles, and its resident size is read (idle);
then N clients (kdig) each transfer the whole zone at the same time, while the server's
RSS is sampled every 5 ms; the figure is the peak above idle. Every client must receive
the whole zone (the record count is checked), or the run fails.

  python3 bench/axfrmem.py --records 1000000 --clients 2 \\
      --cmd 'target/release/ferrodns serve --dns-listen 127.0.0.1:{port} --api-listen off --zone-file {zone} --allow-transfer 127.0.0.1/32'

{zone} is the zone file, {port} the DNS port. Needs kdig (knot-dnsutils) and dig.
"""
import argparse, os, shlex, signal, subprocess, sys, tempfile, threading, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import authbench  # noqa: E402


def rss_kib(pid):
    """Resident size of `pid` and its children (the server forks none, but be fair to those that do)."""
    total = 0
    for p in authbench.session_procs(pid):
        try:
            for line in open(f"/proc/{p}/status"):
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1000000)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--cmd", required=True)
    ap.add_argument("--settle", type=float, default=3.0, help="seconds to wait after the zone answers")
    a = ap.parse_args()
    d = tempfile.mkdtemp(prefix="axfrmem-")
    zone = f"{d}/bench.test.zone"
    authbench.gen_zone(zone, a.records)
    expected = sum(1 for line in open(zone) if line[0] not in "$") + 1  # + the closing SOA
    port = authbench.free_port()
    cmd = shlex.split(a.cmd.format(zone=zone, port=port))
    log = open(f"{d}/server.log", "w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if authbench.wait_ready(port, 300, server) is None:
            sys.exit(f"server not answering; see {d}/server.log")
        time.sleep(a.settle)
        idle = rss_kib(server.pid)
        peak = idle
        done = threading.Event()

        def sample():
            nonlocal peak
            while not done.is_set():
                peak = max(peak, rss_kib(server.pid))
                time.sleep(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        t0 = time.time()
        clients = [
            subprocess.Popen(["kdig", "-p", str(port), "@127.0.0.1", "AXFR", authbench.ORIGIN, "+noall", "+answer",
                              "+time=60"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            for _ in range(a.clients)
        ]
        counts = [sum(1 for line in c.stdout if line.strip() and not line.startswith(";")) for c in clients]
        for c in clients:
            c.wait()
        elapsed = time.time() - t0
        done.set()
        sampler.join()
        print(f"records in the zone file: {expected - 1} (+1 closing SOA per transfer)")
        print(f"records received per client: {counts}")
        print(f"idle RSS: {idle / 1024:.1f} MiB; peak during {a.clients} transfers: {peak / 1024:.1f} MiB; "
              f"above idle: {(peak - idle) / 1024:.1f} MiB; transfers took {elapsed:.1f} s")
        if any(c != expected for c in counts):
            sys.exit("a client did not receive the whole zone")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)


if __name__ == "__main__":
    main()
