// Building the page: every text goes in as text (textContent), never as HTML.

export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

// One formatter of each kind for the page: toLocale*String builds a new one on every
// call (~160 µs each), and a catch-up of 500 messages re-rendered with a day and a time
// per message held took seconds of script (found in review, 2026-12-08).
const CLOCK = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit" });
const THIS_YEAR = new Intl.DateTimeFormat([], { month: "short", day: "numeric" });
const OTHER_YEAR = new Intl.DateTimeFormat([], { month: "short", day: "numeric", year: "numeric" });
const DAY = new Intl.DateTimeFormat([], {
  weekday: "short",
  year: "numeric",
  month: "short",
  day: "numeric",
});

export function time(unixSeconds) {
  return CLOCK.format(new Date(unixSeconds * 1000));
}

// The time for a moment of today, else its date (the year only when not this year's).
export function when(unixSeconds) {
  const at = new Date(unixSeconds * 1000);
  const now = new Date();
  if (at.toDateString() === now.toDateString()) return time(unixSeconds);
  return (at.getFullYear() === now.getFullYear() ? THIS_YEAR : OTHER_YEAR).format(at);
}

export function day(unixSeconds) {
  return DAY.format(new Date(unixSeconds * 1000));
}

export function announce(text) {
  const region = document.getElementById("announcer");
  region.textContent = text;
}

// A press (the primary mouse button, a finger or a pen) from pointerdown until its
// release: lists built anew meanwhile lost the click, their button pressed being gone or
// moved when released (found in review). A list rebuilds `whenFree`: in a frame in which
// no press holds it, so after the release the rebuild comes after the click is handled.
// Browsers do not always say that a press ended (a context menu, a drag, a window left):
// anything that shows it ended releases it, and so does PRESS_MOST ms.
const PRESS_MOST = 5000;
let pressedOn = null;
let pressTimer = null;
const waiting = new Set(); // what waits for the release

function released() {
  if (pressedOn === null) return;
  pressedOn = null;
  clearTimeout(pressTimer);
  const runs = [...waiting];
  waiting.clear();
  for (const run of runs) run();
}

document.addEventListener(
  "pointerdown",
  (event) => {
    if (event.button !== 0 || !event.isPrimary) return; // a right click opens a menu, say
    pressedOn = event.target;
    clearTimeout(pressTimer);
    pressTimer = setTimeout(released, PRESS_MOST);
  },
  true,
);
for (const type of ["pointerup", "pointercancel", "contextmenu", "dragstart", "click"]) {
  document.addEventListener(type, released, true);
}
document.addEventListener("pointermove", (event) => event.buttons === 0 && released(), true);
document.addEventListener("visibilitychange", released);
window.addEventListener("blur", released); // released outside the window, say

export function held(node) {
  return pressedOn !== null && node.contains(pressedOn);
}

// `run` in the next animation frame in which no press holds `node`.
export function whenFree(node, run) {
  requestAnimationFrame(() => {
    if (held(node)) waiting.add(() => whenFree(node, run));
    else run();
  });
}
