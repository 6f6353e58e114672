// The WebSocket: hello with the token and what the client has, reconnect on loss.

const FIRST_DELAY = 500; // ms before the first reconnect; doubles up to MAX_DELAY
const MAX_DELAY = 5000;
const STEADY = 10000; // ms a socket must stay up before the delay starts over
const TICK = 10000; // ms between checks that the machine did not sleep
const SLEPT = 3 * TICK; // a check this late means it did: its socket is likely dead
// Closes that a reconnect cannot mend: the hello was refused (4000), the server took a
// frame as unsupported (1003) or too big (1009). Trying again would loop for ever.
const FATAL = new Map([
  [4000, "the server refused this client's hello"],
  [1003, "the server refused a frame"],
  [1009, "a frame was too big"],
]);

export class Live {
  // `token()` is the session's token at the time: a renewed one goes in the next hello.
  constructor({ onFrame, onState, since, token }) {
    this.token = token;
    this.onFrame = onFrame;
    this.onState = onState;
    this.since = since;
    this.socket = null;
    this.delay = FIRST_DELAY;
    this.stopped = true;
    this.timer = null;
    this.steady = null;
    // A dead network can leave a socket open for minutes: the browser knows sooner.
    this.listeners = [
      [window, "offline", () => this.interrupted()],
      [window, "online", () => this.resume()],
      // Browsers throttle a hidden page's timers: its late ticks prove no sleep.
      [document, "visibilitychange", () => (this.lastTick = Date.now())],
    ];
    for (const [target, type, handler] of this.listeners) target.addEventListener(type, handler);
    // So can a sleep: the server gave up on the socket, the browser will not know for
    // minutes, and nothing arrives meanwhile. A visible page whose timer fires far too
    // late starts over (the hello's `since` makes that lossless).
    this.lastTick = Date.now();
    this.ticker = setInterval(() => {
      const now = Date.now();
      if (document.visibilityState === "visible" && now - this.lastTick > SLEPT) this.restart();
      this.lastTick = now;
    }, TICK);
  }

  restart() {
    if (this.stopped || !this.socket) return;
    this.interrupted();
    this.resume();
  }

  interrupted() {
    if (this.stopped) return;
    const socket = this.socket;
    this.socket = null;
    clearTimeout(this.timer);
    if (socket) socket.close();
    this.onState("reconnecting");
  }

  resume() {
    if (this.stopped || this.socket) return;
    clearTimeout(this.timer);
    this.connect();
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.steady);
    clearInterval(this.ticker); // a stopped Live holds nothing: a new one replaces it
    for (const [target, type, handler] of this.listeners) target.removeEventListener(type, handler);
    if (this.socket) this.socket.close(1000);
    this.socket = null;
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/v1/stream`);
    this.socket = socket;
    let token = null; // the one its hello carried
    socket.addEventListener("open", () => {
      token = this.token();
      socket.send(JSON.stringify({ type: "hello", token, since: this.since() }));
    });
    socket.addEventListener("message", (event) => {
      if (this.socket !== socket) return; // stopped, or given up for a new one
      const frame = JSON.parse(event.data);
      if (frame.type === "ready") {
        this.onState("live");
        // `ready` comes before the catch-up: only a socket that stays up resets the delay.
        clearTimeout(this.steady);
        this.steady = setTimeout(() => (this.delay = FIRST_DELAY), STEADY);
      }
      this.onFrame(frame);
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket || this.stopped) return;
      clearTimeout(this.steady);
      // 4002: the token of its hello expired. The session goes on if it was renewed since
      // (the server does not look at renewals): the next hello carries the new one.
      if (event.code === 4001 || (event.code === 4002 && this.token() === token)) {
        this.onState("signed-out");
        return;
      }
      if (FATAL.has(event.code)) {
        this.stopped = true;
        this.onState("stopped", event.reason || FATAL.get(event.code));
        return;
      }
      this.onState("reconnecting");
      // Jittered, so that clients cut off together (a gateway restarting) come back apart.
      const wait = this.delay / 2 + Math.random() * (this.delay / 2);
      this.timer = setTimeout(() => this.connect(), wait);
      this.delay = Math.min(this.delay * 2, MAX_DELAY);
    });
  }
}
