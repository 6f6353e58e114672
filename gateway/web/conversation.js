// One chat: history paged upwards, live messages, own messages with their state, read marks.

import { api, explain } from "./api.js";
import { announce, day, el, time } from "./dom.js";
import { sendRead } from "./reads.js";
import { store } from "./store.js";

const PAGE = 50;

export class Conversation {
  constructor(cid, onBack) {
    this.cid = cid;
    this.bySeq = new Map(); // seq -> message
    this.pending = new Map(); // idempotency key -> { text, state, id }
    this.older = null; // cursor of the next older page (null: none, or not loaded yet)
    this.loading = false;
    this.readSent = 0;
    this.list = el("ol", { class: "messages", id: "messages", "aria-label": "Messages" });
    this.scroller = el("div", { class: "scroller", onscroll: () => this.scrolled() }, this.list);
    const input = el("textarea", {
      id: "compose",
      rows: "2",
      "aria-label": "Message",
      placeholder: "Write a message (Enter sends, Shift+Enter: new line)",
      onkeydown: (event) => {
        if (event.key === "Enter" && !event.shiftKey) {
          event.preventDefault();
          form.requestSubmit();
        }
      },
    });
    const form = el(
      "form",
      {
        class: "compose",
        onsubmit: (event) => {
          event.preventDefault();
          const text = input.value;
          if (!text.trim()) return;
          input.value = "";
          this.send(crypto.randomUUID(), text);
        },
      },
      input,
      el("button", { type: "submit", text: "Send" }),
    );
    this.title = el("h2", { id: "chat-title", text: store.title(store.chats.get(cid)) });
    this.node = el(
      "section",
      { class: "conversation", "aria-labelledby": "chat-title" },
      el("div", { class: "chat-head" }, el("button", { type: "button", class: "back", onclick: onBack, text: "← Chats" }), this.title),
      this.scroller,
      form,
    );
    this.input = input;
  }

  async load() {
    const page = await api.messages(this.cid, { limit: PAGE });
    this.add(page.data);
    this.older = page.nextCursor;
    this.render();
    this.toBottom();
    this.markRead();
  }

  add(messages) {
    for (const m of messages) {
      this.bySeq.set(m.seq, m);
      store.saw(this.cid, m.seq);
      for (const [key, p] of this.pending) if (p.id === m.id) this.pending.delete(key);
    }
  }

  async loadOlder() {
    if (this.loading || !this.older) return;
    this.loading = true;
    try {
      const page = await api.messages(this.cid, { limit: PAGE, before: this.older });
      const height = this.scroller.scrollHeight;
      this.add(page.data);
      this.older = page.nextCursor;
      this.render();
      this.scroller.scrollTop += this.scroller.scrollHeight - height; // keep what was in view
    } finally {
      this.loading = false;
    }
  }

  scrolled() {
    if (this.scroller.scrollTop < 80) this.loadOlder();
    if (this.atBottom()) this.markRead();
  }

  atBottom() {
    const s = this.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 40;
  }

  toBottom() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  live(message) {
    if (this.bySeq.has(message.seq)) return;
    const stick = this.atBottom();
    this.add([message]);
    this.render();
    if (stick || message.uid === store.me.userId) this.toBottom();
    if (message.uid !== store.me.userId) {
      announce(`${store.names.get(message.uid) ?? "Someone"}: ${message.text}`);
    }
    this.markRead();
  }

  async send(key, text) {
    this.pending.set(key, { text, state: "sending", id: null });
    this.render();
    this.toBottom();
    try {
      const message = await api.post(this.cid, text, key);
      const p = this.pending.get(key);
      if (p) Object.assign(p, { state: "sent", id: message.id });
      if ([...this.bySeq.values()].some((m) => m.id === message.id)) this.pending.delete(key);
    } catch (e) {
      const p = this.pending.get(key);
      if (p) Object.assign(p, { state: "failed", why: explain(e) });
    }
    this.render();
  }

  markRead() {
    if (document.visibilityState !== "visible" || !this.atBottom()) return;
    const newest = Math.max(0, ...this.bySeq.keys());
    if (newest <= this.readSent) return;
    this.readSent = newest;
    const chat = store.chats.get(this.cid);
    if (chat) {
      chat.readSeq = Math.max(chat.readSeq, newest);
      chat.unread = Math.max(0, chat.lastSeq - chat.readSeq);
      store.changed("chats");
    }
    sendRead(this.cid, newest);
  }

  render() {
    const items = [];
    let lastDay = null;
    if (this.older) items.push(el("li", { class: "more", text: "Scroll up for older messages" }));
    for (const m of [...this.bySeq.values()].sort((a, b) => a.seq - b.seq)) {
      const d = day(m.createdAt);
      if (d !== lastDay) items.push(el("li", { class: "day", role: "separator", text: d }));
      lastDay = d;
      const mine = m.uid === store.me.userId;
      items.push(
        el(
          "li",
          { class: mine ? "message mine" : "message", "data-seq": String(m.seq) },
          el("span", { class: "author", text: mine ? "You" : (store.names.get(m.uid) ?? `#${m.uid}`) }),
          el("p", { class: "text", text: m.text }),
          el("time", { text: time(m.createdAt) }),
        ),
      );
    }
    for (const [key, p] of this.pending) {
      const state = { sending: "sending…", sent: "sent", failed: p.why ?? "not sent" }[p.state];
      items.push(
        el(
          "li",
          { class: `message mine ${p.state}`, "data-state": p.state },
          el("span", { class: "author", text: "You" }),
          el("p", { class: "text", text: p.text }),
          el("span", { class: "state", text: state }),
          p.state === "failed"
            ? el("button", { type: "button", text: "Retry", onclick: () => this.send(key, p.text) })
            : null,
        ),
      );
    }
    this.list.replaceChildren(...items);
  }
}
