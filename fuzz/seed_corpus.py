#!/usr/bin/env python3
"""Seeds fuzz/corpus: 200 queries built from the differential corpus, and the test zones."""
import os, random, shutil, struct

here = os.path.dirname(os.path.abspath(__file__))
data = os.path.join(here, "..", "test-data")
os.makedirs(os.path.join(here, "corpus", "query"), exist_ok=True)
os.makedirs(os.path.join(here, "corpus", "masterfile"), exist_ok=True)
for name in os.listdir(os.path.join(data, "zones")):
    shutil.copy(os.path.join(data, "zones", name), os.path.join(here, "corpus", "masterfile", name))

def wire(name):
    if name == ".":
        return b"\0"
    return b"".join(bytes([len(l)]) + l.encode() for l in name.rstrip(".").split(".")) + b"\0"

names = [l.split()[0] for l in open(os.path.join(data, "queries", "corpus.txt")) if l.strip() and not l.startswith("#")]
rnd = random.Random(1)
for i, name in enumerate(rnd.sample(names, 200)):
    query = struct.pack(">HHHHHH", i, 0x0100, 1, 0, 0, 1) + wire(name)
    query += struct.pack(">HH", rnd.choice([1, 2, 5, 6, 15, 16, 28, 33, 43, 255, 65]), 1)
    query += b"\0" + struct.pack(">HHIH", 41, 1232, 0, 0)
    with open(os.path.join(here, "corpus", "query", f"seed{i}"), "wb") as f:
        f.write(query)


# Seeds for the targets whose corpora are kept in the repository
# (fuzz/corpus/<target>, replayed by crates/ferrodns/tests/fuzz_regressions.rs).
def seed(target, name, data):
    os.makedirs(os.path.join(here, "corpus", target), exist_ok=True)
    with open(os.path.join(here, "corpus", target, name), "wb") as f:
        f.write(data)

def header(qid, flags, qd=1, an=0, ns=0, ar=0):
    return struct.pack(">HHHHHH", qid, flags, qd, an, ns, ar)

def rr(owner, rtype, ttl, rdata, klass=1):
    return owner + struct.pack(">HHIH", rtype, klass, ttl, len(rdata)) + rdata

def soa(serial):
    return wire("ns.example.com.") + wire("hostmaster.example.com.") + struct.pack(">IIIII", serial, 3600, 600, 86400, 300)

edns = b"\0" + struct.pack(">HHIH", 41, 1232, 0, 0)
for i, name in enumerate(rnd.sample(names, 40)):
    qtype = rnd.choice([1, 2, 5, 6, 15, 16, 28, 33, 39, 43, 255])
    seed("answer_udp", f"seed{i}", header(i, 0x0100, ar=i % 2) + wire(name) + struct.pack(">HH", qtype, 1) + (edns if i % 2 else b""))

# A TSIG record with a MAC that will not verify: the BADSIG path.
tsig_rdata = wire("hmac-sha256.") + struct.pack(">HIH", 0, 1_800_000_000, 300) + struct.pack(">H", 32) + b"\x11" * 32 + struct.pack(">HHH", 7, 0, 0)
tsig_rr = rr(wire("fuzz-key."), 250, 0, tsig_rdata, klass=255)
for i, zone in enumerate(["example.com.", "example.net.", "child.example.com."]):
    apex = wire(zone)
    seed("hand_off", f"axfr{i}", header(10 + i, 0) + apex + struct.pack(">HH", 252, 1))
    seed("hand_off", f"ixfr{i}", header(20 + i, 0, ns=1) + apex + struct.pack(">HH", 251, 1) + rr(apex, 6, 3600, soa(i)))
    seed("hand_off", f"notify{i}", header(30 + i, 0x2400, an=1) + apex + struct.pack(">HH", 6, 1) + rr(apex, 6, 3600, soa(7)))
    seed("hand_off", f"signed{i}", header(40 + i, 0, ar=1) + apex + struct.pack(">HH", 252, 1) + tsig_rr)
    seed("tsig", f"signed{i}", header(40 + i, 0x8400, an=1, ar=1) + apex + struct.pack(">HH", 6, 1) + rr(apex, 6, 3600, soa(3)) + tsig_rr)
    seed("tsig", f"plain{i}", header(50 + i, 0) + apex + struct.pack(">HH", 6, 1))
    # A primary's answers: an SOA, and a small AXFR with compressed names.
    seed("transfer_client", f"soa{i}", header(60 + i, 0x8400, an=1) + apex + struct.pack(">HH", 6, 1) + rr(b"\xc0\x0c", 6, 3600, soa(5)))
    axfr = rr(b"\xc0\x0c", 6, 3600, soa(5)) + rr(b"\xc0\x0c", 2, 3600, wire("ns.") ) + rr(b"\x03www\xc0\x0c", 1, 300, bytes([192, 0, 2, i]))
    axfr += rr(b"\xc0\x0c", 15, 300, struct.pack(">H", 10) + b"\x04mail\xc0\x0c") + rr(b"\xc0\x0c", 6, 3600, soa(5))
    seed("transfer_client", f"axfr{i}", header(70 + i, 0x8400, an=5) + apex + struct.pack(">HH", 252, 1) + axfr)
bodies = [
    {"changes": [{"action": "upsert", "name": "www", "type": "A", "ttl": 60, "records": ["192.0.2.9"]}]},
    {"changes": [{"action": "create", "name": "new", "type": "CNAME", "ttl": 60, "records": ["www"]}]},
    {"changes": [{"action": "upsert", "name": "d", "type": "DNAME", "ttl": 60, "records": ["a.example.", "b.example."]}]},
    {"changes": [{"action": "delete", "name": "www", "type": "A"}, {"action": "create", "name": "www", "type": "CNAME", "ttl": 60, "records": ["alias"]}]},
    {"changes": [{"action": "upsert", "name": "sub", "type": "DS", "ttl": 60, "records": ["2 8 2 ABCD"]}, {"action": "upsert", "name": "x.sub", "type": "A", "ttl": 60, "records": ["192.0.2.4"]}]},
    {"changes": [{"action": "upsert", "name": "*.wild", "type": "MX", "ttl": 60, "records": ["10 mail"]}]},
    {"changes": [{"action": "delete", "name": "@", "type": "NS"}]},
    {"changes": [{"action": "upsert", "name": "@", "type": "SOA", "ttl": 60, "records": ["a. b. 1 2 3 4 5"]}]},
    {"changes": [{"action": "upsert", "name": "t", "type": "TXT", "ttl": 60, "records": ["\"v=spf1 mx -all\"", "one"]}]},
]
import json
for i, body in enumerate(bodies):
    seed("api_json", f"batch{i}", json.dumps(body).encode())
