// Read markers: one request per chat at a time, carrying the highest seq wanted, so a
// burst (a catch-up of my own messages) is one or two requests instead of one each, and
// one refused for the rate limit (4290) goes again after its Retry-After.

import { api } from "./api.js";

const TRIES = 5; // then the next move of the marker tries again
const wanted = new Map(); // cid -> the highest seq to send
const sending = new Set(); // cids with a request on its way

export function sendRead(cid, seq) {
  if (seq <= (wanted.get(cid) ?? -1)) return;
  wanted.set(cid, seq);
  if (!sending.has(cid)) flush(cid);
}

export function forgetReads() {
  wanted.clear();
}

async function flush(cid) {
  sending.add(cid);
  let sent = -1;
  let tries = 0;
  try {
    while (wanted.has(cid) && wanted.get(cid) > sent && tries < TRIES) {
      const seq = wanted.get(cid);
      try {
        await api.read(cid, seq);
        sent = seq;
        tries = 0;
      } catch (error) {
        tries += 1;
        if (error.status >= 400 && error.status < 500 && error.status !== 429) break;
        await new Promise((done) => setTimeout(done, (error.retryAfter || 2) * 1000));
      }
    }
    if (wanted.get(cid) <= sent) wanted.delete(cid);
  } finally {
    sending.delete(cid);
  }
}
