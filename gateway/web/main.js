// Wiring: sign-in, the chat list, the open conversation, the live stream.

import { api, explain, hooks, refused, SESSION_ENDED, session } from "./api.js";
import { authScreen } from "./auth.js";
import { chatList } from "./chats.js";
import { Conversation } from "./conversation.js";
import { announce, el } from "./dom.js";
import { Live } from "./live.js";
import { forgetReads, sendRead } from "./reads.js";
import { store } from "./store.js";

const SINCE_MAX = 1000; // the most chats a hello may name (the server refuses more)
const screen = document.getElementById("screen");
const status = document.getElementById("status");
const whoami = document.getElementById("whoami");
const signOutButton = document.getElementById("sign-out");
const FIRST_RETRY = 2000; // ms before the chat list is read again after a failure
const MAX_RETRY = 30000;
const RENEW_AT = 0.8; // of what a token has left when stored: when it is renewed
const RENEW_SOONEST = 5000; // ms: a token with less left is renewed at once
const RENEW_CHECK = 1000; // ms between checks that a renewal is due
let conversation = null;
let live = null;
let pane = null;
let retry = { delay: FIRST_RETRY, timer: null };
// The token's next renewal, at a time of day (Date.now). It is checked every second
// rather than set as one timer: a timer fires as late as the machine slept.
let renewal = { at: Infinity, delay: FIRST_RETRY, timer: null };
// The status line: the stream's state first (Reconnecting…), else a problem to report.
const notes = { live: "", chats: "" };
// Frames and chat-list reads run one after another: a list read must not land over what
// a later frame changed.
let handled = Promise.resolve();
// One per session: what an earlier session queued, or its Live reports, is ignored.
let epoch = 0;

function note(kind, text) {
  notes[kind] = text;
  status.textContent = notes.live || notes.chats;
  status.hidden = !status.textContent;
}

// A frame that could not be handled (its chat could not be read, say) leaves the list
// behind: it is read again, like a list read that failed.
function queue(task) {
  const mine = epoch;
  handled = handled
    .then(() => mine === epoch && task())
    .catch((e) => {
      if (mine === epoch && store.me && e.code !== "session") retryLater(e);
    });
}

// Ends the session: its socket, timers, state and queued work. The tasks still running
// find the session gone (api.js answers their calls as "session").
function endSession() {
  epoch += 1;
  handled = Promise.resolve();
  live?.stop();
  live = null;
  clearTimeout(retry.timer);
  clearInterval(renewal.timer);
  renewal = { at: Infinity, delay: FIRST_RETRY, timer: null };
  store.reset();
  forgetReads();
  conversation = null;
  announce(""); // the last message read out is the ended session's (found in review)
}

// A reason (the session ended) keeps the drafts for the next sign-in and fills in the name.
function signOut(reason = "", username = store.me?.username) {
  if (!reason) store.dropDrafts(); // (kept otherwise: written through at every change)
  endSession();
  session.clear();
  whoami.textContent = "";
  signOutButton.hidden = true;
  note("live", "");
  note("chats", "");
  screen.replaceChildren(authScreen(start, reason, reason ? username : ""));
}

function sessionEnded() {
  if (store.me) signOut(SESSION_ENDED);
}
hooks.sessionEnded = sessionEnded;

// The token is renewed (POST /v1/auth/refresh) once 80 % of what it had left has passed;
// a renewal that failed and may pass is tried again, but never past the token's expiry,
// when the session ends. A hidden tab's timers are slowed down: it renews, or ends the
// session, as soon as it shows again (the visibilitychange listener below).
function renewAt(at) {
  renewal.at = Math.min(at, Date.now() + session.left());
  renewDue();
}

function planRenewal() {
  const left = session.left();
  renewAt(Date.now() + (left > RENEW_SOONEST ? Math.max(left * RENEW_AT, RENEW_SOONEST) : 0));
}

function renewDue() {
  if (Date.now() >= renewal.at) renewNow();
}

async function renewNow() {
  renewal.at = Infinity; // one renewal at a time
  if (session.left() <= 0) return sessionEnded();
  const before = session.saved();
  try {
    const token = await api.refresh(); // a 401 ends the session (api.js)
    session.renew(token);
    store.me.username = token.username; // a rename shows from here on
    whoami.textContent = `Signed in as ${token.username}`;
    renewal.delay = FIRST_RETRY;
    // One that is no longer (the session's longest life is reached) is the last.
    if (token.expiresAt > before.expiresAt) planRenewal();
    else renewAt(Infinity);
  } catch (e) {
    if (e.code === "session") return; // ended, or another one began: the answer is nobody's
    // Refused for good (an older gateway without the route, say): the token lasts as it is.
    const wait = refused(e) ? Infinity : Math.max(renewal.delay, e.retryAfter * 1000 || 0);
    renewal.delay = Math.min(renewal.delay * 2, MAX_RETRY);
    renewAt(Date.now() + wait);
  }
}

async function loadChats() {
  let cursor = null;
  const fresh = [];
  do {
    const page = await api.chats(cursor);
    fresh.push(...page.data);
    cursor = page.nextCursor;
  } while (cursor && fresh.length < 1000);
  for (const chat of fresh) store.put(chat);
  for (const chat of [...fresh].reverse()) store.touched(chat.id); // the server's order
  await store.names_of(fresh.flatMap((c) => c.users));
  store.changed("chats");
}

