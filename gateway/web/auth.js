// The sign-in / sign-up screen.

import { api, explain, session } from "./api.js";
import { el } from "./dom.js";

// `name` fills in the username (a sign-in that an ended session asks for).
export function authScreen(onSignedIn, reason = "", name = "") {
  const error = el("p", { class: "error", role: "alert", id: "auth-error", text: reason });
  const username = el("input", { id: "username", name: "username", autocomplete: "username", required: true });
  username.value = name;
  const password = el("input", {
    id: "password",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
  });
  const gender = el(
    "select",
    { id: "gender", name: "gender" },
    el("option", { value: "f", text: "f" }),
    el("option", { value: "m", text: "m" }),
  );
  const buttons = [
    el("button", { type: "submit", value: "in", text: "Sign in" }),
    el("button", { type: "submit", value: "up", text: "Sign up" }),
  ];
  let busy = false; // one submit at a time: a double click must not start two sessions
  const submit = async (signUp) => {
    if (busy) return;
    busy = true;
    for (const button of buttons) button.disabled = true;
    error.textContent = "";
    try {
      const token = signUp
        ? await api.signUp(username.value, password.value, gender.value)
        : await api.signIn(username.value, password.value);
      session.save(token);
      onSignedIn(token);
    } catch (e) {
      error.textContent = explain(e);
    } finally {
      busy = false;
      for (const button of buttons) button.disabled = false;
    }
  };
  const form = el(
    "form",
    {
      class: "auth",
      "aria-labelledby": "auth-title",
      onsubmit: (event) => {
        event.preventDefault();
        submit(event.submitter?.value === "up");
      },
    },
    el("h2", { id: "auth-title", text: "Sign in or sign up" }),
    el("label", { for: "username", text: "Username" }),
    username,
    el("label", { for: "password", text: "Password" }),
    password,
    el("label", { for: "gender", text: "Gender (sign-up)" }),
    gender,
    el("div", { class: "actions" }, ...buttons),
    error,
  );
  return form;
}
