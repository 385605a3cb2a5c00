#!/usr/bin/env python3
"""What DNS cookies and response rate limiting cost on the answer path.

Runs authbench's measurement (the same zone, query mix, CPU pinning and
dnsperf load, through its own run_one) on Knot and on two builds of the same
ferrodns binary in one run, alternating them for --rounds rounds so that the
machine's drift spreads over both:

  plain      --cookies false, no RRL
  protected  --cookies true --rrl-rate 1000000 (the traffic stays under the
             limit, so every answer is checked and none is limited)

It prints each round and the median answers per CPU-second of each, and the
protected build's cost against the plain one. dnsperf sends no cookies, so
this measures the RRL check and the cookie option's parse; what answering a
cookie costs is measured with callgrind (docs/benchmarks.md).

  bench/protectbench.py --rounds 3
  bench/protectbench.py --rounds 3 --split    # also cookies alone and RRL alone
  bench/protectbench.py --udp-cpu-pin none    # ferrodns on authbench's server CPU, Knot on the client's
  bench/protectbench.py --rounds 3 --metrics  # counting for /metrics, on against off
  bench/protectbench.py --rounds 3 --query-log  # dnstap at 1 query in 100, against none

Knot keeps UDP worker i to online CPU i mod n, overriding taskset, so under
authbench its one worker runs on CPU 0 beside dnsperf, where loopback costs
about half the kernel time an answer costs across CPUs. By default this runs
ferrodns with --udp-cpu-pin online, which places its worker the same way,
and without busy polling, which on a CPU shared with the client spins away
the client's time (1.5x Knot with it, 2.2x without, on one host).

Needs: a release build, dnsperf, knot (as authbench does).
"""
import argparse, importlib.util, os, statistics, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.environ.get("FERRODNS_BINARY", os.path.join(ROOT, "target", "release", "ferrodns"))
AUTHBENCH = os.path.join(ROOT, "bench", "authbench.py")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--records", type=int, default=100000)
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--udp-cpu-pin", default="online", choices=["none", "allowed", "online"],
                    help="ferrodns's --udp-cpu-pin. Knot keeps its UDP worker to online CPU 0 whatever "
                         "taskset gave it, which is the client's CPU here; online places ferrodns's worker "
                         "the same way, none leaves it on the CPU authbench gives it (default: online)")
    ap.add_argument("--metrics", action="store_true",
                    help="instead, measure what counting for /metrics costs: --metrics false against "
                         "--metrics true (the default), both without cookies or RRL")
    ap.add_argument("--query-log", action="store_true",
                    help="instead, measure what the dnstap query log costs at 1 query in 100: no log against "
                         "--query-log file:... --query-log-sample 100, both without cookies or RRL")
    ap.add_argument("--split", action="store_true",
                    help="also run cookies alone and RRL alone, to tell their costs apart")
    a = ap.parse_args()
    spec = importlib.util.spec_from_file_location("authbench", AUTHBENCH)
    authbench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(authbench)
    settings = argparse.Namespace(server_cpu="1", client_cpu="0", start_timeout=300, duration=a.duration,
                                  clients=8, outstanding=256, mode="udp", max_qps=None)
    d = tempfile.mkdtemp(prefix="protectbench-")
    zone, qfile = f"{d}/bench.zone", f"{d}/queries.txt"
    authbench.gen_zone(zone, a.records)
    authbench.gen_queries(qfile, a.records)
    variants = {
        "plain": ["--cookies", "false"],
        "protected": ["--cookies", "true", "--rrl-rate", "1000000"],
    }
    if a.metrics:
        variants = {
            "plain": ["--cookies", "false", "--metrics", "false"],
            "metrics": ["--cookies", "false", "--metrics", "true"],
        }
    if a.query_log:
        variants = {
            "plain": ["--cookies", "false"],
            "querylog": ["--cookies", "false", "--query-log", f"file:{d}/queries.tap", "--query-log-sample", "100"],
        }
    if a.split:
        variants["cookies"] = ["--cookies", "true"]
        variants["rrl"] = ["--cookies", "false", "--rrl-rate", "1000000"]
    results = {name: [] for name in ["knot", *variants]}
    for round_number in range(a.rounds):
        for name in results:
            port = authbench.free_port()
            if name == "knot":
                cmd = authbench.SERVERS["knot"](d, zone, port)
            else:
                cmd = [BINARY, "serve", "--dns-listen", f"127.0.0.1:{port}", "--api-listen", "off",
                       "--zone-file", zone, "--udp-cpu-pin", a.udp_cpu_pin,
                       *variants[name]]
            r = authbench.run_one(name, cmd, port, qfile, settings, d)
            if "error" in r:
                sys.exit(f"{name}: {r['error']}")
            results[name].append(r["answers_per_cpu_s"])
            print(f"round {round_number + 1} {name:10} {r['answers_per_cpu_s']:>8} answers/CPU-s "
                  f"(user {r['user_us_per_answer']} us, sys {r['sys_us_per_answer']} us, lost {r['lost_pct']}%)",
                  flush=True)
    medians = {name: statistics.median(values) for name, values in results.items()}
    for name, value in medians.items():
        print(f"median {name:10} {value:>8.0f} answers/CPU-s  {value / medians['knot']:.2f}x Knot")
    for name in variants:
        if name != "plain":
            print(f"{name} costs {100 * (1 - medians[name] / medians['plain']):.1f}% of plain's efficiency")


if __name__ == "__main__":
    main()
