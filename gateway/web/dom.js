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

export function time(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// The time for a moment of today, else its date (the year only when not this year's).
export function when(unixSeconds) {
  const at = new Date(unixSeconds * 1000);
  const now = new Date();
  if (at.toDateString() === now.toDateString()) return time(unixSeconds);
  const year = at.getFullYear() === now.getFullYear() ? {} : { year: "numeric" };
  return at.toLocaleDateString([], { month: "short", day: "numeric", ...year });
}

export function day(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleDateString([], {
    weekday: "short",
    year: "numeric",
    month: "short",
    day: "numeric",
  });
}

export function announce(text) {
  const region = document.getElementById("announcer");
  region.textContent = text;
}
