#!/usr/bin/env node
//
// test/node/whsig_verify.js - check a recorded webhook request's Standard
// Webhooks signature with the standardwebhooks package, an implementation
// independent of the relay's
//
// Usage: node whsig_verify.js REQUEST.json SECRET [--raw] [--later=SECONDS]
//
// REQUEST.json is a request as test/relay_http.py records it ({"headers",
// "body"}).  SECRET is a whsec_ secret, or with --raw a secret used as its
// bytes.  --later=SECONDS verifies as if the request arrived that much
// later (a captured request replayed).  Prints "ok ID" and exits 0 when the
// library accepts the request, "refused: REASON" and exits 1 when it does
// not; 2 for bad usage.
//
// Copyright (c) 2026, orderexp developers

"use strict";

const fs = require("fs");
const { Webhook } = require("standardwebhooks");

const args = process.argv.slice(2);
const positional = args.filter((a) => !a.startsWith("--"));
if (positional.length !== 2) {
	console.error("usage: whsig_verify.js REQUEST.json SECRET [--raw] [--later=SECONDS]");
	process.exit(2);
}
const [file, secret] = positional;
const raw = args.includes("--raw");
const later = args.filter((a) => a.startsWith("--later=")).map((a) => Number(a.slice(8)))[0] || 0;

const request = JSON.parse(fs.readFileSync(file, "utf8"));
if (later) {
	const realNow = Date.now;
	Date.now = () => realNow() + later * 1000;
}
try {
	const wh = raw ? new Webhook(secret, { format: "raw" }) : new Webhook(secret);
	const event = wh.verify(request.body, request.headers);
	console.log(`ok ${request.headers["webhook-id"]} event ${event.id}`);
	process.exit(0);
} catch (e) {
	console.log(`refused: ${e.message}`);
	process.exit(1);
}
