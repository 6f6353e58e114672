// One chat: history paged upwards, live messages, own messages with their state, read marks.

import { api, explain, refused } from "./api.js";
import { announce, day, el, held, time, whenFree } from "./dom.js";
import { sendRead } from "./reads.js";
import { store } from "./store.js";

const PAGE = 50;
export const TEXT_MAX = 4096; // characters (code points), as the server counts them

// Why a text cannot be sent as it is, or "".
export function tooLong(text) {
  const length = [...text].length;
  return length > TEXT_MAX ? `Too long to send: ${length} characters, at most ${TEXT_MAX}.` : "";
}

// A fresh Idempotency-Key. crypto.randomUUID exists on secure pages only (HTTPS or
// localhost): served over plain HTTP on another address, the send threw after the
// composer was cleared, and the text was lost (found in review). getRandomValues exists
// everywhere.
export function idempotencyKey() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export class Conversation {
  constructor(cid, onBack) {
    this.cid = cid;
    this.bySeq = new Map(); // seq -> message
    // Kept in the store, so that they outlive this view (another chat opened meanwhile):
    const kept = store.kept(cid);
    this.pending = kept.pending; // idempotency key -> { text, state, id, after, why }
    this.claimed = kept.claimed; // ids of own messages known to be a send's own
    this.older = null; // cursor of the next older page (null: none, or not loaded yet)
    this.loading = false;
    this.loaded = false; // the newest page came: before that, nothing may be marked read
    this.problem = null; // why the newest page could not be read, shown with a Retry
    this.olderProblem = null; // why an older page could not be read
    this.readSent = 0;
    this.due = false; // live messages wait for the next animation frame to be shown
    this.stick = false; // and then scroll to the bottom (it was there, or one is its own)
    this.list = el("ol", { class: "messages", id: "messages", "aria-label": "Messages" });
    this.scroller = el("div", { class: "scroller", onscroll: () => this.scrolled() }, this.list);
    const hint = el("p", { class: "error", id: "compose-error", role: "alert" });
    const input = el("textarea", {
      id: "compose",
      rows: "2",
      "aria-label": "Message",
      "aria-describedby": "compose-error",
      placeholder: "Write a message (Enter sends, Shift+Enter: new line)",
      onkeydown: (event) => {
        // An Enter that ends an IME composition picks the characters; it does not send.
        if (event.isComposing || event.keyCode === 229) return;
        if (event.key === "Enter" && !event.shiftKey) {
          event.preventDefault();
          form.requestSubmit();
        }
      },
      oninput: () => {
        store.draft(cid, input.value);
        if (hint.textContent && !tooLong(input.value)) hint.textContent = "";
      },
    });
    input.value = store.drafts.get(cid) ?? "";
    const form = el(
      "form",
      {
        class: "compose",
        onsubmit: (event) => {
          event.preventDefault();
          const text = input.value;
          if (!text.trim()) return;
          hint.textContent = tooLong(text);
          if (hint.textContent) return;
          const key = idempotencyKey();
          input.value = "";
          store.draft(cid, "");
          this.send(key, text);
        },
      },
      hint,
      input,
      el("button", { type: "submit", text: "Send" }),
    );
    const title = store.title(store.chats.get(cid));
    // One line, cut with an ellipsis (a long group's names pushed a phone's page sideways;
    // found in review); the whole of it on hover.
    this.title = el("h2", { id: "chat-title", dir: "auto", title, text: title });
    this.node = el(
      "section",
      { class: "conversation", "aria-labelledby": "chat-title" },
      el("div", { class: "chat-head" }, el("button", { type: "button", class: "back", onclick: onBack, text: "← Chats" }), this.title),
      this.scroller,
      form,
    );
    this.input = input;
  }

  // Still on screen: a conversation left before its page came must not mark it read
  // (a detached scroller measures 0, so it always looks scrolled to the bottom).
  get shown() {
    return this.node.isConnected;
  }

  // A loop, not Math.max(...keys): spread arguments overflow the call stack past some
  // 100,000 held messages, and every read, send and mark then threw (found in review).
  get newestSeq() {
    let newest = 0;
    for (const seq of this.bySeq.keys()) if (seq > newest) newest = seq;
    return newest;
  }

  async load() {
    this.problem = null;
    let page;
    try {
      page = await api.messages(this.cid, { limit: PAGE });
    } catch (e) {
      if (e.code === "session") return; // signed out: this conversation is gone
      this.problem = `Could not read this chat: ${explain(e)}`;
      this.render();
      return;
    }
    this.add(page.data);
    if (!this.shown) return;
    this.older = page.nextCursor;
    this.loaded = true;
    this.render();
    this.toBottom();
    this.markRead();
  }

  // Too much was missed (a `gap`): what is held would stand beside a hole, so start over
  // from the newest page; older ones come in by scrolling up as usual.
  async reload() {
    this.bySeq.clear();
    this.older = null;
    this.olderProblem = null;
    this.loaded = false;
    await this.load();
  }

  // Whether a `gap` up to `toSeq` leaves nothing missing here: the view holds every seq
  // from its oldest up to it (older ones come in by scrolling up). A chat joined while
  // the socket is open gets a gap from seq 1 that names what the newest page holds.
  holdsThrough(toSeq) {
    if (!this.loaded || this.bySeq.size === 0) return false;
    let oldest = Infinity;
    for (const seq of this.bySeq.keys()) if (seq < oldest) oldest = seq;
    for (let seq = oldest; seq <= toSeq; seq++) {
      if (!this.bySeq.has(seq)) return false;
    }
    return true;
  }

  add(messages) {
    for (const m of messages) {
      this.bySeq.set(m.seq, m);
      store.saw(this.cid, m.seq);
    }
    this.reconcile(messages);
  }

  // Own sends against messages this view holds (all of them by default): an entry whose
  // message is here goes, and so does a failed one whose record got through all the
  // same. A send can end while another view of the chat is open, or none: a page read
  // later, live or not, settles it too (a history page used to leave a failed copy, with
  // its Retry, beside the stored message).
  reconcile(messages = [...this.bySeq.values()]) {
    for (const m of messages) {
      for (const [key, p] of this.pending) if (p.id === m.id) this.pending.delete(key);
      this.settle(m);
    }
  }

  // A failed send whose record got through all the same (its answer was lost, or Kafka
  // acknowledged too late): the first failed entry of that text written before this
  // message goes, as the message itself now shows.
  settle(message) {
    if (message.uid !== store.me.userId || this.claimed.has(message.id)) return;
    const same = [...this.pending].filter(([, p]) => p.text === message.text);
    if (same.some(([, p]) => p.state === "sending")) return; // it may be that one's
    const failed = same.find(([, p]) => p.state === "failed" && message.seq > p.after);
    if (failed) {
      this.pending.delete(failed[0]);
      this.claimed.add(message.id);
    }
  }

  async loadOlder() {
    if (this.loading || !this.older) return;
    this.loading = true;
    const before = this.older;
    try {
      const page = await api.messages(this.cid, { limit: PAGE, before });
      if (this.older !== before) return; // started over (a gap) meanwhile
      // Live messages waiting for their frame first: shown together with the older page,
      // their height was taken for the older page's, and the view jumped (found in review).
      this.showLive();
      const height = this.scroller.scrollHeight;
      this.add(page.data);
      this.older = page.nextCursor;
      this.olderProblem = null;
      this.render();
      this.scroller.scrollTop += this.scroller.scrollHeight - height; // keep what was in view
    } catch (e) {
      if (e.code === "session") return; // signed out: this conversation is gone
      this.olderProblem = `Could not read older messages: ${explain(e)}`;
      this.render();
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
    // Shown in the next animation frame, with whatever else came before it: a catch-up
    // brings hundreds at once, and the list rebuilt for each took seconds (found in
    // review). Until then the page shows what it did, so "at the bottom" is as it was.
    this.stick ||= this.atBottom() || message.uid === store.me.userId;
    this.add([message]);
    if (message.uid !== store.me.userId) {
      announce(`${store.names.get(message.uid) ?? "Someone"}: ${message.text}`);
    }
    if (this.due) return;
    this.due = true;
    // Not while a press on the list lasts (a Retry pressed as a message came in was
    // rebuilt away, and its click lost: found in review), but in the frame after it.
    whenFree(this.list, () => this.showLive());
  }

  // A rebuild asked for from outside (a send's outcome): at once, unless a press on the
  // list lasts; then in the frame after its release.
  renderWhenFree() {
    if (held(this.list)) whenFree(this.list, () => this.render());
    else this.render();
  }

  // Shows the live messages still waiting for their frame (no-op when none wait).
  showLive() {
    if (!this.due) return;
    this.due = false;
    const stick = this.stick;
    this.stick = false;
    this.render();
    if (stick) this.toBottom();
    this.markRead();
  }

  // The entry is the store's: a send that ends after this chat was left updates what is
  // shown when it is opened again, and whichever view is open then re-renders.
  async send(key, text) {
    // The newest seq known when it was sent: a same-text message of ours above it may be
    // this send's (its answer lost). The chat's lastSeq counts too: before the newest page
    // came (still loading, failed, or read again after a gap) the view holds nothing, and
    // any old message of the same text on that page settled a send that never got through.
    // A Retry keeps what the first try knew: the chat's lastSeq may count that try by now.
    const after =
      this.pending.get(key)?.after ?? Math.max(this.newestSeq, store.chats.get(this.cid)?.lastSeq ?? 0);
    this.pending.set(key, { text, state: "sending", id: null, after });
    this.render();
    this.toBottom();
    try {
      const message = await api.post(this.cid, text, key);
      const p = this.pending.get(key);
      this.claimed.add(message.id);
      if (p) Object.assign(p, { state: "sent", id: message.id });
    } catch (e) {
      if (e.code === "session") return; // signed out: this conversation is gone
      const p = this.pending.get(key);
      // Refused (too long, not a member...): sending it again would be refused again.
      if (p) Object.assign(p, { state: refused(e) ? "refused" : "failed", why: explain(e) });
    }
    store.changed("outbox"); // the open view reconciles it with what it holds
  }

  // A refused message goes back into the composer, before whatever is being written there.
  edit(key, text) {
    this.pending.delete(key);
    this.input.value = this.input.value ? `${text}\n${this.input.value}` : text;
    store.draft(this.cid, this.input.value);
    this.render();
    this.input.focus();
  }

  discard(key) {
    this.pending.delete(key);
    this.render();
  }

  markRead() {
    if (!this.loaded || !this.shown || document.visibilityState !== "visible" || !this.atBottom()) return;
    const newest = this.newestSeq;
    if (newest <= this.readSent) return;
    this.readSent = newest;
    const chat = store.chats.get(this.cid);
    if (chat) {
      chat.readSeq = Math.max(chat.readSeq, newest);
      chat.unread = Math.max(0, chat.lastSeq - chat.readSeq);
      store.changed("chats");
    }
    sendRead(this.cid, newest).then((stored) => {
      if (!stored && this.readSent === newest) this.readSent = 0; // given up: mark it again later
    });
  }

  render() {
    // The list is built again on every change: a focused button (a send's Retry, Edit or
    // Discard, a page's Retry) keeps the focus, or a keyboard user lost it at every message.
    const active = this.list.contains(document.activeElement) ? document.activeElement : null;
    const focused = active && {
      key: active.closest("li")?.dataset.key ?? null,
      kind: active.closest("li")?.className ?? "",
      text: active.textContent,
    };
    const items = [];
    let lastDay = null;
    if (this.problem) {
      items.push(
        el(
          "li",
          { class: "problem", role: "alert" },
          el("span", { text: this.problem }),
          el("button", { type: "button", text: "Retry", onclick: () => this.load() }),
        ),
      );
    }
    if (this.older && this.olderProblem) {
      items.push(
        el(
          "li",
          { class: "more problem", role: "alert" },
          el("span", { text: this.olderProblem }),
          el("button", { type: "button", text: "Retry", onclick: () => this.loadOlder() }),
        ),
      );
    } else if (this.older) {
      items.push(el("li", { class: "more", text: "Scroll up for older messages" }));
    }
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
          el("p", { class: "text", dir: "auto", text: m.text }),
          el("time", { text: time(m.createdAt) }),
        ),
      );
    }
    for (const [key, p] of this.pending) {
      const state = { sending: "sending…", sent: "sent" }[p.state] ?? p.why;
      items.push(
        el(
          "li",
          { class: `message mine ${p.state}`, "data-state": p.state, "data-key": key },
          el("span", { class: "author", text: "You" }),
          el("p", { class: "text", dir: "auto", text: p.text }),
          el("span", { class: "state", text: state }),
          ...this.actions(key, p),
        ),
      );
    }
    this.list.replaceChildren(...items);
    if (focused) {
      const again = [...this.list.querySelectorAll("li")].find((li) =>
        focused.key ? li.dataset.key === focused.key : li.className === focused.kind,
      );
      [...(again?.querySelectorAll("button") ?? [])].find((b) => b.textContent === focused.text)?.focus({ preventScroll: true });
    }
  }

  // A failure a retry may mend offers Retry; a refusal offers Edit and Discard.
  actions(key, p) {
    const button = (text, onclick) => el("button", { type: "button", text, onclick });
    if (p.state === "failed") return [button("Retry", () => this.send(key, p.text))];
    if (p.state === "refused") {
      return [button("Edit", () => this.edit(key, p.text)), button("Discard", () => this.discard(key))];
    }
    return [];
  }
}
