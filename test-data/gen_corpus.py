#!/usr/bin/env python3
"""Writes test-data/queries/corpus.txt, the differential test's query list.

One query per line: `<qname> <qtype> [noedns] [edns=SIZE] [tcp] [class=CLASS]
[nsid] [notify]`. Without a flag the query carries EDNS with a 1232-octet
buffer, asks for no NSID, is opcode QUERY in class IN, and goes over UDP.
The list is every name of interest crossed with every type of interest, plus
mixed-case spellings, queries without EDNS for the large RRsets, small EDNS
buffers, and TCP. The output is committed; rerun this after changing it.
"""
import os, random

NAMES = """
example.com. www.example.com. mixed.example.com. MiXeD.example.com. short.example.com. ns1.example.com. mail.example.com.
alias.example.com. chain1.example.com. chain2.example.com. loop1.example.com. selfloop.example.com. dangling.example.com.
ext.example.com. extnx.example.com. outside.example.com. tochild.example.com. todeleg.example.com. towild.example.com.
todn.example.com. foo.wild.example.com. a.b.wild.example.com. wild.example.com. sub.wild.example.com. x.sub.wild.example.com.
*.wild.example.com. q.cnwild.example.com. q.cnwild2.example.com. z.ent3.example.com. q.ent3.example.com. y.z.ent3.example.com.
w.z.ent3.example.com. b.ent.example.com. ent.example.com. a.b.ent.example.com. nx.a.b.ent.example.com. deleg.example.com.
ns1.deleg.example.com. host.deleg.example.com. a.b.deleg.example.com. nods.example.com. x.nods.example.com.
extdeleg.example.com. child.example.com. www.child.example.com. x.child.example.com. ns1.child.example.com.
dn.example.com. www.dn.example.com. a.b.dn.example.com. alias.dn.example.com. nothere.dn.example.com. dnloc.example.com.
x.dnloc.example.com. nope.dnloc.example.com. dnnx.example.com. x.dnnx.example.com. target.example.com. bigtxt.example.com.
hugetxt.example.com. manya.example.com. _sip._udp.example.com. _udp.example.com. ptr.example.com. naptr.example.com.
sshfp.example.com. _443._tcp.www.example.com. _tcp.www.example.com. svc.example.com. web.example.com. hinfo.example.com.
unknown.example.com. escaped.example.com. nonexistent.example.com. nx.nx.example.com. sipserver.example.com.
example.net. www.example.net. alias.example.net. back.example.net. nothere.example.net. ns1.example.net. host.example.net.
example.org. www.example.org. com. .
""".split()

TYPES = "A AAAA NS SOA MX TXT CNAME DS ANY SRV PTR CAA NAPTR SSHFP TLSA SVCB HTTPS DNAME HINFO TYPE65000 TYPE65001 TYPE12345".split()

def mangle(name, rnd):
    return "".join(c.upper() if rnd.random() < 0.5 else c.lower() for c in name)

def main():
    rnd = random.Random(7)
    lines = []
    for name in NAMES:
        for qtype in TYPES:
            lines.append(f"{name} {qtype}")
    for name in NAMES:
        for qtype in rnd.sample(TYPES[:9], 3):
            lines.append(f"{mangle(name, rnd)} {qtype}")
    for name in ["bigtxt.example.com.", "hugetxt.example.com.", "manya.example.com.", "example.com.", "deleg.example.com.",
                 "www.deleg.example.com.", "foo.wild.example.com.", "nonexistent.example.com.", "chain1.example.com."]:
        for qtype in ["A", "TXT", "ANY", "NS", "MX"]:
            lines.append(f"{name} {qtype} noedns")
            lines.append(f"{name} {qtype} edns=512")
            lines.append(f"{name} {qtype} tcp")
    for name in ["hugetxt.example.com.", "bigtxt.example.com.", "manya.example.com."]:
        for size in (600, 1000, 1400, 4096):
            lines.append(f"{name} ANY edns={size}")
            lines.append(f"{name} TXT edns={size}")
            lines.append(f"{name} A edns={size}")
    # The server's identity in class CH, NSID, transfers over UDP and TCP
    # (none allowed), and NOTIFY from a stranger (issue 18's protocol details).
    for name in ["id.server.", "hostname.bind.", "ID.Server.", "version.bind.", "version.server.", "authors.bind.",
                 "foo.id.server.", "server.", "example.com.", "www.example.com."]:
        for qtype in ["TXT", "A", "ANY"]:
            lines.append(f"{name} {qtype} class=CH")
        lines.append(f"{name} TXT class=CH noedns")
        lines.append(f"{name} TXT class=CH tcp")
        lines.append(f"{name} TXT class=CH nsid")
    for name in ["id.server.", "www.example.com."]:
        lines.append(f"{name} TXT class=HS")
    for name in ["www.example.com.", "example.org.", "nonexistent.example.com.", "deleg.example.com.", "bigtxt.example.com."]:
        for qtype in ["A", "TXT", "NS"]:
            lines.append(f"{name} {qtype} nsid")
        lines.append(f"{name} A nsid tcp")
        lines.append(f"{name} A nsid noedns")
    for name in ["example.com.", "example.net.", "child.example.com.", "example.org."]:
        for transport in ["", " noedns", " nsid"]:
            lines.append(f"{name} AXFR{transport}")
        lines.append(f"{name} AXFR tcp")
        for edns in ["", " noedns"]:
            lines.append(f"{name} SOA notify{edns}")
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "queries", "corpus.txt"), "w") as f:
        f.write("# Generated by test-data/gen_corpus.py; one query per line: qname qtype [noedns] [edns=SIZE] [tcp] [class=CLASS] [nsid] [notify]\n")
        f.write("\n".join(lines) + "\n")
    print(len(lines), "queries")

if __name__ == "__main__":
    main()
