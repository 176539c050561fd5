#!/usr/bin/python3
#
# test/relay_http_odd.py - a webhook receiver that answers in the many ways
# HTTP/1.1 allows, for 036_relay_http_client.pl
#
# Usage: relay_http_odd.py PORT DIR
#
# Listens on 127.0.0.1:PORT, a thread per connection, and reads requests
# itself (raw sockets, no HTTP library), so that it answers exactly as told.
# Each request is appended to DIR/requests as one JSON line: the connection's
# number, the request's number on it, the request line, the headers (a list
# of [name, value] in order), the body, the mode and the time.  The answer
# depends on DIR/mode (read for every request; "ok" when missing):
#
#   ok            200, Content-Length, kept alive
#   chunked       200, chunked (extensions, a trailer), in pieces
#   chunked410    410, chunked
#   close         200, Content-Length, Connection: close, then closes
#   eof           200 without length, the body until the connection closes
#   http10        HTTP/1.0 200 with Content-Length, then closes
#   continue      100 Continue, then 204
#   split         202 with a body, written a byte at a time
#   big           200 with a body of 1 MB
#   date429       the first request of this mode gets 429 with Retry-After
#                 as an HTTP date 3 s ahead, the others 200
#   dropreused    the second and later requests of a connection: the
#                 connection is closed without an answer; 200 otherwise
#   idleclose     200 kept alive, then the connection is closed after 0.3 s
#                 without a request
#   garbage       something that is not HTTP, then closes
#   silent        no answer at all (until the client closes)
#   status503     503 with an empty body
#
# Touches DIR/ready once it listens; runs until SIGTERM.
#
# Copyright (c) 2026, orderexp developers

import email.utils
import json
import os
import signal
import socket
import sys
import threading
import time

DIRECTORY = None
LOCK = threading.Lock()
STATE = {"date429_done": False, "connections": 0}


def read_mode():
    try:
        with open(os.path.join(DIRECTORY, "mode")) as f:
            return f.read().strip() or "ok"
    except FileNotFoundError:
        return "ok"


def record(entry):
    with LOCK:
        with open(os.path.join(DIRECTORY, "requests"), "a") as f:
            f.write(json.dumps(entry) + "\n")


def send_slowly(conn, pieces, pause):
    for p in pieces:
        conn.sendall(p)
        time.sleep(pause)


def read_request(conn, buf, timeout):
    """one request: (request line, headers, body, rest), None on EOF"""
    conn.settimeout(timeout)
    while b"\r\n\r\n" not in buf:
        try:
            data = conn.recv(65536)
        except socket.timeout:
            return "idle"
        if not data:
            return None
        buf += data
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append([name, value.strip()])
    length = 0
    for name, value in headers:
        if name.lower() == "content-length":
            length = int(value)
    conn.settimeout(30)
    while len(buf) < length:
        data = conn.recv(65536)
        if not data:
            return None
        buf += data
    return lines[0], headers, buf[:length], buf[length:]


def serve(conn, number):
    buf = b""
    nreq = 0
    idle_timeout = None
    try:
        while True:
            got = read_request(conn, buf, idle_timeout)
            if got is None or got == "idle":
                return
            line, headers, body, buf = got
            nreq += 1
            mode = read_mode()
            record({"conn": number, "nreq": nreq, "line": line, "headers": headers,
                    "body": body.decode("utf-8"), "mode": mode, "time": time.time()})
            idle_timeout = None
            if mode == "chunked" or mode == "chunked410":
                status = b"200 OK" if mode == "chunked" else b"410 Gone"
                send_slowly(conn, [b"HTTP/1.1 " + status + b"\r\nTransfer-Encoding: chunked\r\n",
                                   b"Content-Type: text/plain\r\n\r\n",
                                   b"5;ext=1\r\nhel", b"lo\r\n",
                                   b"0A\r\n0123456789\r\n",
                                   b"0\r\nX-Trailer: t\r\n\r\n"], 0.01)
            elif mode == "close":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                return
            elif mode == "eof":
                send_slowly(conn, [b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
                                   b"the body ", b"until the end"], 0.01)
                return
            elif mode == "http10":
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                return
            elif mode == "continue":
                send_slowly(conn, [b"HTTP/1.1 100 Continue\r\n\r\n",
                                   b"HTTP/1.1 204 No Content\r\n\r\n"], 0.01)
            elif mode == "split":
                send_slowly(conn, [bytes([c]) for c in
                                   b"HTTP/1.1 202 Accepted\r\nContent-Length: 10\r\n\r\n0123456789"],
                            0.002)
            elif mode == "big":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n" + b"x" * 1048576)
            elif mode == "date429":
                with LOCK:
                    first = not STATE["date429_done"]
                    STATE["date429_done"] = True
                if first:
                    when = email.utils.formatdate(time.time() + 3, usegmt=True)
                    conn.sendall(("HTTP/1.1 429 Too Many Requests\r\nRetry-After: %s\r\n"
                                  "Content-Length: 0\r\n\r\n" % when).encode())
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            elif mode == "dropreused" and nreq > 1:
                return
            elif mode == "idleclose":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                idle_timeout = 0.3
            elif mode == "garbage":
                conn.sendall(b"220 this is not HTTP\r\n\r\n")
                return
            elif mode == "silent":
                while conn.recv(65536):
                    pass
                return
            elif mode == "status503":
                conn.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    except (ConnectionError, OSError):
        return
    finally:
        conn.close()


def main():
    global DIRECTORY
    port = int(sys.argv[1])
    DIRECTORY = sys.argv[2]
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(128)
    open(os.path.join(DIRECTORY, "ready"), "w").close()
    while True:
        conn, _ = srv.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        STATE["connections"] += 1
        threading.Thread(target=serve, args=(conn, STATE["connections"]), daemon=True).start()


if __name__ == "__main__":
    main()
