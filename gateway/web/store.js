// The one place the client's state lives; views subscribe and re-render.

import { api } from "./api.js";

// + user id: the drafts, in this tab's sessionStorage, so that a reload, a tab the browser
// discarded and brought back, or a sign-in an ended session forced keeps them. Before,
// only the last was kept (found in review). An explicit sign-out drops them.
const DRAFTS = "dialogue.drafts.";

export const store = {
  me: null, // { userId, username }
  chats: new Map(), // cid -> chat (the API's chat object, kept current by frames)
  names: new Map(), // uid -> username
  seen: new Map(), // cid -> newest seq the client holds (the stream's `since`)
  open: null, // cid of the open conversation: its `seen` moves only with messages it holds
  // What a conversation leaves behind when another chat is opened, shown again on return:
  drafts: new Map(), // cid -> text typed and not sent yet
  outbox: new Map(), // cid -> { pending, claimed } of its own sends (see Conversation)
  listeners: new Set(),
  // cid -> when it last moved up, in the client's count: ties of `activity` (whole seconds)
  // go to the chat that moved last, as the server orders them by a finer clock.
  moved: new Map(),
  moves: 0,

  reset() {
    this.me = null;
    this.chats.clear();
    this.names.clear();
    this.seen.clear();
    this.open = null;
    this.drafts.clear();
    this.outbox.clear();
    this.listeners.clear();
    this.moved.clear();
  },

  changed(what) {
    for (const listener of this.listeners) listener(what);
  },

  kept(cid) {
    if (!this.outbox.has(cid)) this.outbox.set(cid, { pending: new Map(), claimed: new Set() });
    return this.outbox.get(cid);
  },

  draft(cid, text) {
    if (text) this.drafts.set(cid, text);
    else this.drafts.delete(cid);
    this.stashDrafts();
  },

  // Written through at every change (this tab only, per user).
  stashDrafts() {
    if (!this.me) return;
    const key = DRAFTS + this.me.userId;
    try {
      if (this.drafts.size) sessionStorage.setItem(key, JSON.stringify([...this.drafts]));
      else sessionStorage.removeItem(key);
    } catch {
      // storage full or refused: the drafts stay in this page's memory only
    }
  },

  unstashDrafts() {
    let kept = [];
    try {
      kept = JSON.parse(sessionStorage.getItem(DRAFTS + this.me.userId) ?? "[]");
    } catch {
      // unreadable: as if none were kept
    }
    for (const [cid, text] of Array.isArray(kept) ? kept : []) {
      if (typeof cid === "string" && typeof text === "string" && text) this.drafts.set(cid, text);
    }
  },

  // A sign-out the user chose: the tab's next user finds none of them.
  dropDrafts() {
    if (!this.me) return;
    this.drafts.clear();
    sessionStorage.removeItem(DRAFTS + this.me.userId);
  },

  saw(cid, seq) {
    // 0 counts: an empty chat named in `since` gets its first message in the catch-up.
    if (!this.seen.has(cid) || seq > this.seen.get(cid)) this.seen.set(cid, seq);
  },

  activity(chat) {
    return chat.lastMessage?.createdAt ?? chat.createdAt;
  },

  // Most recent first: by activity, then by which moved last (two chats with messages in
  // one second were listed in the order the page first saw them; found in review).
  recent(a, b) {
    return this.activity(b) - this.activity(a) || (this.moved.get(b.id) ?? 0) - (this.moved.get(a.id) ?? 0);
  },

  ordered() {
    return [...this.chats.values()].sort((a, b) => this.recent(a, b));
  },

  touched(cid) {
    this.moved.set(cid, ++this.moves);
  },

  put(chat) {
    if (!this.chats.has(chat.id)) this.touched(chat.id);
    this.chats.set(chat.id, chat);
    // A closed chat is all metadata, which this copy brings up to date. The open one
    // holds messages: a `since` past those it holds would skip the ones still on their
    // way (the catch-up after `ready` runs while the chat list is read again).
    if (chat.id !== this.open) this.saw(chat.id, chat.lastSeq);
  },

  since(max) {
    // The hello names at most `max` chats (the server refuses more): the most recent.
    const chats = [...this.seen.keys()].map((cid) => this.chats.get(cid)).filter(Boolean);
    const ranked = chats.sort((a, b) => this.recent(a, b)).slice(0, max);
    if (this.open && this.seen.has(this.open) && !ranked.some((c) => c.id === this.open)) {
      ranked[ranked.length - 1] = this.chats.get(this.open);
    }
    return Object.fromEntries(ranked.filter(Boolean).map((c) => [c.id, this.seen.get(c.id)]));
  },

  async names_of(uids) {
    const missing = [...new Set(uids)].filter((uid) => !this.names.has(uid));
    for (let i = 0; i < missing.length; i += 50) {
      const page = await api.usersById(missing.slice(i, i + 50));
      for (const user of page.data) this.names.set(user.id, user.username);
    }
  },

  title(chat) {
    const others = chat.users.filter((uid) => uid !== this.me.userId);
    return others.map((uid) => this.names.get(uid) ?? `#${uid}`).join(", ") || "(just you)";
  },
};
