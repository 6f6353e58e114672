// Wiring: sign-in, the chat list, the open conversation, the live stream.

import { api, session } from "./api.js";
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
let conversation = null;
let live = null;
let pane = null;

function showStatus(text) {
  status.textContent = text;
  status.hidden = !text;
}

function signOut() {
  live?.stop();
  session.clear();
  store.reset();
  forgetReads();
  conversation = null;
  whoami.textContent = "";
  signOutButton.hidden = true;
  showStatus("");
  screen.replaceChildren(authScreen(start));
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
  await store.names_of(fresh.flatMap((c) => c.users));
  store.changed("chats");
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
  await conversation.load();
  conversation.input.focus();
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
    await loadChats(); // chats created or read elsewhere while this socket was away
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
    await conversation.load(); // too much was missed here: read it over REST
  }
}

async function start(token) {
  store.me = { userId: token.userId, username: token.username };
  whoami.textContent = `Signed in as ${token.username}`;
  signOutButton.hidden = false;
  pane = el("div", { class: "pane" }, el("p", { class: "hint", text: "Pick a chat, or start one." }));
  screen.replaceChildren(chatList(open), pane);
  await loadChats();
  // Frames are handled one after another: a chat list read on `ready` must not land
  // over what a later frame changed.
  let handled = Promise.resolve();
  live = new Live({
    since: () => store.since(SINCE_MAX),
    onFrame: (frame) => {
      handled = handled.then(() => onFrame(frame)).catch(() => {});
    },
    onState: (state, reason) => {
      if (state === "signed-out") signOut();
      else if (state === "stopped") showStatus(`Live updates stopped: ${reason}. Reload the page.`);
      else showStatus(state === "reconnecting" ? "Reconnecting…" : "");
    },
  });
  live.start(token.token);
}

signOutButton.addEventListener("click", signOut);
document.addEventListener("visibilitychange", () => conversation?.markRead());
const saved = session.saved();
if (saved && saved.expiresAt * 1000 > Date.now()) start(saved).catch(signOut);
else signOut();
