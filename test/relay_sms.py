#!/usr/bin/python3
#
# test/relay_sms.py - a fake SMS provider for the relay's tests and the demo
#
# Usage: relay_sms.py PORT DIR ACCOUNT TOKEN
#
# Listens on 127.0.0.1:PORT and answers like Twilio's Messages API:
#
#   POST /2010-04-01/Accounts/ACCOUNT/Messages.json, form-encoded To, From
#   and Body, HTTP basic auth ACCOUNT:TOKEN
#     401 {"code": 20003, ...}   wrong or missing credentials
#     400 {"code": 21604, ...}   To, From or Body missing, or repeated, or
#                                the body is not form-encoded UTF-8
#     400 {"code": 21211, ...}   To is +15005550001 (Twilio's test number
#                                for an invalid one) or not E.164
#     201 {"sid": "SM...", "status": "queued", ...}  otherwise
#
# Any other path (the relay's --sms-provider template) is recorded and
# answered 200 {"ok": true}.  Whatever the path, the status code written in
# DIR/status (when the file exists) is answered instead, so that a test
# makes the provider fail with 500 or 400.  Every request is recorded into
# DIR as req-N.json: {"method", "path", "headers", "body", "form" (the
# parsed form fields, for form bodies), "status"} (temp name, then
# rename).  Touches DIR/ready once it listens; runs until SIGTERM.
#
# Copyright (c) 2026, orderexp developers

import base64
import json
import os
import re
import signal
import sys
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

DIRECTORY = None
ACCOUNT = None
TOKEN = None
COUNT = 0
LOCK = threading.Lock()


def twilio_error(code, message, status):
    return status, {"code": code, "message": message,
                    "more_info": "https://www.twilio.com/docs/errors/%d" % code,
                    "status": status}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def handle_any(self):
        global COUNT
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        body = raw.decode("utf-8", "replace")
        ctype = self.headers.get("Content-Type", "")
        form = None
        if ctype.startswith("application/x-www-form-urlencoded"):
            try:
                form = parse_qs(raw.decode("ascii"), keep_blank_values=True,
                                strict_parsing=bool(raw), errors="strict")
            except (ValueError, UnicodeDecodeError):
                form = None

        if self.path == "/2010-04-01/Accounts/%s/Messages.json" % ACCOUNT:
            status, reply = self.twilio(form)
        else:
            status, reply = 200, {"ok": True}
        try:
            with open(os.path.join(DIRECTORY, "status")) as f:
                forced = int(f.read().strip() or "0")
            if forced:
                status, reply = forced, {"code": 0, "message": "failing on purpose",
                                         "status": forced}
        except FileNotFoundError:
            pass

        with LOCK:
            COUNT += 1
            n = COUNT
        record = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
            "form": form,
            "status": status,
        }
        tmp = os.path.join(DIRECTORY, ".req-%d.tmp" % n)
        with open(tmp, "w") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(DIRECTORY, "req-%d.json" % n))

        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def twilio(self, form):
        expected = "Basic " + base64.b64encode(("%s:%s" % (ACCOUNT, TOKEN)).encode()).decode()
        if self.headers.get("Authorization") != expected:
            return twilio_error(20003, "Authenticate", 401)
        if form is None or any(len(form.get(k, [])) != 1 for k in ("To", "From", "Body")):
            return twilio_error(21604, "A 'To', 'From' and 'Body' are required.", 400)
        to = form["To"][0]
        if to == "+15005550001" or not re.fullmatch(r"\+[1-9][0-9]{7,14}", to):
            return twilio_error(21211, "The 'To' number %s is not a valid phone number." % to, 400)
        return 201, {
            "sid": "SM" + uuid.uuid4().hex,
            "account_sid": ACCOUNT,
            "to": to,
            "from": form["From"][0],
            "body": form["Body"][0],
            "status": "queued",
            "num_segments": "1",
            "direction": "outbound-api",
            "api_version": "2010-04-01",
        }

    do_POST = handle_any
    do_PUT = handle_any
    do_PATCH = handle_any

    def log_message(self, fmt, *args):
        pass


def main():
    global DIRECTORY, ACCOUNT, TOKEN
    port, DIRECTORY, ACCOUNT, TOKEN = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    open(os.path.join(DIRECTORY, "ready"), "w").close()
    server.serve_forever()


if __name__ == "__main__":
    main()
