"""A lean HTTP/1.1 client for the write benchmarks' load: one kept-alive
connection, each request formatted from a few strings and each response
read by its status line and Content-Length.

The benchmarks run their load on the machine that runs the server. With
http.client (its header parsing, per response, outweighs a server's
change), eight writers took a quarter of two vCPUs in `apibench.py
--writers 8`, and at 100 requests a second a tenth of the CPU that
`controlbench.py --only underload` shares with dnsperf: the figures
measured the load generator as much as the server."""
import socket


class KeptAlive:
    """One connection to 127.0.0.1:`port`, sending `headers` (a dict) with
    every request."""

    def __init__(self, port, headers, timeout=30):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.head = "Host: 127.0.0.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self.pending = b""

    def request(self, method, path, body=b""):
        """Sends one request and reads its response: (status, body bytes).
        Responses must carry Content-Length (ferrodns's API does)."""
        self.sock.sendall(f"{method} {path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}\r\n\r\n".encode()
                          + body)
        while b"\r\n\r\n" not in self.pending:
            self.pending += self._recv()
        end = self.pending.index(b"\r\n\r\n") + 4
        lines = self.pending[:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                raise ValueError(f"{line!r}: this client reads Content-Length bodies only")
        if length is None:
            raise ValueError(f"{method} {path}: a response without Content-Length")
        while len(self.pending) < end + length:
            self.pending += self._recv()
        body, self.pending = self.pending[end:end + length], self.pending[end + length:]
        return status, body

    def _recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        return data

    def close(self):
        self.sock.close()
