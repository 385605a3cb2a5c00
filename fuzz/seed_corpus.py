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