// Reads the chat list; on failure says so and tries again, later each time (a worker
// restarting or MySQL away must not leave an empty list, nor sign anyone out).
async function refreshChats() {
  clearTimeout(retry.timer);
  if (!store.me) return;
  try {
    await loadChats();
    note("chats", "");
    retry.delay = FIRST_RETRY;
  } catch (e) {
    if (e.code === "session" || !store.me) return;
    retryLater(e);
  }
}

function retryLater(e) {
  note("chats", `Could not read your chats: ${explain(e)} Trying again…`);
  clearTimeout(retry.timer);
  const mine = epoch;
  retry.timer = setTimeout(() => mine === epoch && queue(refreshChats), retry.delay);
  retry.delay = Math.min(retry.delay * 2, MAX_RETRY);
}

async function open(cid) {
  if (conversation?.cid === cid) return; // already open: as it is, draft and all
  // Typing outside the conversation while it loads (an input event anywhere else).
  let typedElsewhere = false;
  const typed = (event) => {
    if (!conversation?.node.contains(event.target)) typedElsewhere = true;
  };
  document.addEventListener("input", typed, true);
  store.open = cid;
  conversation = new Conversation(cid, () => {
    conversation = null;
    store.open = null;
    screen.classList.remove("open");
    pane.replaceChildren(el("p", { class: "hint", text: "Pick a chat, or start one." }));
  });
  pane.replaceChildren(conversation.node);
  screen.classList.add("open");
  const opened = conversation;
  try {
    await opened.load(); // says itself when it fails, with a Retry
  } finally {
    document.removeEventListener("input", typed, true);
  }
  // To the composer, unless the user went into the conversation while it loaded (a
  // failed send's Retry, the composer itself: a slow first page took that focus away;
  // found by a browser test under load) or went to type elsewhere: a name typed into the
  // new-chat form meanwhile went on into the composer, and its Enter sent the rest of
  // it as a message (found in review). A field that only had the focus when the chat was
  // opened (the new-chat form's, submitted with Enter) gives it up as before.
  const focus = document.activeElement;
  if (conversation === opened && !opened.node.contains(focus) && !typedElsewhere) {
    opened.input.focus();
  }
}

async function fetchChat(cid) {
  const chat = await api.chat(cid);
  store.put(chat);
  await store.names_of(chat.users);
  return chat;
}

async function onMessage(frame) {
  const message = frame.message;
  const chat = store.chats.get(frame.cid) ?? (await fetchChat(frame.cid));
  if (frame.seq > chat.lastSeq) {
    store.touched(frame.cid);
    chat.lastSeq = frame.seq;
    chat.lastMessage = { seq: frame.seq, uid: message.uid, text: [...message.text].slice(0, 100).join(""), createdAt: message.createdAt };
  }
  if (message.uid === store.me.userId && frame.seq > chat.readSeq) {
    chat.readSeq = frame.seq; // what I wrote, I have read
    sendRead(frame.cid, frame.seq);
  }
  chat.unread = Math.max(0, chat.lastSeq - chat.readSeq);
  store.saw(frame.cid, frame.seq);
  if (conversation?.cid === frame.cid) conversation.live(message);
  store.changed("chats");
}

async function onFrame(frame) {
  if (frame.type === "ready") {
    await refreshChats(); // chats created or read elsewhere while this socket was away
  } else if (frame.type === "message") {
    await onMessage(frame);
  } else if (frame.type === "chat") {
    await fetchChat(frame.cid);
    store.changed("chats");
  } else if (frame.type === "read") {
    const chat = store.chats.get(frame.cid);
    if (chat && frame.seq > chat.readSeq) {
      chat.readSeq = frame.seq;
      chat.unread = Math.max(0, chat.lastSeq - chat.readSeq);
      store.changed("chats");
    }
  } else if (frame.type === "gap" && conversation?.cid === frame.cid) {
    // too much was missed here: start over from the newest (unless the view holds it all)
    if (!conversation.holdsThrough(frame.toSeq)) await conversation.reload();
  }
}

function start(token) {
  endSession(); // whatever ran before (a second sign-in must not leave the first one's socket)
  const mine = epoch;
  store.me = { userId: token.userId, username: token.username };
  store.unstashDrafts();
  store.listeners.add((what) => {
    if (what !== "outbox" || !conversation) return;
    conversation.reconcile(); // a send ended: its message may be held here already
    conversation.renderWhenFree();
  });
  whoami.textContent = `Signed in as ${token.username}`;
  signOutButton.hidden = false;
  retry = { delay: FIRST_RETRY, timer: null };
  pane = el("div", { class: "pane" }, el("p", { class: "hint", text: "Pick a chat, or start one." }));
  screen.replaceChildren(chatList(open), pane);
  queue(refreshChats);
  // The stream starts whatever the list read does: its `ready` reads the list again.
  live = new Live({
    token: () => session.token,
    since: () => store.since(SINCE_MAX),
    onFrame: (frame) => mine === epoch && queue(() => onFrame(frame)),
    onState: (state, reason) => {
      if (mine !== epoch) return; // a Live of an earlier session
      if (state === "signed-out") signOut(SESSION_ENDED);
      else if (state === "stopped") note("live", `Live updates stopped: ${reason}. Reload the page.`);
      else note("live", state === "reconnecting" ? "Reconnecting…" : "");
    },
  });
  live.start();
  renewal.timer = setInterval(() => mine === epoch && renewDue(), RENEW_CHECK);
  planRenewal();
}

signOutButton.addEventListener("click", () => signOut());
document.addEventListener("visibilitychange", () => {
  conversation?.markRead();
  renewDue();
});
const saved = session.saved();
if (saved && session.left() > 0) start(saved);
else signOut(saved ? SESSION_ENDED : "", saved?.username);
