// Read markers: one request per chat at a time, carrying the highest seq wanted, so a
// burst (a catch-up of my own messages) is one or two requests instead of one each, and
// one refused for the rate limit (4290) goes again after its Retry-After.

import { api, refused } from "./api.js";

const TRIES = 5; // then the marker is given up, until the next sendRead for that chat
const wanted = new Map(); // cid -> the highest seq to send
const waiting = new Map(); // cid -> [{ seq, done }]: callers to tell whether theirs got through
const sending = new Set(); // cids with a request on its way

// Resolves to true once `seq` (or a later one) is stored, false when it was given up.
export function sendRead(cid, seq) {
  const told = new Promise((done) => waiting.set(cid, [...(waiting.get(cid) ?? []), { seq, done }]));
  if (seq > (wanted.get(cid) ?? -1)) wanted.set(cid, seq);
  if (!sending.has(cid)) flush(cid);
  return told;
}

export function forgetReads() {
  wanted.clear();
}

function tell(cid, stored, upTo = Infinity) {
  const all = waiting.get(cid) ?? [];
  for (const w of all) if (w.seq <= upTo) w.done(stored);
  const left = all.filter((w) => w.seq > upTo);
  if (left.length) waiting.set(cid, left);
  else waiting.delete(cid);
}

async function flush(cid) {
  sending.add(cid);
  let sent = -1;
  let tries = 0;
  try {
    while (wanted.has(cid) && wanted.get(cid) > sent) {
      const seq = wanted.get(cid);
      try {
        await api.read(cid, seq);
        sent = seq;
        tries = 0;
        tell(cid, true, sent);
      } catch (error) {
        tries += 1;
        if (tries >= TRIES || error.code === "session" || refused(error)) break;
        await new Promise((done) => setTimeout(done, (error.retryAfter || 2) * 1000));
      }
    }
  } finally {
    // Done, or given up: forgotten either way, so that the next sendRead for this chat
    // (the chat opened again, the next scroll to the bottom) sends it again.
    wanted.delete(cid);
    tell(cid, false);
    sending.delete(cid);
  }
}
