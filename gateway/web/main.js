// Wiring: sign-in, the chat list, the open conversation, the live stream.

import { api, explain, hooks, SESSION_ENDED, session } from "./api.js";
import { authScreen } from "./auth.js";
import { chatList } from "./chats.js";
import { Conversation } from "./conversation.js";
import { el } from "./dom.js";
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
let conversation = null;
let live = null;
let pane = null;
let retry = { delay: FIRST_RETRY, timer: null };
// The status line: the stream's state first (Reconnecting…), else a problem to report.
const notes = { live: "", chats: "" };
// Frames and chat-list reads run one after another: a list read must not land over what
// a later frame changed.
let handled = Promise.resolve();

function note(kind, text) {
  notes[kind] = text;
  status.textContent = notes.live || notes.chats;
  status.hidden = !status.textContent;
}

function queue(task) {
  handled = handled.then(task).catch((e) => {
    if (store.me && e.code !== "session") note("chats", explain(e));
  });
}

function signOut(reason = "") {
  live?.stop();
  live = null;
  clearTimeout(retry.timer);
  session.clear();
  store.reset();
  forgetReads();
  conversation = null;
  whoami.textContent = "";
  signOutButton.hidden = true;
  note("live", "");
  note("chats", "");
  screen.replaceChildren(authScreen(start, reason));
}

function sessionEnded() {
  if (store.me) signOut(SESSION_ENDED);
}
hooks.sessionEnded = sessionEnded;

async function loadChats() {
  let cursor = null;
  const fresh = [];
  do {
    const page = await api.chats(cursor);
    fresh.push(...page.data);
    cursor = page.nextCursor;
  } while (cursor && fresh.length < 1000);
  for (const chat of fresh) store.put(chat);
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
    note("chats", `Could not read your chats: ${explain(e)} Trying again…`);
    const me = store.me;
    retry.timer = setTimeout(() => store.me === me && queue(refreshChats), retry.delay);
    retry.delay = Math.min(retry.delay * 2, MAX_RETRY);
  }
}

async function open(cid) {
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
  await opened.load(); // says itself when it fails, with a Retry
  if (conversation === opened) opened.input.focus();
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
    chat.lastSeq = frame.seq;
    chat.lastMessage = { seq: frame.seq, uid: message.uid, text: message.text.slice(0, 100), createdAt: message.createdAt };
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
    await conversation.reload(); // too much was missed here: start over from the newest
  }
}

function start(token) {
  store.me = { userId: token.userId, username: token.username };
  whoami.textContent = `Signed in as ${token.username}`;
  signOutButton.hidden = false;
  retry = { delay: FIRST_RETRY, timer: null };
  pane = el("div", { class: "pane" }, el("p", { class: "hint", text: "Pick a chat, or start one." }));
  screen.replaceChildren(chatList(open), pane);
  queue(refreshChats);
  // The stream starts whatever the list read does: its `ready` reads the list again.
  live = new Live({
    since: () => store.since(SINCE_MAX),
    onFrame: (frame) => queue(() => onFrame(frame)),
    onState: (state, reason) => {
      if (state === "signed-out") signOut(SESSION_ENDED);
      else if (state === "stopped") note("live", `Live updates stopped: ${reason}. Reload the page.`);
      else note("live", state === "reconnecting" ? "Reconnecting…" : "");
    },
  });
  live.start(token.token);
}

signOutButton.addEventListener("click", () => signOut());
document.addEventListener("visibilitychange", () => conversation?.markRead());
const saved = session.saved();
if (saved && saved.expiresAt * 1000 > Date.now()) start(saved);
else signOut(saved ? SESSION_ENDED : "");
