#!/usr/bin/python3
#
# test/relay_window_http.py - a webhook receiver that measures the relay's
# window, for 031_relay_window.pl
#
# Usage: relay_window_http.py PORT DIR
#
# Listens on 127.0.0.1:PORT (HTTP/1.1, keep-alive, a thread per
# connection).  Every POST waits DIR/delay seconds (a float in the file,
# 0 when it is missing) before it answers, so that requests overlap, and
# counts the requests in progress: DIR/max holds the most at once so far.
# The answer is 200, unless DIR/throttle holds "N SECONDS": then the next N
# requests get 429 with "Retry-After: SECONDS" (the file counts down); or
# DIR/status holds another status for every request.  Each request that got
# 200 appends "ID TIME" (X-Orderexp-Id, Unix time) to DIR/ids; a 429 appends
# to DIR/throttled (without X-Orderexp-Id, as from the SMS sink, ID is the
# "id" of a JSON body).  DIR/connections holds the number of connections that
# sent requests so far (kept-alive connections count once).  Touches
# DIR/ready once it listens; runs until SIGTERM.
#
# Copyright (c) 2026, orderexp developers

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DIRECTORY = None
LOCK = threading.Lock()
IN_FLIGHT = 0
MAX_IN_FLIGHT = 0
CONNECTIONS = set()


def read_file(name, default):
    try:
        with open(os.path.join(DIRECTORY, name)) as f:
            return f.read().strip() or default
    except FileNotFoundError:
        return default


def append(name, line):
    with open(os.path.join(DIRECTORY, name), "a") as f:
        f.write(line + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_POST(self):
        global IN_FLIGHT, MAX_IN_FLIGHT
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        event_id = self.headers.get("X-Orderexp-Id")
        if event_id is None:
            try:
                event_id = str(json.loads(body).get("id", "?"))
            except (ValueError, AttributeError):
                event_id = "?"
        with LOCK:
            if self.client_address not in CONNECTIONS:
                CONNECTIONS.add(self.client_address)
                tmp = os.path.join(DIRECTORY, ".connections.tmp")
                with open(tmp, "w") as f:
                    f.write("%d\n" % len(CONNECTIONS))
                os.rename(tmp, os.path.join(DIRECTORY, "connections"))
            IN_FLIGHT += 1
            if IN_FLIGHT > MAX_IN_FLIGHT:
                MAX_IN_FLIGHT = IN_FLIGHT
                tmp = os.path.join(DIRECTORY, ".max.tmp")
                with open(tmp, "w") as f:
                    f.write("%d\n" % MAX_IN_FLIGHT)
                os.rename(tmp, os.path.join(DIRECTORY, "max"))
        try:
            time.sleep(float(read_file("delay", "0")))
            headers = {}
            with LOCK:
                status = int(read_file("status", "200"))
                throttle = read_file("throttle", "").split()
                if len(throttle) == 2 and int(throttle[0]) > 0:
                    status = 429
                    headers["Retry-After"] = throttle[1]
                    with open(os.path.join(DIRECTORY, "throttle"), "w") as f:
                        f.write("%d %s\n" % (int(throttle[0]) - 1, throttle[1]))
                if status == 200:
                    append("ids", "%s %.3f" % (event_id, time.time()))
                elif status == 429:
                    append("throttled", "%s %.3f" % (event_id, time.time()))
            reply = b"ok\n" if status < 300 else b"not now\n"
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)
        finally:
            with LOCK:
                IN_FLIGHT -= 1

    def log_message(self, fmt, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256


def main():
    global DIRECTORY
    port, DIRECTORY = int(sys.argv[1]), sys.argv[2]
    server = Server(("127.0.0.1", port), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    open(os.path.join(DIRECTORY, "ready"), "w").close()
    server.serve_forever()


if __name__ == "__main__":
    main()
