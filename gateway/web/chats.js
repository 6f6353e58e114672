// The chat list: by last activity, names, preview, time, unread badge; new chat by username.

import { api, explain } from "./api.js";
import { el, when, whenFree } from "./dom.js";
import { store } from "./store.js";

const LOOKUP_MAX = 50; // names one GET /v1/users may ask for

export function chatList(onOpen) {
  const list = el("ul", { class: "chats", id: "chat-list", "aria-label": "Chats" });
  const render = () => {
    // The list is built again on every change: the chat whose button had the focus keeps
    // it, or a keyboard user was sent back to the top of the page by any message.
    const focused = list.contains(document.activeElement)
      ? document.activeElement.getAttribute("data-cid")
      : null;
    list.replaceChildren(
      ...store.ordered().map((chat) => {
        const unread = chat.unread > 0;
        return el(
          "li",
          {},
          el(
            "button",
            {
              type: "button",
              class: "chat",
              "data-cid": chat.id,
              "aria-label": `${store.title(chat)}${unread ? `, ${chat.unread} unread` : ""}`,
              onclick: () => onOpen(chat.id),
            },
            el("span", { class: "title", dir: "auto", text: store.title(chat) }),
            el("span", { class: "when", text: chat.lastMessage ? when(chat.lastMessage.createdAt) : "" }),
            el("span", { class: "preview", dir: "auto", text: chat.lastMessage?.text ?? "No messages yet" }),
            unread ? el("span", { class: "badge", text: String(chat.unread) }) : null,
          ),
        );
      }),
    );
    // Without preventScroll, a list scrolled away from the focused chat jumped back to it
    // at every message (found in review).
    if (focused) list.querySelector(`button[data-cid="${CSS.escape(focused)}"]`)?.focus({ preventScroll: true });
  };
  // At most once per frame: a catch-up or a busy minute brings a change per message, and
  // building a list of 1,000 chats for each took seconds of script (found in review). A
  // hidden tab draws nothing until it is shown again; then it draws the list as it is.
  // Nor while a press on the list lasts: the button pressed, built anew or moved down by
  // a chat above it, was not the one released on, and the click was lost (found in
  // review); the list is drawn in the frame after the release, once the click is handled.
  let due = false;
  store.listeners.add(() => {
    if (due) return;
    due = true;
    whenFree(list, () => {
      due = false;
      render();
    });
  });
  render();

  const names = el("input", {
    id: "new-chat-names",
    placeholder: "usernames, comma-separated",
    "aria-describedby": "new-chat-error",
  });
  const error = el("p", { class: "error", id: "new-chat-error", role: "alert" });
  const start = el("button", { type: "submit", text: "Start" });
  let busy = false; // one chat per submit: a double click or a second Enter made two
  const form = el(
    "form",
    {
      class: "new-chat",
      onsubmit: async (event) => {
        event.preventDefault();
        error.textContent = "";
        const wanted = [
          ...new Map(
            names.value
              .split(",")
              .map((n) => n.trim())
              .filter(Boolean)
              .map((n) => [fold(n), n]),
          ).values(),
        ]; // a name typed twice is one user
        if (!wanted.length || busy) return;
        busy = true;
        start.disabled = true;
        try {
          // A username may hold commas: the whole text is looked up too, and taken as one
          // name when the parts are not all users and it is one (found in review: such a
          // user could not be reached from here).
          const whole = names.value.trim();
          const asked = wanted.length > 1 && wanted.length < LOOKUP_MAX ? [...wanted, whole] : wanted;
          const found = (await api.usersByName(asked)).data;
          const byName = new Map(found.map((u) => [fold(u.username), u]));
          let missing = wanted.filter((n) => !byName.has(fold(n)));
          let users = wanted.map((n) => byName.get(fold(n)));
          if (missing.length && asked.length > wanted.length && byName.has(fold(whole))) {
            missing = [];
            users = [byName.get(fold(whole))];
          }
          if (missing.length) {
            error.textContent = `No user named ${missing.join(", ")}.`;
            return;
          }
          for (const user of users) store.names.set(user.id, user.username);
          const chat = await api.createChat([store.me.userId, ...users.map((u) => u.id)]);
          store.put(chat);
          names.value = "";
          store.changed("chats");
          onOpen(chat.id);
        } catch (e) {
          error.textContent = explain(e);
        } finally {
          busy = false;
          start.disabled = false;
        }
      },
    },
    el("label", { for: "new-chat-names", text: "Start a chat with" }),
    names,
    start,
    error,
  );
  return el("section", { class: "list-pane", "aria-label": "Your chats" }, form, list);
}

// Near enough to how the server matches names (NFKC, then case folding) for telling
// which typed names found nobody: toLowerCase alone kept "STRASSE" apart from "Straße"
// and "ａｌｉｃｅ" from "alice", which the server finds, and named them as unknown
// (found in review, 2026-12-08). Upper then lower case folds ß to ss as casefold does.
function fold(name) {
  return name.normalize("NFKC").toUpperCase().toLowerCase().normalize("NFKC");
}
