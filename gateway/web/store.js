// The one place the client's state lives; views subscribe and re-render.

import { api } from "./api.js";

export const store = {
  me: null, // { userId, username }
  chats: new Map(), // cid -> chat (the API's chat object, kept current by frames)
  names: new Map(), // uid -> username
  seen: new Map(), // cid -> newest seq the client holds (the stream's `since`)
  listeners: new Set(),

  reset() {
    this.me = null;
    this.chats.clear();
    this.names.clear();
    this.seen.clear();
  },

  changed(what) {
    for (const listener of this.listeners) listener(what);
  },

  saw(cid, seq) {
    if (seq > (this.seen.get(cid) ?? 0)) this.seen.set(cid, seq);
  },

  activity(chat) {
    return chat.lastMessage?.createdAt ?? chat.createdAt;
  },

  ordered() {
    return [...this.chats.values()].sort((a, b) => this.activity(b) - this.activity(a));
  },

  put(chat) {
    this.chats.set(chat.id, chat);
    this.saw(chat.id, chat.lastSeq);
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
